"""What the report reads: the rows of one period, one query per table.

The period is a cohort: the leads first seen in [start, end) (first seen = the
earlier of the lead's creation and its first recorded change), with every change
up to `end`; deliveries of changes, runs and upload requests inside the period.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, Select, case, func, select

from connector.ledger.database import Database
from connector.ledger.schema import deliveries, runs, stage_changes, upload_requests


@dataclass(frozen=True)
class PeriodRows:
    # lead_id, stage, changed_at, lead_created_at, attributes, problems, opportunity_id
    changes: Sequence[Any]
    deliveries: Sequence[Any]  # destination, status, reason, stage
    runs: Sequence[Any]  # started_at, status, summary
    requests: Sequence[Any]  # destination, status, processed, matched


class ReportReads:
    def __init__(self, db: Database) -> None:
        self._db = db

    def period(self, start: datetime, end: datetime) -> PeriodRows | None:
        """The period's rows; None when there is no store (or it was never written)."""
        if not self._db.exists():
            return None
        with self._db.engine.connect() as conn:
            has_requests = self._db.has_table(conn, upload_requests.name)
            return PeriodRows(
                changes=conn.execute(_changes(start, end)).all(),
                deliveries=conn.execute(_deliveries(start, end)).all(),
                runs=conn.execute(_runs(start, end)).all(),
                requests=conn.execute(_requests(start, end)).all() if has_requests else [],
            )

    def stream_changes(self, start: datetime, end: datetime) -> Iterator[RowMapping]:
        """The period's change rows (as `period` reads them), fetched as they are used."""
        if not self._db.exists():
            return
        with self._db.engine.connect() as conn:
            rows = conn.execution_options(yield_per=2000).execute(_changes(start, end))
            for row in rows:
                yield row._mapping

    def last_change(self) -> int:
        """The newest recorded change's id (0 for none): what a run's recording moves."""
        if not self._db.exists():
            return 0
        with self._db.engine.connect() as conn:
            return int(conn.execute(select(func.max(stage_changes.c.id))).scalar() or 0)


def _changes(start: datetime, end: datetime) -> Select[Any]:
    sc = stage_changes.c
    # min(lead created, changed) per row; a missing creation date compares as NULL -> changed.
    earliest = case((sc.lead_created_at < sc.changed_at, sc.lead_created_at), else_=sc.changed_at)
    first_seen = func.min(earliest)
    cohort = select(sc.lead_id).group_by(sc.lead_id).having(first_seen >= start, first_seen < end)
    columns = (
        *(sc.lead_id, sc.stage, sc.changed_at, sc.lead_created_at, sc.attributes, sc.problems),
        sc.opportunity_id,  # a lead's several deals are valued one by one
    )
    return (
        select(*columns)
        .where(sc.lead_id.in_(cohort), sc.changed_at < end)
        .order_by(sc.lead_id, sc.changed_at, sc.id)
    )


def _deliveries(start: datetime, end: datetime) -> Select[Any]:
    d, sc = deliveries.c, stage_changes.c
    return (
        select(d.destination, d.status, d.reason, sc.stage)
        .join_from(deliveries, stage_changes, d.change_id == sc.id)
        .where(sc.changed_at >= start, sc.changed_at < end)
    )


def _runs(start: datetime, end: datetime) -> Select[Any]:
    r = runs.c
    return (
        select(r.started_at, r.status, r.summary)
        .where(r.started_at >= start, r.started_at < end)
        .order_by(r.started_at)
    )


def _requests(start: datetime, end: datetime) -> Select[Any]:
    r = upload_requests.c
    return select(r.destination, r.status, r.processed, r.matched).where(
        r.sent_at >= start, r.sent_at < end
    )
