"""Delivering one destination's queue: claim, then send, then settle per request.

A page of due rows is claimed (committed as in flight) before anything leaves;
each request's outcomes are committed as soon as that request returns (GA4: with
those that return within a fifth of a second of it, in one transaction), so a
crash loses at most the answers to the requests in the air or just returned: their
rows are still in flight, and the crash policy below covers them. What was in flight
when a worker stopped goes again: Google Ads deduplicates it by transaction id,
GA4 cannot, so there the resend is said out loud ("may be duplicated"), or, with
CONNECTOR_GA4__RESEND_IN_FLIGHT=false, the row is marked `unknown_after_crash`.

A destination that refuses the whole request for a reason only a fix can cure
(credentials, permission, terms, allowlist) stops for this run: its claimed rows
go back to pending, untried, and the error names the destination and the fix.
"""

from __future__ import annotations

import contextvars
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta

from connector import stopping
from connector.core import MAY_BE_DUPLICATED, Delivery, Outcome, Status
from connector.destinations.base import Destination
from connector.errors import DestinationError
from connector.ledger import Ledger
from connector.ledger.queue import Keyset
from connector.summary import RunSummary

CLAIM_PAGE = 2000  # rows claimed at a time: a lease covers what one page takes to send
UNKNOWN_AFTER_CRASH = "unknown_after_crash"
UNKNOWN_AFTER_TIMEOUT = "unknown_after_timeout"
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
log = logging.getLogger("connector.delivery")

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class Claims:
    """How this worker claims rows: who it is, for how long, and whether it is alone."""

    worker: str
    lease: timedelta
    max_attempts: int
    # The run holds the store alone (SQLite's run lock): whatever is in flight is orphaned.
    exclusive: bool
    resend_in_flight: bool = True  # GA4: resend what a stopped worker had in flight


def waves(pending: Sequence[Delivery]) -> list[list[Delivery]]:
    """Split so that no wave holds two deliveries of one conversion (target + transaction)."""
    found: list[list[Delivery]] = []
    seen: Counter[tuple[str, str]] = Counter()
    for d in pending:  # in time order
        key = (d.target, d.change.transaction_id)
        if seen[key] == len(found):
            found.append([])
        found[seen[key]].append(d)
        seen[key] += 1
    return found


def accepted_requests(outcomes: Sequence[Outcome]) -> Counter[str]:
    """Request id -> deliveries in it, of the requests a destination got accepted."""
    return Counter(o.request_id for o in outcomes if o.status == Status.DELIVERED and o.request_id)


