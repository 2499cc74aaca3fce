"""The delivery queue: one row per change and destination, pending until settled.

Exactly once rests on the claim: a worker moves a page of due rows to in_flight
(its id, a lease) and commits that before anything is sent; each request's
outcomes are committed as soon as it returns (GA4: several requests' in one window).
A row whose lease ran out (its worker died) is due again, marked with the worker
that had it, so the resend can be said out loud. On PostgreSQL the claim skips rows
another worker has locked (FOR UPDATE SKIP LOCKED), so several workers share one
queue.

It answers questions about rows (what is due, what a lead sent before, what a
request carried); what those answers mean for a destination is that destination's
business.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    func,
    or_,
    select,
    tuple_,
    update,
)

from connector.core import Delivery, Outcome, Status, conversion_id, utcnow
from connector.ledger.changes import CHANGE_COLUMNS, change_of
from connector.ledger.database import Database, chunked
from connector.ledger.schema import deliveries, stage_changes

FAILED = (Status.REJECTED, Status.DEAD, Status.UNKNOWN)  # what `connector failures` lists
Keyset = tuple[str, int]  # a claim page's last row: (claim key, id)
# What a Delivery is read from, joined with its change's CHANGE_COLUMNS: only what it holds
# (a claim decodes thousands of rows; every datetime and JSON column left out is saved).
_d = deliveries.c
_DELIVERY_COLUMNS = (
    _d.id, _d.destination, _d.target, _d.value, _d.currency, _d.attempts, _d.claim_key,
    _d.status, _d.claimed_by,
)  # fmt: skip
_CHANGE_AT = len(_DELIVERY_COLUMNS)  # where a row's change columns begin


class _Fate(NamedTuple):
    """What settling writes on a row, named as its columns."""

    status: str
    reason: str | None
    last_error: str | None
    external_request_id: str | None
    not_before: datetime | None


@dataclass(frozen=True)
class Failure:
    """A row that will not go by itself: rejected, out of attempts, or of unknown fate."""

    id: int
    destination: str
    target: str
    status: str
    reason: str | None
    error: str | None
    attempts: int
    lead_id: str
    stage: str
    changed_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SentBefore:
    """One earlier delivery row of a lead: enough to tell which conversion it was."""

    id: int
    status: str
    destination: str
    target: str
    changed_at: datetime
    conversion_id: str  # the conversion the change is
    retracts: str | None  # the conversion it took back, for a retraction
    value: float | None = None  # the value it carried


class DeliveryQueue:
    def __init__(self, db: Database) -> None:
        self._db = db

    def pending(self, destination: str) -> list[Delivery]:
        """Deliveries due now, in claim order (claim key, id)."""
        d, sc = deliveries.c, stage_changes.c
        query = (
            select(*_DELIVERY_COLUMNS, *CHANGE_COLUMNS)
            .join_from(deliveries, stage_changes, d.change_id == sc.id)
            .where(
                d.destination == destination,
                d.status == str(Status.PENDING),
                or_(d.not_before.is_(None), d.not_before <= utcnow()),
            )
            .order_by(d.claim_key, d.id)
        )
        with self._db.engine.connect() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def claim(
        self,
        destination: str,
        worker: str,
        *,
        lease: timedelta,
        limit: int,
        after: Keyset | None = None,
        any_in_flight: bool = False,
    ) -> list[Delivery]:
        """Claim up to `limit` due rows after the keyset `after` (claim key, id), in that
        order, and commit the claim before returning them.

        Due: pending and not waiting (not_before), or in flight with a lapsed lease; with
        `any_in_flight` (the caller holds the store alone: SQLite's run lock) every row left
        in flight is due, since the worker that claimed it is gone. Each status is its own
        range of ix_deliveries_claim, read in order; the two are merged here.
        """
        d = deliveries.c
        now = utcnow()
        lapsed = d.status == str(Status.IN_FLIGHT)
        if not any_in_flight:
            lapsed = and_(lapsed, d.lease_until < now)
        waiting = and_(
            d.status == str(Status.PENDING), or_(d.not_before.is_(None), d.not_before <= now)
        )
        with self._db.engine.begin() as conn:
            ranges = [
                list(conn.execute(_due(conn, destination, due, after, limit)))
                for due in (waiting, lapsed)
            ]
            found = ranges[0] + ranges[1]
            if ranges[0] and ranges[1]:  # each is in claim order: sorted only to merge them
                found.sort(key=lambda row: (row.claim_key, row.id))
            rows = [_delivery(row, claimed=True) for row in _whole_groups(found[:limit], limit)]
            ids = [r.id for r in rows]
            for chunk in chunked(ids):
                conn.execute(
                    update(deliveries)
                    .where(d.id.in_(chunk))
                    .values(
                        status=str(Status.IN_FLIGHT),
                        claimed_by=worker,
                        lease_until=now + lease,
                        updated_at=now,
                    )
                )
        return rows

    def settle(self, outcomes: Sequence[Outcome], *, worker: str | None = None) -> set[int]:
        """Record the fate of the deliveries of one or more upload requests, in one
        transaction: one UPDATE ... WHERE id IN (...) per distinct fate (a request's rows
        mostly share theirs), not one statement per row. Returns the ids settled.

        With `worker`, only rows that worker still holds are settled: a row whose lease
        lapsed went to another worker, whose fate for it (settled already, or to come)
        stands.
        """
        if not outcomes:
            return set()
        fates: dict[_Fate, list[int]] = defaultdict(list)
        for o in outcomes:
            fate = _Fate(str(o.status), o.reason, o.error, o.request_id, o.not_before)
            fates[fate].append(o.delivery_id)
        d = deliveries.c
        now = utcnow()
        settled: set[int] = set()
        with self._db.engine.begin() as conn:
            for fate, ids in fates.items():
                values = fate._asdict() | {"claimed_by": None, "lease_until": None}
                stmt = update(deliveries).values(**values, attempts=d.attempts + 1, updated_at=now)
                if worker is not None:
                    stmt = stmt.where(d.claimed_by == worker)
                for chunk in chunked(ids):
                    found = conn.execute(stmt.where(d.id.in_(chunk)).returning(d.id))
                    settled.update(found.scalars())
        return settled

    def renew(self, ids: Iterable[int], worker: str, *, lease: timedelta) -> set[int]:
        """Start the lease of rows this worker holds again, from now; returns those it still
        holds. A page claimed ahead waits while the one before it is sent: renewed when its
        turn comes, it is never sent after its lease lapsed and another worker took it."""
        d = deliveries.c
        now = utcnow()
        held: set[int] = set()
        with self._db.engine.begin() as conn:
            for chunk in chunked(sorted(set(ids))):
                found = conn.execute(
                    update(deliveries)
                    .where(d.id.in_(chunk), d.claimed_by == worker)
                    .values(lease_until=now + lease, updated_at=now)
                    .returning(d.id)
                )
                held.update(found.scalars())
        return held

    def release(self, ids: Iterable[int], worker: str, *, error: str | None = None) -> int:
        """Put claimed rows back as pending, untried (held back, or their destination stopped);
        returns how many this worker still held (a settled row is no longer claimed)."""
        held = sorted(set(ids))
        if not held:
            return 0  # mostly so (asked after every wave and send): no empty transaction
        d = deliveries.c
        values: dict[str, object] = {
            "status": str(Status.PENDING),
            "claimed_by": None,
            "lease_until": None,
            "updated_at": utcnow(),
        }
        if error is not None:
            values["last_error"] = error
        released = 0
        with self._db.engine.begin() as conn:
            for chunk in chunked(held):
                result = conn.execute(
                    update(deliveries)
                    .where(d.id.in_(chunk), d.claimed_by == worker)
                    .values(**values)
                )
                released += result.rowcount
        return released

    def failures(
        self,
        *,
        destination: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[Failure]:
        """Rejected, dead and unknown rows, newest first."""
        if not self._db.exists():
            return []
        d, sc = deliveries.c, stage_changes.c
        query = (
            select(
                d.id, d.destination, d.target, d.status, d.reason, d.last_error, d.attempts,
                sc.lead_id, sc.stage, sc.changed_at, d.updated_at,
            )
            .join_from(deliveries, stage_changes, d.change_id == sc.id)
            .where(d.status.in_([str(s) for s in FAILED]))
            .order_by(d.updated_at.desc(), d.id.desc())
            .limit(limit)
        )  # fmt: skip
        if destination:
            query = query.where(d.destination == destination)
        if reason:
            query = query.where(d.reason == reason)
        if since:
            query = query.where(d.updated_at >= since)
        with self._db.engine.connect() as conn:
            return [Failure(*row) for row in conn.execute(query)]

    def requeue(
        self,
        *,
        ids: Sequence[int] = (),
        destination: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Put chosen failed rows back as pending with fresh attempts; returns how many."""
        d = deliveries.c
        where: list[ColumnElement[bool]] = [d.status.in_([str(s) for s in FAILED])]
        if ids:
            where.append(d.id.in_(list(ids)))
        if destination:
            where.append(d.destination == destination)
        if reason:
            where.append(d.reason == reason)
        values = {
            "status": str(Status.PENDING),
            "reason": None,
            "attempts": 0,
            "not_before": None,
            "updated_at": utcnow(),
        }
        with self._db.engine.begin() as conn:
            return int(conn.execute(update(deliveries).where(*where).values(**values)).rowcount)

    def counts(self) -> dict[str, dict[str, int]]:
        """Delivery rows by destination and status."""
        if not self._db.exists():
            return {}
        d = deliveries.c
        query = select(d.destination, d.status, func.count()).group_by(d.destination, d.status)
        result: dict[str, dict[str, int]] = {}
        with self._db.engine.connect() as conn:
            for destination, status, count in conn.execute(query):
                result.setdefault(destination, {})[status] = int(count)
        return result

    def sent_before(self, lead_ids: Iterable[str]) -> dict[str, list[SentBefore]]:
        """Every delivery row of these leads, by lead."""
        d, sc = deliveries.c, stage_changes.c
        columns = (d.id, d.status, d.destination, d.target, sc.lead_id, sc.stage, sc.changed_at)
        ids = sorted(set(lead_ids))
        found: dict[str, list[SentBefore]] = {lead: [] for lead in ids}
        with self._db.engine.connect() as conn:
            for chunk in chunked(ids):
                query = (
                    select(*columns, sc.opportunity_id, sc.retracts, d.value)
                    .join_from(deliveries, stage_changes, d.change_id == sc.id)
                    .where(sc.lead_id.in_(chunk))
                )
                for row in conn.execute(query):
                    found[row.lead_id].append(_sent_before(row))
        return found

    def of_request(self, request_id: str) -> dict[str, list[int]]:
        """Ids of the deliveries a request carried, by target (conversion action)."""
        d = deliveries.c
        query = select(d.target, d.id).where(d.external_request_id == request_id).order_by(d.id)
        found: dict[str, list[int]] = {}
        with self._db.engine.connect() as conn:
            for target, delivery_id in conn.execute(query):
                found.setdefault(target, []).append(int(delivery_id))
        return found

    def delivered_between(
        self, destination: str, low: datetime, high: datetime
    ) -> list[tuple[str, datetime, datetime]]:
        """(target, change time, sent time) of deliveries made, or changed, in [low, high]."""
        if not self.counts().get(destination):
            return []  # no store yet, or nothing for this destination in it
        d, sc = deliveries.c, stage_changes.c
        query = (
            select(d.target, sc.changed_at, d.updated_at)
            .join(stage_changes, d.change_id == sc.id)
            .where(
                d.destination == destination,
                d.status == str(Status.DELIVERED),
                or_(sc.changed_at.between(low, high), d.updated_at.between(low, high)),
            )
        )
        with self._db.engine.connect() as conn:
            return [(name, changed, sent) for name, changed, sent in conn.execute(query)]


def _due(
    conn: Connection,
    destination: str,
    due: ColumnElement[bool],
    after: Keyset | None,
    limit: int,
) -> Select[Any]:
    """One status's due rows, from the keyset on, in claim order (an index range)."""
    d, sc = deliveries.c, stage_changes.c
    query = (
        select(*_DELIVERY_COLUMNS, *CHANGE_COLUMNS)
        .join_from(deliveries, stage_changes, d.change_id == sc.id)
        .where(d.destination == destination, due)
        .order_by(d.claim_key, d.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(d.claim_key, d.id) > tuple_(*after))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=deliveries, skip_locked=True)
    return query


def _whole_groups(rows: list[Any], limit: int) -> list[Any]:
    """A full page without its last group's rows (a GA4 client's, by claim key), unless that
    group fills the page: the next page starts with them, so a client's events are not cut
    across two pages and share requests. Rows of one group throughout (Data Manager's) stay."""
    if len(rows) < limit:
        return rows
    last = rows[-1].claim_key.rpartition("|")[0]
    cut = len(rows)
    while cut and rows[cut - 1].claim_key.rpartition("|")[0] == last:
        cut -= 1
    return rows[:cut] or rows


def _sent_before(row: Any) -> SentBefore:
    return SentBefore(
        id=int(row.id),
        status=str(row.status),
        destination=str(row.destination),
        target=str(row.target),
        changed_at=row.changed_at,
        conversion_id=conversion_id(row.lead_id, row.stage, row.opportunity_id),
        retracts=row.retracts,
        value=row.value,
    )


def _delivery(row: Sequence[Any], *, claimed: bool = False) -> Delivery:
    """A delivery from a row of _DELIVERY_COLUMNS and CHANGE_COLUMNS; a claimed one that was
    in flight under another claim says whose it was."""
    own = row[:_CHANGE_AT]  # the delivery's columns; the change's follow
    delivery_id, destination, target, value, currency, attempts, key, status, holder = own
    return Delivery(
        id=delivery_id,
        destination=destination,
        target=target,
        value=value,
        currency=currency,
        attempts=attempts,
        change=change_of(row[_CHANGE_AT:]),
        in_flight_of=holder if claimed and status == Status.IN_FLIGHT else None,
        claim_key=key,
    )
