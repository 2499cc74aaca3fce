"""The report's figures, as pure functions of loaded leads, deliveries and runs.

Stages are ordered lead < mql < sql < opportunity < won; a lead that reached a
later stage counts as having passed the earlier ones (CRMs often skip a
status). Lost and disqualified leads count at the furthest stage they reached.
Revenue is in the report's currency: deals in others are converted with the
org's own rates (`currency`); a deal that still has no value counts as won,
not in revenue, and is listed with its amount and currency. The pipeline is
the value of the deals still open at the period's end (`load`), valued the
same way; an open deal without a value is counted and listed likewise.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from connector.core import MAY_BE_DUPLICATED
from connector.ledger.rates import CurrencyRate
from connector.report.attribution import (
    DEFAULT_PRECEDENCE,
    UNATTRIBUTED,
    Attribution,
    attribute,
    check_precedence,
)
from connector.report.breakdown import Mix, campaign_of, channel_of, mix
from connector.report.costs import Costs, cost_rows
from connector.report.currency import DealAmount, Valuation, value_deals
from connector.report.load import Deal, DeliveryRow, Lead, LedgerData, Period, RequestRow
from connector.report.unattributed import ReasonSets, reason_sets

FUNNEL = ("lead", "mql", "sql", "opportunity", "won")
_ORDER = {stage: i for i, stage in enumerate(FUNNEL)}
GroupBy = Literal["month", "week"]
NOT_ATTRIBUTABLE_REASONS = ("not_attributable", "click_not_found")


@dataclass(frozen=True)
class Share:
    part: float
    whole: float

    @property
    def value(self) -> float | None:
        return rate(self.part, self.whole)


@dataclass(frozen=True)
class Measurability:
    leads: Share  # attributable leads / leads
    by_stage: dict[str, Share]
    revenue: Share  # won revenue of attributable leads / won revenue
    by_signal: dict[str, int]  # attributable leads by the signal that placed them
    unattributed_reasons: dict[str, int]  # a lead counts once under each reason it has


@dataclass(frozen=True)
class TrendPoint:
    period: str  # "2026-11" or "2026-W47"
    leads: Share
    revenue: Share = Share(0, 0)  # won revenue of attributable leads / won revenue


@dataclass(frozen=True)
class Funnel:
    leads: int
    mql: int
    sql: int
    opportunities: int
    won: int
    won_revenue: float
    deals_with_value: int
    won_without_value: int  # no amount, or a currency without a rate
    median_days_to_contract: float | None
    average_cycle_days: float | None
    pipeline: float = 0.0  # the open deals' value
    open_deals: int = 0
    open_without_value: int = 0  # open deals with no amount, or a currency without a rate

    @property
    def mql_to_sql(self) -> float | None:
        return rate(self.sql, self.mql)

    @property
    def sql_to_opportunity(self) -> float | None:
        return rate(self.opportunities, self.sql)

    @property
    def opportunity_to_won(self) -> float | None:
        return rate(self.won, self.opportunities)

    @property
    def overall_conversion(self) -> float | None:
        return rate(self.won, self.leads)

    @property
    def average_deal(self) -> float | None:
        return rate(self.won_revenue, self.deals_with_value)

    @property
    def velocity_per_day(self) -> float | None:
        return pipeline_velocity(
            self.opportunities, self.opportunity_to_won, self.average_deal, self.average_cycle_days
        )


@dataclass(frozen=True)
class DeliveryHealth:
    delivered: int = 0
    pending: int = 0
    not_attributable: int = 0  # Google found no click to credit (CLICK_NOT_FOUND)
    skipped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    processed: int | None = None  # Google's own counts, when runs recorded them
    matched: int | None = None
    # Events Google accepted with a field warning (Data Manager), by "REASON field".
    field_warnings: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0  # claimed by a run that is sending them now (or died doing so)
    dead: int = 0  # attempts ran out: `connector failures`, then `connector retry`
    unknown: int = 0  # GA4 may or may not have them (resending after a crash switched off)
    # Delivered, but sent again after a run stopped with them in flight: GA4 may count twice.
    may_be_duplicated: int = 0

    @property
    def total(self) -> int:
        counted = self.delivered + self.pending + self.not_attributable
        counted += self.in_flight + self.dead + self.unknown
        return counted + sum(self.skipped.values()) + sum(self.rejected.values())


@dataclass(frozen=True)
class Report:
    period: Period
    group_by: GroupBy
    currency: str
    precedence: tuple[str, ...]
    measurability: Measurability
    trend: list[TrendPoint]
    funnel: Funnel
    channels: dict[str, Funnel]
    delivery: dict[str, DeliveryHealth]
    store_found: bool
    generated_at: datetime
    attributions: dict[str, Attribution] = field(default_factory=dict)
    valuation: Valuation | None = None
    pipeline: Valuation | None = None  # the open deals'
    rates_read_at: datetime | None = None
    leads: list[Lead] = field(default_factory=list)
    unattributed: ReasonSets = field(default_factory=lambda: ReasonSets(0, {}, {}, 0))
    by_channel: Mix = field(default_factory=lambda: Mix("channel", [], []))
    by_campaign: Mix = field(default_factory=lambda: Mix("campaign", [], []))
    costs: Costs = field(default_factory=lambda: Costs([], []))


def rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def pipeline_velocity(
    opportunities: int,
    win_rate: float | None,
    average_deal: float | None,
    cycle_days: float | None,
) -> float | None:
    """Value the pipeline turns into revenue per day; None when a factor is unknown."""
    if win_rate is None or average_deal is None or not cycle_days:
        return None
    return opportunities * win_rate * average_deal / cycle_days


def reached(lead: Lead, stage: str) -> bool:
    target = _ORDER[stage]
    return target == 0 or any(_ORDER.get(s, -1) >= target for s in lead.stages)


def valuation(
    leads: Iterable[Lead], currency: str, rates: Sequence[CurrencyRate] = ()
) -> Valuation:
    """The deals won at the period's end in `currency` (a deal reopened or lost since is not:
    `load`); a deal without a currency is in the report's."""
    deals = (
        _amount(lead, deal, lead.stages.get("won")) for lead in leads for deal in lead.won_deals
    )
    return value_deals(deals, currency, rates)


