"""Lead stage changes from Salesforce `LeadHistory`, with the lead's fields riding along.

One SOQL query per run (plus its pages): the lead's click ids, UTM fields,
consent and contact data come as parent fields of each history row, so there
is no query per lead. Rows arrive ordered by `CreatedDate`, which is what
lets the cursor move safely page by page.
"""

from __future__ import annotations

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
    lead_fields = ["CreatedDate", *mapping.lead_fields().values()]
    parent = ", ".join(f"Lead.{name}" for name in dict.fromkeys(lead_fields))
    return (
        f"SELECT Id, LeadId, OldValue, NewValue, CreatedDate, {parent} "
        f"FROM {spec.history_object} "
        f"WHERE Field = '{spec.status_field}' AND CreatedDate >= {soql_datetime(since)} "
        "ORDER BY CreatedDate ASC, Id ASC"
    )


class LeadHistoryStream:
    """Pages through LeadHistory since a point in time, retrying each page on its own."""

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

    def changes(self, since: datetime) -> Iterator[CrmChange]:
        page = self._fetch(lambda: self._client.query(lead_history_soql(self._mapping, since)))
        while True:
            for record in page["records"]:
                yield self._to_change(record)
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self._fetch(
                lambda url=next_url: self._client.query_more(url, identifier_is_url=True)
            )

    @property
    def api_usage(self) -> tuple[int, int] | None:
        usage = getattr(self._client, "api_usage", {}).get("api-usage")
        return (int(usage.used), int(usage.total)) if usage else None

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

    def _to_change(self, record: dict[str, Any]) -> CrmChange:
        lead = record.get("Lead") or {}
        roles = {key: lead.get(name) for key, name in self._mapping.lead_fields().items()}
        created = lead.get("CreatedDate")
        return CrmChange(
            record_id=str(record["Id"]),
            lead_id=str(record["LeadId"]),
            old_status=record.get("OldValue"),
            new_status=str(record.get("NewValue") or ""),
            changed_at=parse_sf_datetime(record["CreatedDate"]),
            lead_created_at=parse_sf_datetime(created) if created else None,
            lead=roles,
        )


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
