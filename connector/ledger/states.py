"""The last status (and won amount) seen per CRM record: snapshot mode diffs against it.

Kept in the same transaction as the changes that produced it (`Changes.record`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select

from connector.core import RecordState, StageChange
from connector.ledger import driver
from connector.ledger.database import Database, chunked
from connector.ledger.schema import record_states

_WRITE = ("object", "record_id", "status", "amount", "seen_at")  # a new record's columns
_UPDATE = ("status", "amount", "seen_at")  # a known record's


class RecordStates:
    def __init__(self, db: Database) -> None:
        self._db = db

    def last(self, sobject: str, record_ids: list[str]) -> dict[str, RecordState]:
        """The last status seen per record id of `sobject`."""
        if not record_ids or not self._db.exists():
            return {}
        c = record_states.c
        found: dict[str, RecordState] = {}
        with self._db.engine.connect() as conn:
            if not self._db.has_table(conn, record_states.name):
                return {}
            for chunk in chunked(record_ids):
                query = select(c.record_id, c.status, c.amount).where(
                    c.object == sobject, c.record_id.in_(chunk)
                )
                found.update(
                    (r.record_id, RecordState(r.status, r.amount)) for r in conn.execute(query)
                )
        return found


def remember(conn: Connection, changes: Sequence[StageChange]) -> None:
    """Keep each record's newest status (and won amount) in `record_states`.

    One lookup per 500 records and one driver executemany for the new records and one for
    the known ones per chunk of changes: a backfill records hundreds of thousands of them.
    """
    newest: dict[tuple[str, str], StageChange] = {}
    for change in changes:
        key = change.crm_record
        if key and (key not in newest or change.changed_at >= newest[key].changed_at):
            newest[key] = change
    seen = _seen_at(conn, list(newest))
    seen_at = driver.binder(conn.dialect, record_states.c.seen_at)
    fresh, known = [], []
    for (sobject, record_id), change in newest.items():
        status, amount = change.crm_status, change.attributes.get("amount")
        if (sobject, record_id) not in seen:
            fresh.append((sobject, record_id, status, amount, seen_at(change.changed_at)))
        elif change.changed_at >= seen[(sobject, record_id)]:
            known.append((status, amount, seen_at(change.changed_at), sobject, record_id))
    driver.insert_rows(conn, record_states, _WRITE, fresh)
    driver.update_rows(conn, record_states, _UPDATE, ("object", "record_id"), known)


def _seen_at(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    c = record_states.c
    found: dict[tuple[str, str], datetime] = {}
    for sobject in {k[0] for k in keys}:
        for chunk in chunked([k[1] for k in keys if k[0] == sobject]):
            query = select(c.record_id, c.seen_at).where(
                c.object == sobject, c.record_id.in_(chunk)
            )
            found.update(((sobject, r.record_id), r.seen_at) for r in conn.execute(query))
    return found
