"""Lead stage changes from Salesforce `LeadHistory`, with the lead's fields riding along.

One SOQL query per run (plus its pages): the lead's click ids, UTM fields,
consent and contact data come as parent fields of each history row, so there
is no query per lead. Rows arrive ordered by `CreatedDate`, which is what
lets the cursor move safely page by page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from connector.errors import SourceError
from connector.mapping.rules import Mapping


@dataclass(frozen=True)
class CrmChange:
    """One status change exactly as the CRM reports it (may hold PII: never stored as is)."""

    record_id: str
    lead_id: str
    old_status: str | None
    new_status: str
    changed_at: datetime
    lead_created_at: datetime | None
    lead: dict[str, Any]  # values by mapping role: "email", "gclid", ...
    opportunity_id: str | None = None
    restatement: bool = False  # a won deal's amount changed after it was won
    has_source_lead: bool = True


_SF_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")


def parse_sf_datetime(value: str) -> datetime:
    """`2026-11-20T14:03:11.000+0000` (or `Z`) to an aware UTC datetime."""
    text = value.replace("Z", "+0000")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


def soql_datetime(value: datetime) -> str:
    """An unquoted SOQL datetime literal (API-NOTES §5)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lead_history_soql(mapping: Mapping, since: datetime) -> str:
    # Field names were validated as plain API names when the mapping loaded;
    # the only literal here is a datetime we format ourselves.
    spec = mapping.source
    parent = ", ".join(f"Lead.{name}" for name in _lead_select(mapping))
    return (
        f"SELECT Id, LeadId, OldValue, NewValue, CreatedDate, {parent} "
        f"FROM {spec.history_object} "
        f"WHERE Field = '{spec.status_field}' AND CreatedDate >= {soql_datetime(since)} "
        "ORDER BY CreatedDate ASC, Id ASC"
    )


def opportunity_history_soql(mapping: Mapping, since: datetime) -> str:
    spec = mapping.opportunity
    assert spec is not None
    fields = ["IsWon", spec.stage_field, *mapping.opportunity_fields()]
    parent = ", ".join(f"Opportunity.{name}" for name in dict.fromkeys(fields))
    return (
        f"SELECT Id, OpportunityId, Field, OldValue, NewValue, CreatedDate, {parent} "
        f"FROM {spec.history_object} "
        f"WHERE Field IN ('{spec.stage_field}', '{spec.amount_field}') "
        f"AND CreatedDate >= {soql_datetime(since)} ORDER BY CreatedDate ASC, Id ASC"
    )


def converted_leads_soql(mapping: Mapping, opportunity_ids: list[str]) -> str:
    ids = ", ".join(f"'{i}'" for i in opportunity_ids if _SF_ID.match(i))
    fields = ", ".join(["Id", "ConvertedOpportunityId", *_lead_select(mapping)])
    return f"SELECT {fields} FROM Lead WHERE ConvertedOpportunityId IN ({ids})"


def _lead_select(mapping: Mapping) -> list[str]:
    return list(dict.fromkeys(["CreatedDate", *mapping.lead_fields().values()]))


