"""Google Ads cost per campaign and day, and the campaign of each lead's click (`connector costs`).

Cost is stored as Google reports it (micros of the account currency) per
campaign and day; a re-read of a day replaces it (Google restates recent days).
A click's campaign comes from `click_view`, kept once found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Integer,
    String,
    Table,
    and_,
    delete,
    insert,
    select,
)

from connector.ledger.database import Database, chunked
from connector.ledger.schema import UTCDateTime, metadata, stage_changes

# New tables, created by `migrate`'s create_all: no schema version bump needed.
campaign_costs = Table(
    "campaign_costs",
    metadata,
    Column("campaign_id", String(30), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("campaign_name", String(255), nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    Column("clicks", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("read_at", UTCDateTime, nullable=False),
)
click_campaigns = Table(
    "click_campaigns",
    metadata,
    Column("gclid", String(255), primary_key=True),
    Column("campaign_id", String(30), nullable=False),
    Column("campaign_name", String(255), nullable=False),
    Column("click_date", Date, nullable=False),
    Column("looked_up_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class CampaignDay:
    campaign_id: str
    day: date
    campaign_name: str
    cost_micros: int
    clicks: int
    currency: str


@dataclass(frozen=True)
class ClickCampaign:
    gclid: str
    campaign_id: str
    campaign_name: str
    click_date: date


@dataclass(frozen=True)
class LeadClick:
    """A lead's gclid and the day it was first seen (the click is looked up on that day)."""

    lead_id: str
    gclid: str
    first_seen: datetime


class AdsCosts:
    def __init__(self, db: Database) -> None:
        self._db = db

    def save_costs(self, rows: Sequence[CampaignDay], read_at: datetime) -> int:
        """Store each campaign day, replacing what an earlier read stored for it."""
        c = campaign_costs.c
        with self._db.engine.begin() as conn:
            for row in rows:
                same = and_(c.campaign_id == row.campaign_id, c.day == row.day)
                conn.execute(delete(campaign_costs).where(same))
            if rows:
                conn.execute(
                    insert(campaign_costs), [asdict(r) | {"read_at": read_at} for r in rows]
                )
        return len(rows)

    def save_clicks(self, found: Sequence[ClickCampaign], looked_up_at: datetime) -> int:
        rows = [asdict(f) | {"looked_up_at": looked_up_at} for f in found]
        with self._db.engine.begin() as conn:
            for chunk in chunked(rows):
                ids = [row["gclid"] for row in chunk]
                conn.execute(delete(click_campaigns).where(click_campaigns.c.gclid.in_(ids)))
                conn.execute(insert(click_campaigns), chunk)
        return len(rows)

    def costs(self, since: date, until: date) -> list[CampaignDay]:
        """The stored campaign days from `since` to `until` (both included)."""
        c = campaign_costs.c
        query = select(*(getattr(c, f) for f in CampaignDay.__dataclass_fields__)).where(
            c.day >= since, c.day <= until
        )
        return [CampaignDay(*row) for row in self._read(campaign_costs.name, query)]

    def clicks(self) -> dict[str, ClickCampaign]:
        c = click_campaigns.c
        query = select(c.gclid, c.campaign_id, c.campaign_name, c.click_date)
        return {row.gclid: ClickCampaign(*row) for row in self._read(click_campaigns.name, query)}

    def lead_clicks(self, since: datetime) -> list[LeadClick]:
        """Leads with a gclid first seen since `since`: whose click's campaign can be read."""
        sc = stage_changes.c
        query = select(sc.lead_id, sc.changed_at, sc.lead_created_at, sc.attributes)
        firsts: dict[str, datetime] = {}
        gclids: dict[str, str] = {}
        for row in self._read(stage_changes.name, query.order_by(sc.lead_id, sc.changed_at)):
            seen = min(row.changed_at, row.lead_created_at or row.changed_at)
            firsts[row.lead_id] = min(firsts.get(row.lead_id, seen), seen)
            if gclid := (row.attributes or {}).get("gclid"):
                gclids[row.lead_id] = str(gclid)  # the latest wins, as in the report
        return [
            LeadClick(lead, gclid, firsts[lead])
            for lead, gclid in sorted(gclids.items())
            if firsts[lead] >= since
        ]

    def _read(self, table: str, query: Any) -> Iterable[Any]:
        """Rows of `query`; none from a store without `table` (older, or never written)."""
        if not self._db.exists():
            return []
        with self._db.engine.connect() as conn:
            if not self._db.has_table(conn, table):
                return []
            return conn.execute(query).all()
