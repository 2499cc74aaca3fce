"""What `connector replay` reads and writes: recorded changes with what was done for them,
and the delivery rows a changed mapping now sends.

Nothing delivered is ever touched: a change whose destination already has a row
(`uq_delivery`: one per change and destination) keeps it; only a missing row is added,
as pending, for the next sync to send. A change recorded as `unknown_stage` may take
the stage its status now maps to, so that its conversion id is the one the stage sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, update

from connector.core import UNMAPPED, StageChange, Target, utcnow
from connector.ledger.changes import delivery_row, insert_ignoring_duplicates, stage_change
from connector.ledger.database import Database
from connector.ledger.schema import deliveries, stage_changes


@dataclass(frozen=True)
class Done:
    """One delivery row as recorded: what was decided, and where it stands."""

    target: str
    value: float | None
    currency: str | None
    status: str
    reason: str | None


@dataclass(frozen=True)
class Recorded:
    """A recorded change with its delivery rows, by destination."""

    id: int
    change: StageChange
    done: dict[str, Done] = field(default_factory=dict)


@dataclass(frozen=True)
class Queue:
    """New rows for one recorded change, and the stage it now maps to (if it was unmapped)."""

    change_id: int
    stage: str
    targets: Sequence[Target]


def recorded_since(db: Database, since: datetime) -> list[Recorded]:
    """The changes recorded at or after `since`, in change-time order, with their rows."""
    if not db.exists():
        return []
    sc, d = stage_changes.c, deliveries.c
    found: dict[int, Recorded] = {}
    with db.engine.connect() as conn:
        query = select(stage_changes).where(sc.recorded_at >= since)
        for row in conn.execute(query.order_by(sc.changed_at, sc.id)).mappings():
            found[row["id"]] = Recorded(row["id"], stage_change(row))
        rows = select(d.change_id, d.destination, d.target, d.value, d.currency, d.status, d.reason)
        joined = rows.join_from(deliveries, stage_changes, d.change_id == sc.id)
        for r in conn.execute(joined.where(sc.recorded_at >= since)):
            if r.change_id in found:
                found[r.change_id].done[r.destination] = Done(
                    r.target, r.value, r.currency, r.status, r.reason
                )
    return list(found.values())


def queue(db: Database, items: Sequence[Queue]) -> set[tuple[int, str]]:
    """Add the missing pending rows (never replacing one), in one transaction: the
    (change id, destination) of each row added."""
    now = utcnow()
    added: set[tuple[int, str]] = set()
    with db.engine.begin() as conn:
        for item in items:
            changed_at = _take_stage(conn, item)
            if changed_at is None:
                continue
            for target in item.targets:  # RETURNING says what went in (rowcount varies)
                row = delivery_row(item.change_id, target, now, changed_at)
                if conn.execute(_insert_delivery(conn), row).all():
                    added.add((item.change_id, target.destination))
    return added


def _take_stage(conn: Connection, item: Queue) -> datetime | None:
    """An `unknown_stage` change takes its new stage: its change time, or None if another
    change of the lead holds that stage at that time (it stays as recorded)."""
    sc = stage_changes.c
    row = conn.execute(select(stage_changes).where(sc.id == item.change_id)).mappings().one()
    changed_at: datetime = row["changed_at"]
    if row["stage"] == item.stage:
        return changed_at
    if row["stage"] != UNMAPPED:
        return None  # a mapped change keeps its stage: its rows were decided by it
    clash = select(sc.id).where(
        and_(sc.lead_id == row["lead_id"], sc.stage == item.stage),
        sc.changed_at == row["changed_at"],
    )
    if conn.execute(clash).first() is not None:
        return None
    problems = {k: v for k, v in row["problems"].items() if k != "stage"}
    conn.execute(
        update(stage_changes)
        .where(sc.id == item.change_id, sc.stage == UNMAPPED)
        .values(stage=item.stage, problems=problems)
    )
    return changed_at


def _insert_delivery(conn: Connection) -> Any:
    # uq_delivery: a row that exists (whatever its status) is left alone.
    return insert_ignoring_duplicates(conn, deliveries).returning(deliveries.c.id)
