"""Google's own verdict on accepted uploads: Data Manager request status, checked each run.

Shared by every Data Manager destination (Google Ads conversions, GA4 events).
IngestEvents only says a request was well formed. What became of its events
comes later through RetrieveRequestStatus, per destination (a conversion
action, or a GA4 web stream):
PROCESSING, then SUCCESS, PARTIAL_SUCCESS or FAILED with the record count and
the count of each processing error. Every accepted request is stored in
`upload_requests`; each real run checks the oldest still PROCESSING (at most
MAX_CHECKS) and stores what Google says:

- processed: the records Google counted; matched: those without a processing
  error. The events status has no match count of its own, so this is the
  nearest; a duplicate transaction id counts as matched (the conversion is there).
- the status and error counts per conversion action, in `detail`.

Errors are counts, never named per event. Where one reason covers every record
a request sent to a destination (its deliveries: those of the request with that
target, or all of them when the request had one destination), they are settled by it
(API-NOTES §1 error classes): CLICK_NOT_FOUND / INVALID_CLICK: rejected as
`click_not_found`; TOO_RECENT_CLICK: pending again, not before 6 hours;
INTERNAL_ERROR: pending again; a duplicate: stays delivered; any other: rejected
with Google's reason, prefixed by the destination's name. Mixed outcomes stay counts.

A status check that fails never fails the run: it is logged, and the request
stays PROCESSING for the next run.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from google.ads import datamanager_v1 as dm
from google.api_core import exceptions as gexc

from connector.core import Outcome, Status, utcnow
from connector.destinations.google_ads.errors import Consequence, consequence, outcome
from connector.ledger import PROCESSING, Ledger
from connector.retry import RetryableError

MAX_CHECKS = 100  # per run, oldest first: the rest wait for the next run
UNKNOWN = "REQUEST_STATUS_UNKNOWN"  # Google does not know the request id: never checked again
_PREFIX = "PROCESSING_ERROR_REASON_"
_UNFINISHED = frozenset({PROCESSING, UNKNOWN})
log = logging.getLogger("connector.request_status")


@dataclass(frozen=True)
class ActionStatus:
    """One destination (conversion action) of a request, as Google reports it."""

    action: str
    status: str
    records: int
    errors: dict[str, int]  # processing error reason (without its prefix) -> records

    @property
    def matched(self) -> int:
        failed = sum(
            n for reason, n in self.errors.items() if consequence(reason) != Consequence.DONE
        )
        return max(self.records - failed, 0)

    @property
    def sole_error(self) -> str | None:
        """The one reason every record failed with, if there is one."""
        if len(self.errors) == 1 and sum(self.errors.values()) == self.records:
            return next(iter(self.errors))
        return None


@dataclass(frozen=True)
class RequestStatus:
    actions: list[ActionStatus]

    @property
    def status(self) -> str:
        """The request's status: PROCESSING until every destination is done."""
        statuses = {a.status for a in self.actions}
        if not statuses or statuses & _UNFINISHED:
            return PROCESSING
        return statuses.pop() if len(statuses) == 1 else "PARTIAL_SUCCESS"

    @property
    def processed(self) -> int:
        return sum(a.records for a in self.actions)

    @property
    def matched(self) -> int:
        return sum(a.matched for a in self.actions)

    def detail(self) -> dict[str, Any]:
        return {"destinations": [vars(a) for a in self.actions]}


@dataclass
class CheckTotals:
    """What one run's status checks found, for the run summary."""

    checked: int = 0
    finished: int = 0
    failed_checks: int = 0
    processed: int = 0
    matched: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    settled: Counter[str] = field(default_factory=Counter)  # deliveries re-settled, by reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "finished": self.finished,
            "failed_checks": self.failed_checks,
            "processed": self.processed,
            "matched": self.matched,
            "errors": dict(self.errors.most_common()),
            "settled": dict(self.settled.most_common()),
        }


class StatusSource(Protocol):
    """A destination whose accepted requests Google reports on later (Data Manager)."""

    name: str

    def request_status(self, request_id: str) -> dm.RetrieveRequestStatusResponse: ...


