"""Counts over the whole ledger, for monitoring (`connector.metrics`): cheap grouped reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select

from connector.core import Status
from connector.ledger.database import Database
from connector.ledger.schema import deliveries, runs, stage_changes


@dataclass
class LedgerStats:
    runs: dict[str, int] = field(default_factory=dict)  # status -> runs
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)  # (dest, status) -> rows
    retries: dict[str, int] = field(default_factory=dict)  # destination -> attempts after the first
    oldest_pending: dict[str, datetime] = field(
        default_factory=dict
    )  # destination -> when it was queued


def ledger_stats(db: Database) -> LedgerStats:
    """Everything the metrics file shows; empty for a store never written."""
    stats = LedgerStats()
    if not db.exists():
        return stats
    d = deliveries.c
    retried = func.sum(case((d.attempts > 1, d.attempts - 1), else_=0))
    pending = d.status == str(Status.PENDING)
    with db.engine.connect() as conn:
        by_run = select(runs.c.status, func.count()).group_by(runs.c.status)
        for status, count in conn.execute(by_run):
            stats.runs[status] = int(count)
        by_status = select(d.destination, d.status, func.count()).group_by(d.destination, d.status)
        for destination, status, count in conn.execute(by_status):
            stats.deliveries[(destination, status)] = int(count)
        for destination, total in conn.execute(
            select(d.destination, retried).group_by(d.destination)
        ):
            stats.retries[destination] = int(total or 0)
        oldest = (
            select(d.destination, func.min(stage_changes.c.recorded_at))
            .join(stage_changes, d.change_id == stage_changes.c.id)
            .where(pending)
            .group_by(d.destination)
        )
        for destination, recorded_at in conn.execute(oldest):
            stats.oldest_pending[destination] = recorded_at
    return stats
