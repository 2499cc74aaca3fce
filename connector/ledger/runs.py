"""One row per sync run: when it ran, how it ended, and its summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from connector.core import utcnow
from connector.ledger.database import Database
from connector.ledger.schema import runs


@dataclass(frozen=True)
class RunRecord:
    id: int
    started_at: datetime
    finished_at: datetime | None  # None: still running, or the process died mid-run
    status: str
    summary: dict[str, Any] | None


class Runs:
    def __init__(self, db: Database) -> None:
        self._db = db

    def start(self) -> int:
        with self._db.engine.begin() as conn:
            row = conn.execute(
                insert(runs).values(started_at=utcnow(), status="running").returning(runs.c.id)
            )
            return int(row.scalar_one())

    def finish(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        with self._db.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(finished_at=utcnow(), status=status, summary=summary)
            )

    def recent(self, limit: int) -> list[RunRecord]:
        """The last `limit` runs, newest first."""
        if not self._db.exists():
            return []
        query = select(runs).order_by(runs.c.id.desc()).limit(limit)
        with self._db.engine.connect() as conn:
            return [
                RunRecord(r.id, r.started_at, r.finished_at, r.status, r.summary)
                for r in conn.execute(query)
            ]