def open_pipeline(
    leads: Iterable[Lead], currency: str, rates: Sequence[CurrencyRate] = ()
) -> Valuation:
    """The open deals in `currency`, each at the rate of its expected CloseDate."""
    deals = (_amount(lead, deal, None) for lead in leads for deal in lead.open_deals)
    return value_deals(deals, currency, rates)


def _amount(lead: Lead, deal: Deal, changed: datetime | None) -> DealAmount:
    # A deal recorded without its day (hand-built) converts at the day it was won or seen.
    on = deal.closed_on or (changed or lead.first_seen).date()
    return DealAmount(
        lead.lead_id, deal.amount, deal.currency, on, deal.at_close_date, deal.recorded
    )


def days_to_contract(lead: Lead) -> float | None:
    won_at = lead.stages.get("won")
    if won_at is None:
        return None
    start = lead.created_at or lead.first_seen  # creation date missing: first change instead
    return max((won_at - start).total_seconds(), 0.0) / 86_400


def funnel(leads: Sequence[Lead], values_of: Valuation, open_of: Valuation | None = None) -> Funnel:
    counts = {stage: sum(reached(lead, stage) for lead in leads) for stage in FUNNEL}
    won = [lead for lead in leads if reached(lead, "won")]
    values = [v for lead in won if (v := values_of.value(lead.lead_id)) is not None]
    days = [d for lead in won if (d := days_to_contract(lead)) is not None]
    open_of = open_of or Valuation(values_of.currency)
    return Funnel(
        leads=counts["lead"],
        mql=counts["mql"],
        sql=counts["sql"],
        opportunities=counts["opportunity"],
        won=counts["won"],
        won_revenue=sum(values),
        deals_with_value=len(values),
        won_without_value=len(won) - len(values),
        median_days_to_contract=statistics.median(days) if days else None,
        average_cycle_days=statistics.fmean(days) if days else None,
        pipeline=sum(open_of.value(lead.lead_id) or 0.0 for lead in leads),
        open_deals=sum(len(lead.open_deals) for lead in leads),
        open_without_value=open_of.unvalued_of(lead.lead_id for lead in leads),
    )


