"""The org's currency conversion rates, as the last sync read them from Salesforce.

Salesforce keeps one rate per currency against the org's corporate currency:
`CurrencyType` holds the current ones, and with advanced currency management
`DatedConversionRate` holds dated ones (valid from StartDate up to, not
including, NextStartDate). The report converts won deals with them; nothing
sent to Google Ads is converted. Each read replaces the stored set whole, so a
rate deleted in the org does not linger here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime

from sqlalchemy import Boolean, Column, Date, Float, Integer, String, Table, delete, insert, select

from connector.ledger.database import Database
from connector.ledger.schema import UTCDateTime, metadata

CURRENT, DATED = "CurrencyType", "DatedConversionRate"

# A new table, created by `migrate`'s create_all: no schema version bump needed.
currency_rates = Table(
    "currency_rates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),  # CurrencyType or DatedConversionRate
    Column("iso_code", String(3), nullable=False),
    # Units of this currency per one unit of the corporate currency (Salesforce's definition).
    Column("rate", Float, nullable=False),
    Column("corporate", Boolean, nullable=False, default=False),
    Column("start_date", Date),  # dated rates only
    Column("next_start_date", Date),  # dated rates only; None: still in force
    Column("read_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class CurrencyRate:
    """One Salesforce rate: `rate` units of `iso_code` per unit of the corporate currency."""

    kind: str
    iso_code: str
    rate: float
    corporate: bool = False
    start_date: date | None = None
    next_start_date: date | None = None


@dataclass(frozen=True)
class StoredRates:
    rates: list[CurrencyRate]
    read_at: datetime | None


class CurrencyRates:
    def __init__(self, db: Database) -> None:
        self._db = db

    def replace(self, rates: Sequence[CurrencyRate], read_at: datetime) -> int:
        """Store the org's whole set of rates in place of the last one; returns the rows."""
        rows = [asdict(rate) | {"read_at": read_at} for rate in rates]
        with self._db.engine.begin() as conn:
            conn.execute(delete(currency_rates))
            if rows:
                conn.execute(insert(currency_rates), rows)
        return len(rows)

    def get(self) -> StoredRates:
        """The stored rates; none from a store without them (older, or never read)."""
        if not self._db.exists():
            return StoredRates([], None)
        c = currency_rates.c
        columns = (c.kind, c.iso_code, c.rate, c.corporate, c.start_date, c.next_start_date)
        with self._db.engine.connect() as conn:
            if not self._db.has_table(conn, currency_rates.name):
                return StoredRates([], None)
            rows = conn.execute(select(*columns, c.read_at).order_by(c.id)).all()
        rates = [CurrencyRate(*row[:6]) for row in rows]
        return StoredRates(rates, max((row.read_at for row in rows), default=None))
