"""Stage changes of leads, and of the opportunities they convert into, from Salesforce.

Two ways to see a change, chosen per object in the mapping (`mode`):
- history: `LeadHistory` / `OpportunityFieldHistory` rows, exact change times;
- snapshot: records whose `SystemModstamp` moved, diffed against the last status
  the state store saw for them; the change time is the modstamp.

Each stream (`connector.source.streams`) is read with its cursor
(`connector.source.cursor`): one SOQL query per stream per run (plus its pages);
the lead's click ids, UTM fields, consent and contact data ride along as parent
fields. Rows arrive in time order, which is what lets the cursor move safely
page by page. A read of more rows than `bulk_threshold` streams them
through Bulk API 2.0 instead, whose rows come in no order: its reader sorts them
(`connector.source.bulk`), so they come on in the same order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connector.core import CrmChange, RecordState
from connector.errors import SourceError
from connector.mapping.rules import Mapping, OpportunitySpec
from connector.retry import RetryableError, call_with_retries
from connector.source import soql as q
from connector.source.ahead import read_ahead
from connector.source.bulk import bulk_pages
from connector.source.cursor import Cursor
from connector.source.errors import TransientSalesforceError, source_error
from connector.source.leads import LeadsByOpportunity

# (object, record ids) -> their last seen states: how snapshot mode finds changes.
StateLookup = Callable[[str, list[str]], dict[str, RecordState]]
# since -> the history row ids recorded at or after it: what an overlapping read meets again.
RecordedSince = Callable[[datetime], Container[str]]
Pages = Iterator[list[dict[str, Any]]]  # REST pages
Rows = Iterator[Iterable[dict[str, Any]]]  # REST pages, or Bulk pages read as they go
T = TypeVar("T")


def parse_sf_datetime(value: str) -> datetime:
    """`2026-11-20T14:03:11.000+0000` (or `Z`) to an aware UTC datetime."""
    # fromisoformat, in C, reads Salesforce's form since 3.11: a tenth of strptime's cost.
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"a Salesforce datetime without its UTC offset: {value!r}")
    return parsed.astimezone(UTC)


@dataclass
class PullStats:
    """What one stream's pull cost and why it ended, filled in as its pages are read."""

    calls: int = 0  # Salesforce API calls: query pages, lookups, bulk job calls
    recorded: int = 0  # rows of the overlap window an earlier run recorded: passed over
    stopped: str | None = None  # why pulling stopped early, if it did
    api_usage: tuple[int, int] | None = None  # the org's daily API calls (used, total)


class Pull:
    """One stream's read: iterate it (once) for the changes. Its cursor advances and its
    stats fill in as the pages are read."""

    def __init__(self, cursor: Cursor, read: Callable[[Pull], Iterator[CrmChange]]) -> None:
        self.cursor = cursor
        self.stats = PullStats()
        self._changes = read(self)  # a generator: nothing is read before iteration

    def __iter__(self) -> Iterator[CrmChange]:
        return self._changes