class DeliveryLoop:
    """One destination's due rows, page by page in change-time order (keyset on time, id)."""

    def __init__(
        self,
        ledger: Ledger,
        destination: Destination,
        claims: Claims,
        summary: RunSummary,
        progress: Progress | None = None,
    ) -> None:
        self.ledger = ledger
        self.destination = destination
        self.claims = claims
        self.summary = summary
        self.tally = summary.tally(destination.name)
        self._progress = progress
        self._attempts: dict[int, int] = {}  # attempts before this run, per claimed row
        self._resent: set[int] = set()  # sent again after a stop, where there is no dedup
        # Ready rows past a page's last whole request (`Capabilities.whole_requests`): they
        # open the next page's first request instead of going in a short one of their own.
        self._held: list[Delivery] = []

    def run(self) -> None:
        # The next page is claimed in a thread of its own while this one is sent: the claim's
        # reads overlap the requests' round trips. A dry run's in-memory ledger is one
        # thread's, so there each page is claimed in turn.
        ahead = _Ahead(self._claim, inline=self.ledger.readonly)
        page: list[Delivery] = []
        try:
            page = ahead.first()
            while page and not stopping.requested():
                ahead.next_after((page[-1].claim_key, page[-1].id))
                page, self._held = self._held + self._after_stop(self._renewed(page)), []
                self._attempts = {d.id: d.attempts for d in page}
                found = waves(page)
                for i, wave in enumerate(found):
                    self._wave(wave, last=i == len(found) - 1)
                page = ahead.take()
            if stopping.requested():
                self._held += page  # taken from the claim-ahead worker, never sent: goes back
                if self._held:  # found between pages: what is left waits for the next run
                    self.summary.stopped = self.summary.stopped or stopping.REASON
            else:
                page, self._held = self._held, []  # the queue's end: the short request goes
                self._send_all(page)
        except DestinationError as exc:
            # The rest of the page (chunks and waves not sent yet) goes back, untried: left in
            # flight, the next run would take it for a crashed worker's.
            worker = self.claims.worker
            self.tally.pending += self.ledger.queue.release((d.id for d in page), worker)
            self.summary.destination_errors[self.destination.name] = str(exc)
            log.error(
                "destination stopped for this run: %s",
                exc,
                extra={"destination": self.destination.name},
            )
        finally:
            # A page claimed ahead and never sent goes back, untried; so do rows held over.
            unsent = [*ahead.close(), *self._held]
            self._held = []
            self.ledger.queue.release((d.id for d in unsent), self.claims.worker)

    def _claim(self, after: Keyset | None) -> list[Delivery]:
        c = self.claims
        return self.ledger.queue.claim(
            self.destination.name,
            c.worker,
            lease=c.lease,
            limit=max(CLAIM_PAGE, self.destination.capabilities.batch_size),
            after=after,
            any_in_flight=c.exclusive,
        )

    def _renewed(self, page: list[Delivery]) -> list[Delivery]:
        """The page's rows this worker still holds, their leases started again: a page
        claimed ahead waited while the one before it was sent (the lease covers one page's
        sending from here). A row another worker took meanwhile is theirs: not sent."""
        held = self.ledger.queue.renew(
            (d.id for d in page), self.claims.worker, lease=self.claims.lease
        )
        if len(held) < len(page):
            log.warning(
                "%d claimed rows went to another worker before they were sent (their lease "
                "lapsed): left to it; CONNECTOR_LEASE_SECONDS may be too short",
                len(page) - len(held),
                extra={"destination": self.destination.name},
            )
        return [d for d in page if d.id in held]

    def _after_stop(self, page: list[Delivery]) -> list[Delivery]:
        """Rows a stopped worker had in flight: resent, and said; or set aside as unknown."""
        orphans = [d for d in page if d.in_flight_of]
        if not orphans:
            return page
        workers = sorted({str(d.in_flight_of) for d in orphans})
        name = self.destination.name
        if self.destination.capabilities.deduplicates:
            self.summary.resent_after_stop[name] += len(orphans)
            _say(
                "deliveries were in flight when %s stopped: sent again "
                "(Google deduplicates them by transaction id)",
                name,
                orphans,
                workers,
            )
            return page
        if not self.claims.resend_in_flight:
            unknown = [Outcome(d.id, Status.UNKNOWN, reason=UNKNOWN_AFTER_CRASH) for d in orphans]
            self._settle(unknown)
            return [d for d in page if not d.in_flight_of]
        self.summary.may_be_duplicated[name] += len(orphans)
        self._resent.update(d.id for d in orphans)
        _say(
            "events may be duplicated: they were in flight when %s stopped", name, orphans, workers
        )
        return page

    def _wave(self, wave: list[Delivery], *, last: bool) -> None:
        plan = self.destination.plan(self.ledger, wave)
        self._settle(plan.settled)
        going = {d.id for d in plan.ready} | {o.delivery_id for o in plan.settled}
        # Adjustments whose conversion is not delivered yet wait, untried, for a later wave.
        self.ledger.queue.release((d.id for d in wave if d.id not in going), self.claims.worker)
        ready, whole = plan.ready, self.destination.capabilities.whole_requests
        if last and whole:
            # Only a page's last wave: the next page may hold a later row of one of these
            # conversions, which `waves` then keeps out of the request these open.
            cut = len(ready) - len(ready) % whole
            ready, self._held = ready[:cut], ready[cut:]
        self._send_all(ready)

    def _send_all(self, ready: list[Delivery]) -> None:
        size = self.destination.capabilities.batch_size
        for start in range(0, len(ready), size):
            if stopping.requested():
                # Told to stop: what was claimed but not sent goes back, untried.
                rest = [d.id for d in ready[start:]]
                self.ledger.queue.release(rest, self.claims.worker)
                self.summary.stopped = self.summary.stopped or stopping.REASON
                return
            self._send(ready[start : start + size])

    def _send(self, chunk: list[Delivery]) -> None:
        settled: set[int] = set()

        def settle(outcomes: list[Outcome]) -> None:
            fresh = [o for o in outcomes if o.delivery_id not in settled]
            settled.update(o.delivery_id for o in fresh)
            self._settle(fresh)

        try:
            settle(self.destination.deliver(chunk, settle=settle))
        except DestinationError as exc:
            unsent = [d.id for d in chunk if d.id not in settled]
            self.ledger.queue.release(unsent, self.claims.worker, error=str(exc))
            self.tally.pending += len(unsent)
            raise
        finally:
            if self._progress:
                self._progress(f"sent to {self.destination.name}", len(chunk))
        # A row the destination gave no outcome for goes back, untried.
        unsent = [d.id for d in chunk if d.id not in settled]
        self.ledger.queue.release(unsent, self.claims.worker)
        if unsent and stopping.requested():  # told to stop inside the chunk (GA4's requests)
            self.summary.stopped = self.summary.stopped or stopping.REASON

    def _settle(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        outcomes = [self._marked(self._out_of_attempts(self._maybe_sent(o))) for o in outcomes]
        if self.destination.capabilities.request_status:
            # Before its rows are settled delivered: a crash between the two leaves them in
            # flight (sent again, deduplicated), never delivered by a request nobody checks.
            self.ledger.requests.save(self.destination.name, accepted_requests(outcomes))
        held = self.ledger.queue.settle(outcomes, worker=self.claims.worker)
        if len(held) < len(outcomes):  # a lapsed lease: another worker's fate for these stands
            outcomes = [o for o in outcomes if o.delivery_id in held]
        self.tally.add_outcomes(outcomes)

    def _marked(self, outcome: Outcome) -> Outcome:
        """A resent row that arrived says so, for the report's delivery health."""
        if outcome.status == Status.DELIVERED and outcome.delivery_id in self._resent:
            return replace(outcome, reason=MAY_BE_DUPLICATED)
        return outcome

    def _out_of_attempts(self, outcome: Outcome) -> Outcome:
        """A transient failure on a row's last attempt: a dead letter, with its last error."""
        if outcome.status != Status.PENDING or outcome.not_before is not None:
            return outcome
        tried = self._attempts.get(outcome.delivery_id, 0) + 1
        if self.claims.max_attempts and tried >= self.claims.max_attempts:
            return replace(outcome, status=Status.DEAD, reason=ATTEMPTS_EXHAUSTED)
        return outcome

    def _maybe_sent(self, outcome: Outcome) -> Outcome:
        """A request that timed out after sending may have been written: the crash policy."""
        if not outcome.maybe_sent or self.destination.capabilities.deduplicates:
            return outcome
        if self.claims.resend_in_flight:
            self.summary.may_be_duplicated[self.destination.name] += 1
            return outcome  # pending: the next run sends it again
        return replace(outcome, status=Status.UNKNOWN, reason=UNKNOWN_AFTER_TIMEOUT)


class _Ahead:
    """Claim pages one ahead of the sending, in a worker thread (or in turn, `inline`)."""

    def __init__(self, claim: Callable[[Keyset | None], list[Delivery]], *, inline: bool) -> None:
        self._claim = claim
        self._pool = None if inline else ThreadPoolExecutor(1, thread_name_prefix="claim")
        self._next: Future[list[Delivery]] | None = None
        self._after: Keyset | None = None

    def first(self) -> list[Delivery]:
        return self._claim(None)

    def next_after(self, after: Keyset) -> None:
        """Start claiming the page after `after` (in the worker; inline: when it is taken)."""
        self._after = after
        if self._pool is not None:
            # The worker starts with an empty context: it runs in a copy of this one.
            self._next = self._pool.submit(contextvars.copy_context().run, self._claim, after)

    def take(self) -> list[Delivery]:
        if self._next is None:
            return self._claim(self._after)
        page, self._next = self._next.result(), None
        return page

    def close(self) -> list[Delivery]:
        """The page claimed ahead and not taken (empty if none), once its claim is done."""
        try:
            return self._next.result() if self._next is not None else []
        except Exception:  # the run already fails over what failed first
            return []
        finally:
            self._next = None
            if self._pool is not None:
                self._pool.shutdown()


def _say(what: str, destination: str, orphans: list[Delivery], workers: list[str]) -> None:
    """A resend after a stop, said out loud: how many, where, whose they were."""
    log.warning(
        "%d %s " + what,
        len(orphans),
        destination,
        ", ".join(workers),
        extra={"destination": destination},
    )
