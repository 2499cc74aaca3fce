"""The delivery queue: one row per change and destination, pending until settled.

It answers questions about rows (what is pending, what a lead sent before, what a
request carried); what those answers mean for a destination is that destination's
business.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, func, or_, select, update

from connector.core import Delivery, Outcome, Status, conversion_id, utcnow
from connector.ledger.changes import stage_change
from connector.ledger.database import Database, chunked
from connector.ledger.schema import deliveries, stage_changes


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
        """Deliveries due now, in change-time order."""
        d, sc = deliveries.c, stage_changes.c
        query = (
            select(deliveries, stage_changes)
            .join(stage_changes, d.change_id == sc.id)
            .where(
                d.destination == destination,
                d.status == str(Status.PENDING),
                or_(d.not_before.is_(None), d.not_before <= utcnow()),
            )
            .order_by(sc.changed_at, d.id)
        )
        with self._db.engine.connect() as conn:
            return [_delivery(row._mapping) for row in conn.execute(query)]

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        """Record the fate of each delivery of one upload attempt."""
        if not outcomes:
            return
        now = utcnow()
        with self._db.engine.begin() as conn:
            for o in outcomes:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == o.delivery_id)
                    .values(
                        status=str(o.status),
                        reason=o.reason,
                        last_error=o.error,
                        external_request_id=o.request_id,
                        not_before=o.not_before,
                        attempts=deliveries.c.attempts + 1,
                        updated_at=now,
                    )
                )

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


def _delivery(row: RowMapping) -> Delivery:
    """A delivery from a row of deliveries joined with stage_changes (`id`: the delivery)."""
    return Delivery(
        id=row["id"],
        destination=row["destination"],
        target=row["target"],
        value=row["value"],
        currency=row["currency"],
        attempts=row["attempts"],
        change=stage_change(row),
    )