class SalesforceSource:
    """Stage changes of leads and of the opportunities they convert into, one pull per stream.

    Each page is fetched (and retried, by `connector.retry`) on its own, so a 503 on
    page 7 of 40 retries that page instead of restarting the stream.
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
        recorded: RecordedSince | None = None,
        sleep: Callable[[float], None] | None = None,  # tests skip the backoff waits
    ) -> None:
        self._client = client
        self._reconnect = reconnect
        self._mapping = mapping
        # Per record, the fields it reads: worked out once, not for each of a million rows.
        self._lead_fields = tuple(mapping.lead_fields().items())
        self._opportunity_fields = tuple(mapping.opportunity_fields())
        self._attempts = attempts
        self._max_api_share = max_api_share
        self._bulk_threshold = bulk_threshold
        self._states = states or (lambda _object, _ids: {})
        self._recorded = recorded or (lambda _since: frozenset())
        self._sleep = sleep

    def pull(self, cursor: Cursor) -> Pull:
        """The changes of `cursor`'s stream since its bookmark (less the overlap window)."""
        return Pull(cursor, self._read)

    @property
    def client(self) -> Salesforce:
        """The logged-in client (after a reconnect, the new one): for other reads of the org."""
        return self._client

    @property
    def api_usage(self) -> tuple[int, int] | None:
        usage = getattr(self._client, "api_usage", {}).get("api-usage")
        return (int(usage.used), int(usage.total)) if usage else None

    def _read(self, pull: Pull) -> Iterator[CrmChange]:
        readers = {
            ("Lead", "history"): self._lead_history,
            ("Lead", "snapshot"): self._lead_snapshots,
            ("Opportunity", "history"): self._opportunity_history,
            ("Opportunity", "snapshot"): self._opportunity_snapshots,
        }
        stream = pull.cursor.stream
        yield from readers[stream.sobject, stream.mode](pull)

    # history mode -----------------------------------------------------------------

    def _lead_history(self, pull: Pull) -> Iterator[CrmChange]:
        query = q.lead_history_query(self._mapping, pull.cursor.since)
        recorded = self._recorded_before(pull)
        for page in self._stream(pull, query):
            for record in page:
                at = self._advance(pull, record["CreatedDate"])
                if record["Id"] in recorded:
                    pull.stats.recorded += 1
                    continue
                yield self._lead_change(
                    str(record["LeadId"]),
                    record.get("Lead") or {},
                    (record.get("OldValue"), str(record.get("NewValue") or "")),
                    at,
                    str(record["Id"]),
                )

    def _opportunity_history(self, pull: Pull) -> Iterator[CrmChange]:
        """Opportunity stage (and won-amount) changes, under the lead they came from.

        Rows are taken in groups of up to LOOKUP_IDS distinct opportunities not held yet,
        across pages, so the leads behind them cost one lookup per group, not one per page.
        """
        spec = self._opportunity()
        stages = _Stages(spec)
        query = q.opportunity_history_query(self._mapping, pull.cursor.since)
        pages = self._stream(pull, query)
        # A deal's rows are days apart: one met again later needs no second lookup.
        held = LeadsByOpportunity(["Id", *q.lead_select(self._mapping)])
        recorded = self._recorded_before(pull)
        for group in _by_opportunities(pages, held):
            stages.read(group)  # every row, recorded or not: the stages around each time
            # A deal won and given its amount in one save has two rows of the same time: the
            # stage row carries the amount already, the amount row is no restatement.
            staged = {
                (r["OpportunityId"], r["CreatedDate"])
                for r in group
                if r["Field"] != spec.amount_field
            }
            known = [r["Id"] in recorded for r in group]
            pull.stats.recorded += sum(known)
            statuses = [
                None if seen else self._history_statuses(r, staged, stages)
                for r, seen in zip(group, known, strict=True)
            ]
            # Only the rows that make a change need their lead.
            making = {str(r["OpportunityId"]) for r, s in zip(group, statuses, strict=True) if s}
            leads = self._held_leads(pull, held, making)
            for record, change in zip(group, statuses, strict=True):
                # The cursor moves as rows are handed on, never past a row still buffered.
                self._advance(pull, record["CreatedDate"])
                if change is not None:
                    yield self._opportunity_history_change(record, leads, change)

    def _recorded_before(self, pull: Pull) -> Container[str]:
        """The history rows of the overlap window that an earlier run recorded: read again
        (the window's point), they need no lookup, no mapping and no insert."""
        cursor = pull.cursor
        return frozenset() if cursor.backfill else self._recorded(cursor.since)

    def _held_leads(
        self, pull: Pull, held: LeadsByOpportunity, ids: set[str]
    ) -> dict[str, dict[str, Any]]:
        """The leads of these opportunities: held ones as they are, the rest looked up."""
        new = {o for o in ids if o not in held}
        leads = held.take(ids - new)  # before `hold` can let any of them go
        found = self._leads_for(pull, new)
        held.hold(new, found)
        return leads | found

    # snapshot mode --------------------------------------------------------------

    def _lead_snapshots(self, pull: Pull) -> Iterator[CrmChange]:
        status_field = self._mapping.source.status_field
        query = q.lead_snapshot_query(self._mapping, pull.cursor.since)
        for page in self._pages(pull, query.soql, include_deleted=True, budgeted=True):
            seen = self._states("Lead", [str(r["Id"]) for r in page])
            for record in page:
                at = self._advance(pull, record["SystemModstamp"])
                status, last = str(record.get(status_field) or ""), seen.get(str(record["Id"]))
                if status and (last is None or last.status != status):
                    old = last.status if last else None
                    lead_id = str(record["Id"])
                    yield self._lead_change(lead_id, record, (old, status), at, lead_id)

    def _opportunity_snapshots(self, pull: Pull) -> Iterator[CrmChange]:
        spec = self._opportunity()
        query = q.opportunity_snapshot_query(self._mapping, pull.cursor.since)
        for page in self._pages(pull, query.soql, include_deleted=True, budgeted=True):
            ids = [str(r["Id"]) for r in page]
            seen, leads = self._states("Opportunity", ids), self._leads_for(pull, set(ids))
            for record in page:
                at = self._advance(pull, record["SystemModstamp"])
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

    def _history_statuses(
        self, record: dict[str, Any], staged: Container[tuple[Any, Any]], stages: _Stages
    ) -> tuple[str | None, str] | None:
        """The (old, new) stage an OpportunityFieldHistory row records, or None: it records
        none (an amount saved with the stage row beside it, or edited on an open deal)."""
        if record["Field"] != self._opportunity().amount_field:
            return (record.get("OldValue"), str(record.get("NewValue") or ""))
        if (record["OpportunityId"], record["CreatedDate"]) in staged:
            return None
        # An amount change restates a deal won *when it was edited*; one edited while
        # the deal was open is simply the value its win will carry.
        at = parse_sf_datetime(record["CreatedDate"])
        then = stages.at(str(record["OpportunityId"]), at)
        stage, won = self._stage_then(record.get("Opportunity") or {}, then)
        return (stage, stage) if won else None

    def _opportunity_history_change(
        self,
        record: dict[str, Any],
        leads: dict[str, dict[str, Any]],
        statuses: tuple[str | None, str],
    ) -> CrmChange:
        spec = self._opportunity()
        opportunity = dict(record.get("Opportunity") or {})
        opp_id = str(record["OpportunityId"])
        restatement = record["Field"] == spec.amount_field
        if restatement:
            opportunity[spec.amount_field] = record.get("NewValue")
        at = parse_sf_datetime(record["CreatedDate"])
        return self._opportunity_change(
            opportunity, leads.get(opp_id), statuses, at, (opp_id, str(record["Id"])), restatement
        )

    def _stage_then(self, opportunity: dict[str, Any], then: str | None) -> tuple[str, bool]:
        """The deal's stage at a time, and whether it was won; `then` None: no stage change
        was read around that time, so the stage it has now is the one it had."""
        if then is None:
            stage = str(opportunity.get(self._opportunity().stage_field) or "")
            return stage, bool(opportunity.get("IsWon"))
        rule = self._mapping.rule_for(then, opportunity=True)
        return then, rule is not None and rule.stage == "won"

    def _opportunity_change(
        self,
        opportunity: dict[str, Any],
        lead: dict[str, Any] | None,
        statuses: tuple[str | None, str],
        at: datetime,
        ids: tuple[str, str],  # the opportunity's, and the history row's (or again its own)
        restatement: bool,
    ) -> CrmChange:
        spec = self._opportunity()
        opp_id, record_id = ids
        base = self._lead_change(
            str(lead["Id"]) if lead else opp_id, lead or {}, statuses, at, record_id
        )
        values = {
            **base.lead,
            **{k: opportunity.get(k) for k in self._opportunity_fields},
        }
        if spec.currency_field and opportunity.get(spec.currency_field):
            values["currency"] = opportunity[spec.currency_field]
        values["close_date"] = opportunity.get("CloseDate")  # the day its amount converts at
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
        return {key: lead.get(name) for key, name in self._lead_fields}

    def _opportunity(self) -> OpportunitySpec:
        spec = self._mapping.opportunity
        if spec is None:
            raise ValueError("an opportunity stream needs `opportunity` in the mapping")
        return spec

    # the lead behind an opportunity ----------------------------------------------

    def _leads_for(self, pull: Pull, opportunity_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Lead records by opportunity: the lead converted into it, or into its primary contact."""
        found = {
            str(r["ConvertedOpportunityId"]): r
            for r in self._lookup(
                pull, partial(q.converted_leads_soql, self._mapping), opportunity_ids
            )
        }
        orphans = opportunity_ids - found.keys()
        if not orphans:
            return found
        contacts = {
            str(r["OpportunityId"]): str(r["ContactId"])
            for r in self._lookup(pull, q.primary_contacts_soql, orphans)
            if r.get("ContactId")
        }
        by_contact = {
            str(r["ConvertedContactId"]): r
            for r in self._lookup(
                pull, partial(q.leads_by_contact_soql, self._mapping), set(contacts.values())
            )
        }
        found.update({o: by_contact[c] for o, c in contacts.items() if c in by_contact})
        return found

    def _lookup(
        self, pull: Pull, soql: Callable[[list[str]], str], ids: set[str]
    ) -> Iterator[dict[str, Any]]:
        """The records `soql(id list)` finds for `ids`: a Composite call per LOOKUP_IDS."""
        ordered = sorted(ids)
        for start in range(0, len(ordered), q.LOOKUP_IDS):
            query = soql(ordered[start : start + q.LOOKUP_IDS])
            page = self._fetch(pull, partial(self._composite_query, query))
            yield from page["records"]
            for more in self._more(pull, page, include_deleted=False, budgeted=False):
                yield from more

    def _composite_query(self, soql: str) -> dict[str, Any]:
        """One query sent as the one subrequest of a Composite call: its body carries the
        SOQL, so no URL limit applies (the client as it is at each try)."""
        client = self._client
        url = f"/services/data/v{client.sf_version}/query/?{urlencode({'q': soql})}"
        body = {"compositeRequest": [{"method": "GET", "url": url, "referenceId": "lookup"}]}
        return _subresponse(client.restful("composite", method="POST", json=body))

    # reading pages --------------------------------------------------------------

    def _stream(self, pull: Pull, query: q.Query) -> Rows:
        """The pages of one stream: REST pages, or a Bulk API 2.0 job for a read larger than
        `bulk_threshold` (a backfill, the rest of one stopped early, a long outage's catch-up).
        The first REST page's totalSize tells which, so a REST read costs its pages alone; a
        Bulk one costs that page more (it is read again in the job)."""
        if self._over_budget(pull):
            return
        page = self._fetch(pull, partial(self._query, query.soql, True))
        threshold = self._bulk_threshold
        rows = int(page.get("totalSize", 0))
        if threshold is not None and rows > threshold:
            del page  # its rows come again in the job: not held for the whole of it
            yield from self._bulk(pull, query, rows)
            return
        # The next page is fetched while this one is worked on.
        more = self._more(pull, page, include_deleted=True, budgeted=True)
        yield from read_ahead(chain([page["records"]], more))

    def _bulk(self, pull: Pull, query: q.Query, rows: int) -> Rows:
        def counted() -> None:
            pull.stats.calls += 1

        pages = bulk_pages(
            self._client,
            query.sobject,
            query.unordered,
            order=query.order,  # put back in the REST read's order: Bulk promises none
            include_deleted=True,
            expected_rows=rows,
            on_call=counted,  # the job's create, polls and result pages
        )
        for page in pages:
            pull.stats.api_usage = self.api_usage
            yield page

    def _pages(self, pull: Pull, soql: str, *, include_deleted: bool, budgeted: bool) -> Pages:
        if budgeted and self._over_budget(pull):
            return
        page = self._fetch(
            pull,
            lambda: cast(dict[str, Any], self._client.query(soql, include_deleted=include_deleted)),
        )
        more = self._more(pull, page, include_deleted=include_deleted, budgeted=budgeted)
        yield from read_ahead(chain([page["records"]], more))

    def _more(
        self, pull: Pull, page: dict[str, Any], *, include_deleted: bool, budgeted: bool
    ) -> Pages:
        """The pages after `page`, through each one's nextRecordsUrl."""
        while not page.get("done", True) and (url := page.get("nextRecordsUrl")):
            if budgeted and self._over_budget(pull):
                return
            page = self._fetch(pull, partial(self._query_more, url, include_deleted))
            yield page["records"]

    def _query(self, soql: str, include_deleted: bool) -> dict[str, Any]:
        return cast(dict[str, Any], self._client.query(soql, include_deleted=include_deleted))

    def _query_more(self, url: str, include_deleted: bool) -> dict[str, Any]:
        page = self._client.query_more(url, identifier_is_url=True, include_deleted=include_deleted)
        return cast(dict[str, Any], page)

    def _over_budget(self, pull: Pull) -> bool:
        usage = pull.stats.api_usage = self.api_usage
        if usage is None or usage[1] <= 0 or usage[0] / usage[1] < self._max_api_share:
            return False
        pull.stats.stopped = (
            f"stopped pulling at {usage[0]}/{usage[1]} daily Salesforce API calls "
            f"(max_api_share {self._max_api_share:g}); the cursor was kept, the next run goes on"
        )
        return True

    def _advance(self, pull: Pull, stamp: str) -> datetime:
        at = parse_sf_datetime(stamp)
        pull.cursor.advance(at)
        return at

    def _fetch(self, pull: Pull, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        pull.stats.calls += 1
        try:
            try:
                return self._retried(call)
            except SalesforceExpiredSession:
                if self._reconnect is None:
                    raise
                # Sessions expire mid-run on long backfills: log in again once, same page.
                self._client = self._reconnect()
                return self._retried(call)
        except SalesforceError as exc:
            raise source_error(exc) from None
        finally:
            pull.stats.api_usage = self.api_usage

    def _retried(self, call: Callable[[], T]) -> T:
        """`call`, with 5xx failures retried by the one retry policy (`connector.retry`)."""

        def attempt() -> T:
            try:
                return call()
            except SalesforceGeneralError as exc:
                raise TransientSalesforceError(exc) from exc
            except (requests.RequestException, ValueError) as exc:
                # A timeout, a reset, or a body that is not JSON (an HTML error page).
                raise RetryableError(
                    f"Salesforce did not answer usably ({type(exc).__name__})"
                ) from None

        try:
            return call_with_retries(attempt, attempts=self._attempts, sleep=self._sleep)
        except TransientSalesforceError as exc:
            raise exc.error from None
        except RetryableError as exc:
            raise SourceError(
                f"{exc} after retries; the cursor was kept, rerun later", retryable=True
            ) from None


class _Stages:
    """Each opportunity's stage at a given time, from the stage rows of one pull.

    The newest stage row before the time gives it; else the oldest one after it (its old
    value); else None: no stage change was read around it. Rows of earlier pages are kept
    as one (the newest) per opportunity, so a long pull stays small.
    """

    def __init__(self, spec: OpportunitySpec) -> None:
        self._field = spec.stage_field
        # One entry per opportunity of the pull: POSIX seconds and an interned stage name
        # (a handful of distinct values), a third of a datetime and a string of its own.
        self._before: dict[str, tuple[float, str]] = {}
        self._page: dict[str, list[tuple[datetime, str | None, str]]] = {}

    def read(self, page: list[dict[str, Any]]) -> None:
        for opp_id, rows in self._page.items():
            newest = rows[-1]
            at = newest[0].timestamp()
            if opp_id not in self._before or self._before[opp_id][0] < at:
                self._before[opp_id] = (at, sys.intern(newest[2]))
        self._page = {}
        for r in page:
            if r["Field"] == self._field:
                new = str(r.get("NewValue") or "")
                row = (parse_sf_datetime(r["CreatedDate"]), r.get("OldValue"), new)
                self._page.setdefault(str(r["OpportunityId"]), []).append(row)  # in time order

    def at(self, opportunity_id: str, when: datetime) -> str | None:
        rows = self._page.get(opportunity_id, [])
        earlier = [row[2] for row in rows if row[0] < when]
        if earlier:
            return earlier[-1]
        prior = self._before.get(opportunity_id)
        if prior is not None and prior[0] < when.timestamp():
            return prior[1]
        later = [row[1] for row in rows if row[0] > when]
        return str(later[0]) if later and later[0] else None


def _number(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


GROUP_ROWS = 10_000  # opportunity history rows held at once (about 10 MB)


def _by_opportunities(pages: Rows, known: Container[str]) -> Pages:
    """The rows of `pages`, in order, in groups naming at most LOOKUP_IDS opportunities that
    are not `known` (whose leads the caller still holds: read as each group starts), and
    of about GROUP_ROWS rows at most: a backfill of few deals with long histories would
    otherwise be one group. A full group ends only where the time moves on, so that the
    rows of one save stay together."""
    group: list[dict[str, Any]] = []
    ids: set[str] = set()
    fresh = 0
    for page in pages:
        for record in page:
            opportunity = str(record["OpportunityId"])
            new = opportunity not in ids and opportunity not in known
            full = len(group) >= GROUP_ROWS and record["CreatedDate"] != group[-1]["CreatedDate"]
            if (new and fresh == q.LOOKUP_IDS) or full:
                yield group
                group, ids, fresh = [], set(), 0
                new = opportunity not in known  # `known` is now the group just yielded
            group.append(record)
            ids.add(opportunity)
            fresh += new
    if group:
        yield group


# A subrequest's failure, raised as simple-salesforce raises the same status on its own.
_SUBREQUEST_ERRORS: dict[int, type[SalesforceError]] = {
    400: SalesforceMalformedRequest,
    401: SalesforceExpiredSession,
    403: SalesforceRefusedRequest,
    404: SalesforceResourceNotFound,
}


def _subresponse(answer: Any) -> dict[str, Any]:
    """The result of a Composite call's one subrequest, or the error it would have raised."""
    results = answer.get("compositeResponse") if isinstance(answer, dict) else None
    first = results[0] if results else {}
    status = int(first.get("httpStatusCode") or 500)
    if status < 300 and isinstance(first.get("body"), dict):
        return cast(dict[str, Any], first["body"])
    error = _SUBREQUEST_ERRORS.get(status, SalesforceGeneralError)
    # simple-salesforce's errors carry the parsed body as `content`, whatever its annotation.
    raise error("composite", status, "composite", cast(bytes, first.get("body")))