def funnel_by_channel(
    leads: Sequence[Lead],
    attributions: Mapping[str, Attribution],
    values_of: Valuation,
    open_of: Valuation | None = None,
) -> dict[str, Funnel]:
    """Funnel per channel, biggest first, "unattributed" last so it reads as the remainder."""
    groups: dict[str, list[Lead]] = {}
    for lead in leads:
        groups.setdefault(attributions[lead.lead_id].channel, []).append(lead)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] == UNATTRIBUTED, -len(kv[1]), kv[0]))
    return {channel: funnel(group, values_of, open_of) for channel, group in ordered}


def measurability(
    leads: Sequence[Lead], attributions: Mapping[str, Attribution], values_of: Valuation
) -> Measurability:
    def placed(lead: Lead) -> bool:
        return attributions[lead.lead_id].attributed

    by_stage = {}
    for stage in FUNNEL:
        at_stage = [lead for lead in leads if reached(lead, stage)]
        by_stage[stage] = Share(sum(map(placed, at_stage)), len(at_stage))
    values = [(placed(lead), values_of.value(lead.lead_id) or 0.0) for lead in leads]
    attributions_here = [attributions[lead.lead_id] for lead in leads]
    return Measurability(
        leads=by_stage["lead"],
        by_stage=by_stage,
        revenue=Share(sum(v for ok, v in values if ok), sum(v for _, v in values)),
        by_signal=_most_common(a.signal for a in attributions_here if a.signal),
        unattributed_reasons=_most_common(r for a in attributions_here for r in a.reasons),
    )


def trend(
    leads: Sequence[Lead],
    attributions: Mapping[str, Attribution],
    period: Period,
    group_by: GroupBy,
    values_of: Valuation | None = None,
) -> list[TrendPoint]:
    """Measurability of the leads first seen in each month or ISO week (by count and by won
    revenue); empty buckets kept."""
    totals: Counter[str] = Counter()
    placed: Counter[str] = Counter()
    revenue: defaultdict[str, float] = defaultdict(float)
    placed_revenue: defaultdict[str, float] = defaultdict(float)
    for lead in leads:
        key = bucket(lead.first_seen.date(), group_by)
        ok = attributions[lead.lead_id].attributed
        value = (values_of.value(lead.lead_id) if values_of else None) or 0.0
        totals[key] += 1
        placed[key] += ok
        revenue[key] += value
        placed_revenue[key] += value if ok else 0.0
    return [
        TrendPoint(key, Share(placed[key], totals[key]), Share(placed_revenue[key], revenue[key]))
        for key in buckets(period, group_by)
    ]


def bucket(day: date, group_by: GroupBy) -> str:
    if group_by == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def buckets(period: Period, group_by: GroupBy) -> list[str]:
    days = (period.until - period.since).days + 1
    keys = (bucket(period.since + timedelta(days=i), group_by) for i in range(max(days, 0)))
    return list(dict.fromkeys(keys))


