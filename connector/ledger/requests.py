"""Upload requests Google acknowledged (Data Manager `request_id`), and its verdict on each.

A request is stored PROCESSING when accepted; a later run's status check fills in
Google's status and processed / matched counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from connector.core import utcnow
from connector.ledger.database import Database
from connector.ledger.schema import upload_requests

PROCESSING = "PROCESSING"  # a request Google has not finished (Data Manager's name)


class UploadRequests:
    def __init__(self, db: Database) -> None:
        self._db = db

    def save(
        self, destination: str, events: Mapping[str, int], sent_at: datetime | None = None
    ) -> None:
        """Store requests Google accepted (request id -> events in it) as PROCESSING."""
        if not events:
            return
        sent_at = sent_at or utcnow()
        rows = [
            {"request_id": request_id, "destination": destination, "sent_at": sent_at}
            | {"events": count, "status": PROCESSING}
            for request_id, count in events.items()
        ]
        with self._db.engine.begin() as conn:
            conn.execute(insert(upload_requests), rows)

    def processing(self, destination: str, limit: int) -> list[str]:
        """Ids of requests Google has not finished processing, oldest first."""
        r = upload_requests.c
        query = (
            select(r.request_id)
            .where(r.destination == destination, r.status == PROCESSING)
            .order_by(r.sent_at, r.request_id)
            .limit(limit)
        )
        with self._db.engine.connect() as conn:
            return [str(request_id) for request_id in conn.execute(query).scalars()]

    def update(
        self,
        request_id: str,
        status: str,
        *,
        processed: int | None = None,
        matched: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record what a status check found (PROCESSING again: only the check time)."""
        values: dict[str, Any] = {"status": status, "checked_at": utcnow()}
        if status != PROCESSING:
            values.update(processed=processed, matched=matched, detail=detail)
        with self._db.engine.begin() as conn:
            conn.execute(
                update(upload_requests)
                .where(upload_requests.c.request_id == request_id)
                .values(**values)
            )

    def all(self, destination: str) -> list[dict[str, Any]]:
        """Every stored request of a destination with its status and counts, oldest first."""
        r = upload_requests.c
        query = (
            select(upload_requests)
            .where(r.destination == destination)
            .order_by(r.sent_at, r.request_id)
        )
        with self._db.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]
