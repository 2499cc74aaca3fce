"""Field warnings Google attached to accepted Data Manager requests (`field_warnings`).

A warning does not reject anything: the event was ingested, but a field of it was
ignored or doubtful (a client id in cookie form, a custom variable not enabled).
Stored per request as (reason, field path, events), the field path without its
event index so that warnings of many events add up.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Column, Integer, String, Table, func, insert, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from connector.core import utcnow
from connector.ledger.database import Database
from connector.ledger.schema import UTCDateTime, metadata

request_warnings = Table(
    "request_warnings",
    metadata,
    Column("request_id", String(100), primary_key=True),
    Column("reason", String(80), primary_key=True),  # WarningReason without its prefix
    Column("field", String(200), primary_key=True),  # e.g. "client_id"
    Column("destination", String(20), nullable=False),
    Column("events", Integer, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
)

Warnings = Mapping[tuple[str, str], int]  # (reason, field) -> events


class FieldWarnings:
    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, destination: str, request_id: str, warnings: Warnings) -> None:
        if not warnings:
            return
        now = utcnow()
        rows = [
            {"request_id": request_id, "reason": reason, "field": field}
            | {"destination": destination, "events": events, "recorded_at": now}
            for (reason, field), events in warnings.items()
        ]
        with self._db.engine.begin() as conn:
            conn.execute(insert(request_warnings), rows)

    def totals(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, dict[str, int]]:
        """Events warned about per destination, by "REASON field", recorded in [start, end)."""
        if not self._db.exists():
            return {}
        w = request_warnings.c
        query = select(w.destination, w.reason, w.field, func.sum(w.events)).group_by(
            w.destination, w.reason, w.field
        )
        if start is not None:
            query = query.where(w.recorded_at >= start)
        if end is not None:
            query = query.where(w.recorded_at < end)
        found: dict[str, dict[str, int]] = {}
        try:
            with self._db.engine.connect() as conn:
                for destination, reason, field, events in conn.execute(query):
                    found.setdefault(destination, {})[f"{reason} {field}".strip()] = int(events)
        except (OperationalError, ProgrammingError):
            return {}  # a store written before this table, read without migrating
        return found
