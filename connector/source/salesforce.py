"""Stage changes of leads, and of the opportunities they convert into, from Salesforce.

Two ways to see a change, chosen per object in the mapping (`mode`):
- history: `LeadHistory` / `OpportunityFieldHistory` rows, exact change times;
- snapshot: records whose `SystemModstamp` moved, diffed against the last status
  the state store saw for them; the change time is the modstamp.

One SOQL query per object per run (plus its pages): the lead's click ids, UTM
fields, consent and contact data ride along as parent fields. Rows arrive in
time order, which is what lets the cursor move safely page by page. A first run
with more rows than `bulk_threshold` streams them through Bulk API 2.0 instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
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
from connector.source import soql as q

LOOKUP_CHUNK = 2000  # ids per IN (...) list: about 42k characters, under SOQL's 100k


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
    deleted: bool = False  # the lead or opportunity is in the recycle bin
    record: tuple[str, str] | None = None  # (object, id) whose status this is


@dataclass(frozen=True)
class RecordState:
    """The last status (and won amount) the state store saw for one CRM record."""

    status: str
    amount: float | None = None


# (object, record ids) -> their last seen states: how snapshot mode finds changes.
StateLookup = Callable[[str, list[str]], dict[str, RecordState]]
Pages = Iterator[list[dict[str, Any]]]


def parse_sf_datetime(value: str) -> datetime:
    """`2026-11-20T14:03:11.000+0000` (or `Z`) to an aware UTC datetime."""
    text = value.replace("Z", "+0000")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


class SalesforceSource:
    """Stage changes of leads and of the opportunities they convert into.

    Each page is fetched (and retried) on its own, so a 503 on page 7 of 40
    retries that page instead of restarting the stream. `position` is how far
    the stream has safely been read: the cursor may move to it.
    """

    def __init__(
        self,
        client: Salesforce,
        mapping: Mapping,
        *,
        reconnect: Callable[[], Salesforce] | None = None,
        attempts: int = 4,
        max_api_share: float = 1.0,
        bulk_threshold: int | None = None,
        states: StateLookup | None = None,
    ) -> None:
        self._client = client
        self._reconnect = reconnect
        self._mapping = mapping
        self._attempts = attempts
        self._max_api_share = max_api_share
        self._bulk_threshold = bulk_threshold
        self._states = states or (lambda _object, _ids: {})
        self.calls = 0
        self.position: datetime | None = None
        self.stopped: str | None = None  # why pulling stopped early, if it did
        self._ordered = True
        self._newest: datetime | None = None

    # streams ----------------------------------------------------------------------

    def lead_changes(self, since: datetime, *, backfill: bool = False) -> Iterator[CrmChange]:
        if self._mapping.source.mode == "snapshot":
            yield from self._lead_snapshots(since)
            return
        for page in self._stream(q.lead_history_soql(self._mapping, since), backfill):
            for record in page:
                at = self._advance(record["CreatedDate"])
                yield self._lead_change(
                    str(record["LeadId"]),
                    record.get("Lead") or {},
                    (record.get("OldValue"), str(record.get("NewValue") or "")),
                    at,
                    str(record["Id"]),
                )
        self._finish()

    def opportunity_changes(
        self, since: datetime, *, backfill: bool = False
    ) -> Iterator[CrmChange]:
        """Opportunity stage (and won-amount) changes, under the lead they came from."""
        spec = self._mapping.opportunity
        if spec is None:
            return
        if spec.mode == "snapshot":
            yield from self._opportunity_snapshots(since)
            return
        for page in self._stream(q.opportunity_history_soql(self._mapping, since), backfill):
            leads = self._leads_for({str(r["OpportunityId"]) for r in page})
            # A deal won and given its amount in one save has two rows of the same time: the
            # stage row carries the amount already, the amount row is no restatement.
            staged = {
                (r["OpportunityId"], r["CreatedDate"])
                for r in page
                if r["Field"] != spec.amount_field
            }
            for record in page:
                self._advance(record["CreatedDate"])
                if record["Field"] == spec.amount_field and (
                    (record["OpportunityId"], record["CreatedDate"]) in staged
                ):
                    continue
                if change := self._opportunity_history_change(record, leads):
                    yield change
        self._finish()

    @property
    def api_usage(self) -> tuple[int, int] | None:
        usage = getattr(self._client, "api_usage", {}).get("api-usage")
        return (int(usage.used), int(usage.total)) if usage else None

    # snapshot mode --------------------------------------------------------------

    def _lead_snapshots(self, since: datetime) -> Iterator[CrmChange]:
        status_field = self._mapping.source.status_field
        for page in self._stream(q.lead_snapshot_soql(self._mapping, since), backfill=False):
            seen = self._states("Lead", [str(r["Id"]) for r in page])
            for record in page:
                at = self._advance(record["SystemModstamp"])
                status, last = str(record.get(status_field) or ""), seen.get(str(record["Id"]))
                if status and (last is None or last.status != status):
                    old = last.status if last else None
                    lead_id = str(record["Id"])
                    yield self._lead_change(lead_id, record, (old, status), at, lead_id)
        self._finish()

    def _opportunity_snapshots(self, since: datetime) -> Iterator[CrmChange]:
        spec = self._mapping.opportunity
        assert spec is not None
        for page in self._stream(q.opportunity_snapshot_soql(self._mapping, since), False):
            ids = [str(r["Id"]) for r in page]
            seen, leads = self._states("Opportunity", ids), self._leads_for(set(ids))
            for record in page:
                at = self._advance(record["SystemModstamp"])
                stage, last = str(record.get(spec.stage_field) or ""), seen.get(str(record["Id"]))
                restated = bool(
                    last
                    and last.status == stage
                    and record.get("IsWon")
                    and last.amount is not None
                    and _number(record.get(spec.amount_field)) != last.amount
                )
                if stage and (last is None or last.status != stage or restated):
                    old = last.status if last else None
                    opp_id = str(record["Id"])
                    yield self._opportunity_change(
                        record, leads.get(opp_id), (old, stage), at, (opp_id, opp_id), restated
                    )
        self._finish()

    # building changes -----------------------------------------------------------

    def _lead_change(
        self,
        lead_id: str,
        lead: dict[str, Any],
        statuses: tuple[str | None, str],
        at: datetime,
        record_id: str,
    ) -> CrmChange:
        created = lead.get("CreatedDate")
        master = lead.get("MasterRecordId")
        return CrmChange(
            record_id=record_id,
            # A merged lead's journey continues under the lead it was merged into.
            lead_id=str(master) if master else lead_id,
            old_status=statuses[0],
            new_status=statuses[1],
            changed_at=at,
            lead_created_at=parse_sf_datetime(created) if created else None,
            lead=self._roles(lead),
            deleted=bool(lead.get("IsDeleted")) and not master,
            record=("Lead", lead_id),
        )

    def _opportunity_history_change(
        self, record: dict[str, Any], leads: dict[str, dict[str, Any]]
    ) -> CrmChange | None:
        spec = self._mapping.opportunity
        assert spec is not None
        opportunity = dict(record.get("Opportunity") or {})
        stage = str(opportunity.get(spec.stage_field) or "")
        restatement = record["Field"] == spec.amount_field
        if restatement:
            # An amount change matters only for a won deal: it restates its value.
            if not opportunity.get("IsWon"):
                return None
            opportunity[spec.amount_field] = record.get("NewValue")
            statuses: tuple[str | None, str] = (stage, stage)
        else:
            statuses = (record.get("OldValue"), str(record.get("NewValue") or ""))
        opp_id = str(record["OpportunityId"])
        at = parse_sf_datetime(record["CreatedDate"])
        return self._opportunity_change(
            opportunity, leads.get(opp_id), statuses, at, (opp_id, str(record["Id"])), restatement
        )

    def _opportunity_change(
        self,
        opportunity: dict[str, Any],
        lead: dict[str, Any] | None,
        statuses: tuple[str | None, str],
        at: datetime,
        ids: tuple[str, str],  # the opportunity's, and the history row's (or again its own)
        restatement: bool,
    ) -> CrmChange:
        spec = self._mapping.opportunity
        assert spec is not None
        opp_id, record_id = ids
        base = self._lead_change(
            str(lead["Id"]) if lead else opp_id, lead or {}, statuses, at, record_id
        )
        values = {
            **base.lead,
            **{k: opportunity.get(k) for k in self._mapping.opportunity_fields()},
        }
        if spec.currency_field and opportunity.get(spec.currency_field):
            values["currency"] = opportunity[spec.currency_field]
        return replace(
            base,
            lead=values,
            opportunity_id=opp_id,
            restatement=restatement,
            has_source_lead=lead is not None,
            deleted=base.deleted or bool(opportunity.get("IsDeleted")),
            record=("Opportunity", opp_id),
        )

    def _roles(self, lead: dict[str, Any]) -> dict[str, Any]:
        return {key: lead.get(name) for key, name in self._mapping.lead_fields().items()}

    # the lead behind an opportunity ----------------------------------------------

    def _leads_for(self, opportunity_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Lead records by opportunity: the lead converted into it, or into its primary contact."""
        found = {
            str(r["ConvertedOpportunityId"]): r
            for chunk in _chunked(sorted(opportunity_ids))
            for r in self._records(q.converted_leads_soql(self._mapping, chunk))
        }
        orphans = sorted(opportunity_ids - found.keys())
        if not orphans:
            return found
        contacts = {
            str(r["OpportunityId"]): str(r["ContactId"])
            for chunk in _chunked(orphans)
            for r in self._records(q.primary_contacts_soql(chunk))
            if r.get("ContactId")
        }
        by_contact = {
            str(r["ConvertedContactId"]): r
            for chunk in _chunked(sorted(set(contacts.values())))
            for r in self._records(q.leads_by_contact_soql(self._mapping, chunk))
        }
        found.update({o: by_contact[c] for o, c in contacts.items() if c in by_contact})
        return found

    def _records(self, soql: str) -> Iterator[dict[str, Any]]:
        for page in self._pages(soql, include_deleted=False, budgeted=False):
            yield from page

    # reading pages --------------------------------------------------------------

    def _stream(self, soql: str, backfill: bool) -> Pages:
        """The pages of one stream: REST pages, or a Bulk API 2.0 job for a large backfill."""
        self._ordered, self._newest, self.position = True, None, None
        if backfill and self._bulk_threshold is not None:
            total = self._fetch(
                lambda: self._client.query(q.count_soql(soql), include_deleted=True)
            )
            if int(total.get("totalSize", 0)) > self._bulk_threshold:
                yield from self._bulk(soql)
                return
        yield from self._pages(soql, include_deleted=True, budgeted=True)

    def _bulk(self, soql: str) -> Pages:
        from connector.source.bulk import bulk_pages

        # Bulk results come in no promised order: the position moves only at the end.
        self._ordered = False
        unordered = soql.split(" ORDER BY ")[0]
        for page in bulk_pages(
            self._client, q.history_object(soql), unordered, include_deleted=True
        ):
            self.calls += 1
            yield page

    def _pages(self, soql: str, *, include_deleted: bool, budgeted: bool) -> Pages:
        next_url: str | None = None
        while True:
            if budgeted and self._over_budget():
                return
            if next_url is None:
                page = self._fetch(
                    lambda: self._client.query(soql, include_deleted=include_deleted)
                )
            else:
                page = self._fetch(
                    lambda url=next_url: self._client.query_more(
                        url, identifier_is_url=True, include_deleted=include_deleted
                    )
                )
            yield page["records"]
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return

    def _over_budget(self) -> bool:
        usage = self.api_usage
        if usage is None or usage[1] <= 0 or usage[0] / usage[1] < self._max_api_share:
            return False
        self.stopped = (
            f"stopped pulling at {usage[0]}/{usage[1]} daily Salesforce API calls "
            f"(max_api_share {self._max_api_share:g}); the cursor was kept, the next run goes on"
        )
        return True

    def _advance(self, stamp: str) -> datetime:
        at = parse_sf_datetime(stamp)
        self._newest = max(self._newest, at) if self._newest else at
        if self._ordered:
            self.position = at
        return at

    def _finish(self) -> None:
        if self._newest is not None and (self.position is None or self._newest > self.position):
            self.position = self._newest

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


def _number(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _chunked(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), LOOKUP_CHUNK):
        yield ids[start : start + LOOKUP_CHUNK]


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