def check(ledger: Ledger, destination: StatusSource, *, limit: int = MAX_CHECKS) -> CheckTotals:
    """Check the oldest requests still PROCESSING and store what Google says."""
    totals = CheckTotals()
    for request_id in ledger.requests.processing(destination.name, limit):
        try:
            response = destination.request_status(request_id)
        except (RetryableError, gexc.GoogleAPICallError) as exc:
            totals.failed_checks += 1
            if _unknown_request(exc):
                ledger.requests.update(request_id, UNKNOWN, detail={"error": _describe(exc)})
                continue
            # Unreachable, over quota or refused: the others would fare no better now.
            log.warning("request status check failed", extra={"error": _describe(exc)})
            break
        totals.checked += 1
        _store(ledger, destination.name, request_id, parse(response), totals)
    return totals


def parse(response: dm.RetrieveRequestStatusResponse) -> RequestStatus:
    return RequestStatus([_action(item) for item in response.request_status_per_destination])


def attributed(
    sent: Mapping[str, list[int]],
    status: RequestStatus,
    request_id: str,
    now: datetime,
    *,
    prefix: str = "google_ads",
) -> list[Outcome]:
    """Outcomes for the deliveries whose fate the counts tell for certain (module doc)."""
    outcomes = []
    for action in status.actions:
        # One destination (a GA4 stream): the request's deliveries are all of it.
        every = [i for ids in sent.values() for i in ids]
        ids = every if len(status.actions) == 1 else sent.get(action.action, [])
        reason = action.sole_error
        if reason is None or len(ids) != action.records:
            continue
        if (outcome := _outcome(reason, now, prefix)) is not None:
            outcomes += [replace(outcome, delivery_id=i, request_id=request_id) for i in ids]
    return outcomes


def _store(
    ledger: Ledger, name: str, request_id: str, status: RequestStatus, totals: CheckTotals
) -> None:
    if status.status == PROCESSING:
        ledger.requests.update(request_id, PROCESSING)
        return
    # The rows first, then the request's end: a crash between the two leaves the request
    # PROCESSING, checked again next run (the same fates again), never a verdict lost.
    sent = ledger.queue.of_request(request_id)
    outcomes = attributed(sent, status, request_id, utcnow(), prefix=name)
    ledger.queue.settle(outcomes)
    ledger.requests.update(
        request_id,
        status.status,
        processed=status.processed,
        matched=status.matched,
        detail=status.detail(),
    )
    totals.finished += 1
    totals.processed += status.processed
    totals.matched += status.matched
    for action in status.actions:
        totals.errors.update(action.errors)
    totals.settled.update(o.reason or o.error or o.status for o in outcomes)


def _action(item: dm.RequestStatusPerDestination) -> ActionStatus:
    errors: Counter[str] = Counter()
    for count in item.error_info.error_counts:
        errors[_name(count.reason).removeprefix(_PREFIX)] += count.record_count
    return ActionStatus(
        action=item.destination.product_destination_id,
        status=_name(item.request_status),
        records=item.events_ingestion_status.record_count,
        errors=dict(errors),
    )


def _name(value: object) -> str:
    # A reason newer than the installed client arrives as a bare number.
    return str(getattr(value, "name", value))


def _outcome(reason: str, now: datetime, prefix: str) -> Outcome | None:
    """The error class of a processing error (`errors`); None: it stays delivered."""
    found = outcome(
        0, reason, now=now, error=f"Google: {reason}", rejected_as=f"{prefix}: {reason}"
    )
    return None if found.status == Status.DELIVERED else found


def _describe(exc: Exception) -> str:
    """Code, reason and message, without the URL the client puts in front of them."""
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"{exc.code} {exc.reason or ''}: {exc.message}"[:200]
    return str(exc)[:200]


def _unknown_request(exc: Exception) -> bool:
    return isinstance(exc, gexc.GoogleAPICallError) and exc.reason == "INVALID_REQUEST_ID"