class SalesforceSource:
    """Stage changes of leads and of the opportunities they convert into.

    Each page is fetched (and retried) on its own, so a 503 on page 7 of 40
    retries that page instead of restarting the stream.
    """

    def __init__(
        self,
        client: Salesforce,
        mapping: Mapping,
        *,
        reconnect: Callable[[], Salesforce] | None = None,
        attempts: int = 4,
    ) -> None:
        self._client = client
        self._reconnect = reconnect
        self._mapping = mapping
        self._attempts = attempts
        self.calls = 0

    def lead_changes(self, since: datetime) -> Iterator[CrmChange]:
        for page in self._pages(lead_history_soql(self._mapping, since)):
            for record in page:
                lead = record.get("Lead") or {}
                yield self._change(record, str(record["LeadId"]), lead)

    def opportunity_changes(self, since: datetime) -> Iterator[CrmChange]:
        """Opportunity stage (and won-amount) changes, under the lead they came from."""
        if self._mapping.opportunity is None:
            return
        for page in self._pages(opportunity_history_soql(self._mapping, since)):
            leads = self._converted_leads({str(r["OpportunityId"]) for r in page})
            for record in page:
                change = self._opportunity_change(record, leads)
                if change is not None:
                    yield change

    @property
    def api_usage(self) -> tuple[int, int] | None:
        usage = getattr(self._client, "api_usage", {}).get("api-usage")
        return (int(usage.used), int(usage.total)) if usage else None

    def _pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        page = self._fetch(lambda: self._client.query(soql))
        while True:
            yield page["records"]
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self._fetch(
                lambda url=next_url: self._client.query_more(url, identifier_is_url=True)
            )

    def _converted_leads(self, opportunity_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Lead records by the opportunity they converted into: one query per 300 ids."""
        ordered = sorted(opportunity_ids)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ordered), 300):
            soql = converted_leads_soql(self._mapping, ordered[start : start + 300])
            for page in self._pages(soql):
                found.update({str(r["ConvertedOpportunityId"]): r for r in page})
        return found

    def _opportunity_change(
        self, record: dict[str, Any], leads: dict[str, dict[str, Any]]
    ) -> CrmChange | None:
        spec = self._mapping.opportunity
        assert spec is not None
        opportunity = dict(record.get("Opportunity") or {})
        stage = str(opportunity.get(spec.stage_field) or "")
        if record["Field"] == spec.amount_field:
            # An amount change matters only for a won deal: it restates its value.
            if not opportunity.get("IsWon"):
                return None
            opportunity[spec.amount_field] = record.get("NewValue")
        else:
            stage = str(record.get("NewValue") or "")
        lead = leads.get(str(record["OpportunityId"]))
        change = self._change(
            record, str(lead["Id"]) if lead else str(record["OpportunityId"]), lead or {}
        )
        values = {
            **change.lead,
            **{k: opportunity.get(k) for k in self._mapping.opportunity_fields()},
        }
        if spec.currency_field and opportunity.get(spec.currency_field):
            values["currency"] = opportunity[spec.currency_field]
        return CrmChange(
            record_id=change.record_id,
            lead_id=change.lead_id,
            old_status=change.old_status if record["Field"] != spec.amount_field else stage,
            new_status=stage,
            changed_at=change.changed_at,
            lead_created_at=change.lead_created_at,
            lead=values,
            opportunity_id=str(record["OpportunityId"]),
            restatement=record["Field"] == spec.amount_field,
            has_source_lead=lead is not None,
        )

    def _change(self, record: dict[str, Any], lead_id: str, lead: dict[str, Any]) -> CrmChange:
        roles = {key: lead.get(name) for key, name in self._mapping.lead_fields().items()}
        created = lead.get("CreatedDate")
        return CrmChange(
            record_id=str(record["Id"]),
            lead_id=lead_id,
            old_status=record.get("OldValue"),
            new_status=str(record.get("NewValue") or ""),
            changed_at=parse_sf_datetime(record["CreatedDate"]),
            lead_created_at=parse_sf_datetime(created) if created else None,
            lead=roles,
        )

    def _fetch(self, call: Any) -> dict[str, Any]:
        self.calls += 1
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, SalesforceGeneralError)),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(max=30),
            reraise=True,
        )
        try:
            try:
                result: dict[str, Any] = retrying(call)
            except SalesforceExpiredSession:
                if self._reconnect is None:
                    raise
                # Sessions expire mid-run on long backfills: log in again once, same page.
                self._client = self._reconnect()
                result = retrying(call)
        except SalesforceError as exc:
            raise _source_error(exc) from None
        return result


def _source_error(exc: SalesforceError) -> SourceError:
    # str(exc) of simple-salesforce errors includes the URL and body; say only the class of it.
    if isinstance(exc, SalesforceRefusedRequest):
        return SourceError(
            "Salesforce refused the request (403): the org's daily API limit is used up "
            "(REQUEST_LIMIT_EXCEEDED) or the user lacks access; the cursor was kept, rerun later",
            retryable=False,
        )
    if isinstance(exc, SalesforceExpiredSession):
        return SourceError(
            "Salesforce session expired or invalid (401 INVALID_SESSION_ID): log in again",
            retryable=True,
        )
    if isinstance(exc, SalesforceMalformedRequest):
        return SourceError(
            f"Salesforce rejected the query (400): {_first_error_code(exc)}; check the field "
            "names in the mapping against the org",
            retryable=False,
        )
    return SourceError(
        f"Salesforce failed ({exc.status}) after retries; the cursor was kept, rerun later",
        retryable=True,
    )


def _first_error_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return f"{content[0].get('errorCode')}: {content[0].get('message')}"
    return "no detail"