def delivery_health(
    rows: Iterable[DeliveryRow],
    requests: Iterable[RequestRow] = (),
    warnings: Mapping[str, dict[str, int]] | None = None,
) -> dict[str, DeliveryHealth]:
    """Per destination: what was delivered, is waiting, was skipped or refused, and why."""
    tallies: dict[str, dict[str, Any]] = {}
    for row in rows:
        tally = tallies.setdefault(row.destination, {"skipped": Counter(), "rejected": Counter()})
        reason = row.reason or "unspecified"
        if any(code in reason.lower() for code in NOT_ATTRIBUTABLE_REASONS):
            tally["not_attributable"] = tally.get("not_attributable", 0) + 1
        elif row.status in ("skipped", "rejected"):
            tally[row.status][reason] += 1
        else:
            tally[row.status] = tally.get(row.status, 0) + 1
            if row.status == "delivered" and row.reason == MAY_BE_DUPLICATED:
                tally["may_be_duplicated"] = tally.get("may_be_duplicated", 0) + 1
    google = _google_counts(requests)
    return {
        name: DeliveryHealth(
            delivered=t.get("delivered", 0),
            pending=t.get("pending", 0),
            not_attributable=t.get("not_attributable", 0),
            skipped=dict(t["skipped"].most_common()),
            rejected=dict(t["rejected"].most_common()),
            processed=google.get(name, {}).get("processed"),
            matched=google.get(name, {}).get("matched"),
            field_warnings=dict((warnings or {}).get(name, {})),
            in_flight=t.get("in_flight", 0),
            dead=t.get("dead", 0),
            unknown=t.get("unknown", 0),
            may_be_duplicated=t.get("may_be_duplicated", 0),
        )
        for name, t in sorted(tallies.items())
    }


def build_report(
    data: LedgerData,
    *,
    currency: str,
    group_by: GroupBy = "month",
    precedence: Sequence[str] = DEFAULT_PRECEDENCE,
    ga4_channels: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Report:
    """Every figure of the report for the loaded period."""
    order = check_precedence(precedence)
    values_of = valuation(data.leads, currency, data.rates)
    open_of = open_pipeline(data.leads, currency, data.rates)
    attributions = {
        lead.lead_id: attribute(
            lead.lead_id,
            lead.attributes,
            problems=lead.problems,
            ga4_channels=ga4_channels,
            precedence=order,
        )
        for lead in data.leads
    }
    return Report(
        period=data.period,
        group_by=group_by,
        currency=currency,
        precedence=order,
        measurability=measurability(data.leads, attributions, values_of),
        trend=trend(data.leads, attributions, data.period, group_by, values_of),
        funnel=funnel(data.leads, values_of, open_of),
        channels=funnel_by_channel(data.leads, attributions, values_of, open_of),
        delivery=delivery_health(data.deliveries, data.requests, data.warnings),
        store_found=data.store_found,
        generated_at=now or datetime.now().astimezone(),
        attributions=attributions,
        valuation=values_of,
        pipeline=open_of,
        rates_read_at=data.rates_read_at,
        leads=list(data.leads),
        unattributed=reason_sets(data.leads, attributions),
        costs=cost_rows(
            data.leads,
            {lead: a.channel for lead, a in attributions.items()},
            data.ad_costs,
            data.clicks,
            values_of,
            data.rates,
            reached,
            pipeline=open_of,
        ),
        **_mixes(data, attributions, group_by, values_of),
    )


def _mixes(
    data: LedgerData,
    attributions: Mapping[str, Attribution],
    group_by: GroupBy,
    values_of: Valuation,
) -> dict[str, Mix]:
    periods = buckets(data.period, group_by)

    def bucket_of(lead: Lead) -> str:
        return bucket(lead.first_seen.date(), group_by)

    by_channel = channel_of(attributions)
    return {
        "by_channel": mix("channel", data.leads, by_channel, periods, bucket_of, values_of),
        "by_campaign": mix("campaign", data.leads, campaign_of, periods, bucket_of, values_of),
    }


def _google_counts(requests: Iterable[RequestRow]) -> dict[str, dict[str, int]]:
    """Sum Google's processed / matched counts over the upload requests it has finished."""
    totals: dict[str, dict[str, int]] = {}
    for request in requests:
        if request.processed is None:
            continue  # still PROCESSING at Google (or never known): no counts yet
        counts = totals.setdefault(request.destination, {"processed": 0, "matched": 0})
        counts["processed"] += request.processed
        counts["matched"] += request.matched or 0
    return totals


def _most_common(items: Iterable[str]) -> dict[str, int]:
    return dict(Counter(items).most_common())
