"""What the report reads from the ledger, as plain dataclasses.

The period is a cohort: the leads first seen between `since` and `until`
(first seen = the earlier of the lead's creation and its first recorded
change), followed through every change up to the end of `until`. Rates
between stages are only meaningful within one cohort; a lead created in the
period but won later shows up as won when the report is run again later.
Deliveries and runs are those of changes and runs inside the period; upload
requests (Google's processed / matched counts) those sent inside it.

A lead's deals: the won one (its last won change: a restated amount replaces
the first), and the open ones, the pipeline: each opportunity whose latest
opportunity, won or lost change up to the period's end is an opportunity stage
(a stage the mapping does not list neither opens nor closes a deal), at its
latest recorded amount. A lead converted into an opportunity of which no change
was recorded yet is one open deal of unknown value. A deal's value is its own
amount and currency as recorded with the change (`deal_amount`); changes
recorded before deals were carry only the value sent (`amount`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from connector.ledger import CurrencyRate, Ledger
from connector.ledger.costs import CampaignDay, ClickCampaign

DEFAULT_DAYS = 90


@dataclass(frozen=True)
class Period:
    """Whole days, `until` included."""

    since: date
    until: date

    @classmethod
    def parse(cls, since: str | None, until: str | None, today: date | None = None) -> Period:
        """From YYYY-MM-DD texts; by default the 90 days up to today (UTC)."""
        last = date.fromisoformat(until) if until else today or datetime.now(UTC).date()
        first = date.fromisoformat(since) if since else last - timedelta(days=DEFAULT_DAYS - 1)
        if first > last:
            raise ValueError(f"since {first} is after until {last}")
        return cls(first, last)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time(), UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.until + timedelta(days=1), time(), UTC)


DEAL_STAGES = ("opportunity", "won", "lost")
_CLOSING = ("won", "lost", "disqualified")


@dataclass(frozen=True)
class Deal:
    """A deal's value as recorded; amount None when the CRM gave none we can use."""

    amount: float | None
    currency: str | None
    # The day its amount converts at: the CloseDate (expected, for an open deal), else the
    # day of the change it was recorded with.
    closed_on: date | None = None
    at_close_date: bool = False  # closed_on is the Opportunity's CloseDate
    recorded: bool = True  # False: converted, but no change of the opportunity recorded


@dataclass(frozen=True)
class Lead:
    lead_id: str
    created_at: datetime | None
    first_seen: datetime
    stages: dict[str, datetime]  # stage -> first time the lead was recorded entering it
    attributes: dict[str, Any]  # the latest non-empty value of each key over its changes
    problems: dict[str, str]
    deal: Deal | None = None  # set when the lead was won
    open_deals: tuple[Deal, ...] = ()  # its opportunities still open: the pipeline


@dataclass(frozen=True)
class DeliveryRow:
    destination: str
    status: str
    reason: str | None
    stage: str


@dataclass(frozen=True)
class RunRow:
    started_at: datetime
    status: str
    summary: dict[str, Any] | None


@dataclass(frozen=True)
class RequestRow:
    """One upload request and Google's counts for it (None until Google finished it)."""

    destination: str
    status: str
    processed: int | None
    matched: int | None


@dataclass(frozen=True)
class LedgerData:
    period: Period
    leads: list[Lead] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)
    store_found: bool = True
    requests: list[RequestRow] = field(default_factory=list)
    # Field warnings of requests sent in the period, per destination, by "REASON field".
    warnings: dict[str, dict[str, int]] = field(default_factory=dict)
    rates: list[CurrencyRate] = field(default_factory=list)  # the org's, as the sync read them
    rates_read_at: datetime | None = None
    ad_costs: list[CampaignDay] = field(default_factory=list)  # `connector costs`, in the period
    clicks: dict[str, ClickCampaign] = field(default_factory=dict)  # gclid -> its campaign


def load(ledger: Ledger, period: Period) -> LedgerData:
    """Everything the report reads for `period`; an absent or empty store reads as no data."""
    rows = ledger.reporting.period(period.start, period.end)
    if rows is None:
        return LedgerData(period, store_found=False)
    stored = ledger.rates.get()
    return LedgerData(
        period=period,
        leads=group_leads(row._mapping for row in rows.changes),
        deliveries=[
            DeliveryRow(r.destination, r.status, r.reason, r.stage) for r in rows.deliveries
        ],
        runs=[RunRow(r.started_at, r.status, r.summary) for r in rows.runs],
        requests=[
            RequestRow(r.destination, r.status, r.processed, r.matched) for r in rows.requests
        ],
        warnings=ledger.warnings.totals(period.start, period.end),
        rates=stored.rates,
        rates_read_at=stored.read_at,
        ad_costs=ledger.costs.costs(period.since, period.until),
        clicks=ledger.costs.clicks(),
    )


