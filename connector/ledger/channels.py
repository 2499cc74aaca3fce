"""Each lead's acquisition channel as GA4 saw it (`connector channels` fills it in)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import delete, exists, insert, select

from connector.ledger.database import Database, chunked
from connector.ledger.schema import lead_channels, stage_changes


@dataclass(frozen=True)
class LeadChannel:
    """The session channel of a lead's own generate_lead hit, as GA4 reported it."""

    lead_id: str
    channel_group: str
    source: str
    medium: str
    campaign: str
    looked_up_at: datetime


class ChannelCache:
    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, found: Iterable[LeadChannel]) -> int:
        """Store or refresh each lead's GA4 channel; returns the rows written."""
        rows = [asdict(channel) for channel in found]
        with self._db.engine.begin() as conn:
            # Delete + insert: one portable upsert for SQLite and PostgreSQL.
            for chunk in chunked(rows):
                ids = [row["lead_id"] for row in chunk]
                conn.execute(delete(lead_channels).where(lead_channels.c.lead_id.in_(ids)))
                conn.execute(insert(lead_channels), chunk)
        return len(rows)

    def get(self, lead_ids: Iterable[str] | None = None) -> dict[str, LeadChannel]:
        """Stored channels by lead id: all of them, or those of `lead_ids`."""
        if not self._db.exists():
            return {}
        c = lead_channels.c
        with self._db.engine.connect() as conn:
            if not self._db.has_table(conn, lead_channels.name):
                return {}
            if lead_ids is None:
                rows = list(conn.execute(select(lead_channels)))
            else:
                rows = [
                    row
                    for chunk in chunked(sorted(set(lead_ids)))
                    for row in conn.execute(select(lead_channels).where(c.lead_id.in_(chunk)))
                ]
        return {row.lead_id: LeadChannel(**row._mapping) for row in rows}

    def leads_to_look_up(self, *, refresh: bool = False) -> list[str]:
        """Lead ids in the ledger without a stored channel (all of them with `refresh`)."""
        sc = stage_changes.c
        query = select(sc.lead_id).distinct()
        if not refresh:
            query = query.where(~exists().where(lead_channels.c.lead_id == sc.lead_id))
        with self._db.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())
