"""One row per sync run: when it ran, how it ended, and its summary."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, update

from connector.core import utcnow
from connector.ledger.database import Database
from connector.ledger.schema import runs


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
