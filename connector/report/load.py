"""What the report reads from the ledger, as plain dataclasses.

The period is a cohort: the leads first seen between `since` and `until`
(first seen = the earlier of the lead's creation and its first recorded
change), followed through every change up to the end of `until`. Rates
between stages are only meaningful within one cohort; a lead created in the
period but won later shows up as won when the report is run again later.
Deliveries and runs are those of changes and runs inside the period; upload
requests (Google's processed / matched counts) those sent inside it.

A lead's deals follow the CRM's latest stage of each opportunity: its latest
opportunity, won or lost change up to the period's end (a stage the mapping
does not list neither opens nor closes a deal, except that it reopens a won
one: the sync takes that conversion back, as it does for a won deal reopened
or lost, `translate._retraction`). A deal won now is won at its latest won
amount (a restatement replaces the first), and the lead counts as won from
when it was last won; a deal reopened is open, one lost is neither; a lead
none of whose deals is won now is not won. The open ones are the pipeline, at
their latest recorded amount. A lead converted into an opportunity of which no
change was recorded yet is one open deal of unknown value. A deal's value is
its own amount and currency as recorded with the change (`deal_amount`);
changes recorded before deals were carry only the value sent (`amount`).
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
    # stage -> first time the lead was recorded entering it; "won": when it was last won,
    # absent when no deal of it is won at the period's end
    stages: dict[str, datetime]
    attributes: dict[str, Any]  # the latest non-empty value of each key over its changes
    problems: dict[str, str]
    won_deals: tuple[Deal, ...] = ()  # its deals won at the period's end
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


def identity(rows: Iterable[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A lead's attributes and problems from its change rows in time order: later changes
    carry the lead as it is now (a click id added later counts; an empty value never
    replaces one given)."""
    attributes: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for row in rows:
        attributes.update(
            {k: v for k, v in (row["attributes"] or {}).items() if v not in (None, "")}
        )
        problems.update(row["problems"] or {})
    return attributes, problems


def _lead(rows: Sequence[Any]) -> Lead:
    rows = sorted(rows, key=lambda r: r["changed_at"])
    created = next((r["lead_created_at"] for r in rows if r["lead_created_at"]), None)
    stages: dict[str, datetime] = {}
    for row in rows:
        stages.setdefault(row["stage"], row["changed_at"])
    attributes, problems = identity(rows)
    first = min(rows[0]["changed_at"], created) if created else rows[0]["changed_at"]
    deals = {key: _DealState.of(group) for key, group in _by_opportunity(rows).items()}
    won = [state.won for state in deals.values() if state.won]
    # Won is the CRM's latest word: a lead whose won deals were all reopened or lost is not.
    stages.pop("won", None)
    if won:
        stages["won"] = min(changes[0]["changed_at"] for changes in won)
    return Lead(
        rows[0]["lead_id"],
        *(created, first, stages, attributes, problems),
        won_deals=tuple(_deal(changes[-1], attributes) for changes in won),
        open_deals=_open_deals(rows, deals, attributes),
    )


@dataclass(frozen=True)
class _DealState:
    """One opportunity (or the lead's own rows, key None) at the period's end."""

    stage: str | None  # its latest deal stage
    won: tuple[Any, ...]  # when won now: its won changes since it was last won
    rows: tuple[Any, ...]

    @classmethod
    def of(cls, group: Sequence[Any]) -> _DealState:
        stage: str | None = None
        won: tuple[Any, ...] = ()
        for row in group:
            now = row["stage"]
            if now not in DEAL_STAGES:
                if stage != "won" or not row.get("opportunity_id"):
                    continue  # an unlisted stage leaves an open or closed deal as it was
                now = "opportunity"  # but reopens a won one: the sync takes it back
            won = (*won, row) if now == "won" else ()
            stage = now
        return cls(stage, won, tuple(group))


def _by_opportunity(rows: Sequence[Any]) -> dict[str | None, list[Any]]:
    groups: dict[str | None, list[Any]] = {}
    for row in rows:
        groups.setdefault(row.get("opportunity_id"), []).append(row)
    return groups


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


def _open_deals(
    rows: Sequence[Any], deals: dict[str | None, _DealState], lead: dict[str, Any]
) -> tuple[Deal, ...]:
    """The lead's opportunities open at the period's end, each at its latest known amount."""
    opportunities = [state for key, state in deals.items() if key is not None]
    if not opportunities:
        return _converted_only(rows)
    return tuple(_open_deal(s, lead) for s in opportunities if s.stage == "opportunity")


def _open_deal(state: _DealState, lead: dict[str, Any]) -> Deal:
    recorded = [r for r in state.rows if "deal_amount" in (r["attributes"] or {})]
    priced = [r for r in recorded if r["attributes"]["deal_amount"] is not None]
    # Changes recorded before deals were carry no amount of an open deal at all.
    return replace(_deal((priced or state.rows)[-1], lead), recorded=bool(recorded))


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