def group_leads(changes: Iterable[Any]) -> list[Lead]:
    """Fold stage-change rows (mappings with the stage_changes columns) into leads."""
    by_lead: dict[str, list[Any]] = {}
    for change in changes:
        by_lead.setdefault(change["lead_id"], []).append(change)
    return [_lead(rows) for rows in by_lead.values()]


def parse_amount(raw: object) -> float | None:
    """A usable deal amount, or None: missing, text, negative or not finite is unknown."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        amount = float(raw)  # type: ignore[arg-type]  # CRM values arrive as str or number
    except (TypeError, ValueError):
        return None
    return amount if math.isfinite(amount) and amount >= 0 else None


def _lead(rows: Sequence[Any]) -> Lead:
    rows = sorted(rows, key=lambda r: r["changed_at"])
    created = next((r["lead_created_at"] for r in rows if r["lead_created_at"]), None)
    stages: dict[str, datetime] = {}
    attributes: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for row in rows:
        stages.setdefault(row["stage"], row["changed_at"])
        # Later changes carry the lead as it is now: a click id added later still counts.
        attributes.update(
            {k: v for k, v in (row["attributes"] or {}).items() if v not in (None, "")}
        )
        problems.update(row["problems"] or {})
    first = min(rows[0]["changed_at"], created) if created else rows[0]["changed_at"]
    # The last won row: a restated amount (a later "won" change) replaces the first one.
    won = next((r for r in reversed(rows) if r["stage"] == "won"), None)
    deal = _deal(won, attributes) if won is not None else None
    lead = Lead(rows[0]["lead_id"], created, first, stages, attributes, problems, deal)
    return replace(lead, open_deals=_open_deals(rows, attributes))


def _deal(row: Any, lead: dict[str, Any]) -> Deal:
    """The deal a change recorded: its own amount and currency, else the value sent."""
    values = row["attributes"] or {}
    if "deal_amount" in values:
        amount, currency = values["deal_amount"], values.get("deal_currency")
    else:  # recorded before the deal was: the won value sent is all there is
        amount, currency = values.get("amount"), values.get("currency")
    close = _date(values.get("close_date"))
    return Deal(
        parse_amount(amount),
        currency or lead.get("currency") or None,
        close or row["changed_at"].date(),
        at_close_date=close is not None,
    )


def _open_deals(rows: Sequence[Any], lead: dict[str, Any]) -> tuple[Deal, ...]:
    """The lead's opportunities open at the period's end, each at its latest known amount."""
    by_opportunity: dict[str, list[Any]] = {}
    for row in rows:
        if opportunity := row.get("opportunity_id"):
            by_opportunity.setdefault(opportunity, []).append(row)
    if not by_opportunity:
        return _converted_only(rows)
    found = (_still_open(group, lead) for group in by_opportunity.values())
    return tuple(deal for deal in found if deal is not None)


def _still_open(group: Sequence[Any], lead: dict[str, Any]) -> Deal | None:
    stage = next((r["stage"] for r in reversed(group) if r["stage"] in DEAL_STAGES), None)
    if stage != "opportunity":
        return None
    recorded = [r for r in group if "deal_amount" in (r["attributes"] or {})]
    priced = [r for r in recorded if r["attributes"]["deal_amount"] is not None]
    # Changes recorded before deals were carry no amount of an open deal at all.
    return replace(_deal((priced or group)[-1], lead), recorded=bool(recorded))


def _converted_only(rows: Sequence[Any]) -> tuple[Deal, ...]:
    """Converted (a lead status meaning opportunity) and nothing read of the deal since: one
    open deal of unknown value, unless the lead was closed after."""
    last = next((r for r in reversed(rows) if r["stage"] in (*_CLOSING, "opportunity")), None)
    if last is None or last["stage"] != "opportunity":
        return ()
    return (Deal(None, None, last["changed_at"].date(), recorded=False),)


def _date(raw: object) -> date | None:
    try:
        return date.fromisoformat(str(raw)) if raw else None
    except ValueError:
        return None
