"""Bookmarks: how far each stream was safely recorded, one row per stream.

A bookmark moves only inside the transaction that stores the changes it covers
(`Changes.record`), and never backwards.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from connector.ledger.database import Database
from connector.ledger.schema import cursors


class Cursors:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, stream: str) -> datetime | None:
        if not self._db.exists():
            return None
        with self._db.engine.connect() as conn:
            value: datetime | None = conn.execute(
                select(cursors.c.value).where(cursors.c.stream == stream)
            ).scalar()
            return value


def move(conn: Connection, stream: str, value: datetime, now: datetime) -> None:
    """Move `stream`'s bookmark to `value` within the caller's transaction (never back)."""
    current = conn.execute(select(cursors.c.value).where(cursors.c.stream == stream)).scalar()
    if current is None:
        conn.execute(insert(cursors).values(stream=stream, value=value, updated_at=now))
    elif value > current:
        conn.execute(
            update(cursors).where(cursors.c.stream == stream).values(value=value, updated_at=now)
        )
