"""Google Ads cost beside what it brought, per campaign and for the paid search channel.

A lead belongs to the campaign of its gclid's click (`click_view`, read by
`connector costs`). Per row: cost, leads, MQL, SQL, opportunities, won, cost
per SQL and per opportunity, won revenue, pipeline (the value of its leads'
deals still open), return on ad spend (won revenue / cost) and CAC (cost / won
deals). Cost is in the account's currency as Google reports it, converted to
the report's with the org's rates when they differ; won revenue and pipeline
are valued as everywhere in the report (`currency`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from connector.ledger.costs import CampaignDay, ClickCampaign
from connector.ledger.rates import CurrencyRate
from connector.report.attribution import PAID_SEARCH
from connector.report.currency import Valuation, convert_amount
from connector.report.load import Lead

NOT_FOUND = "(click not found in a campaign)"


@dataclass(frozen=True)
class CostRow:
    name: str
    cost: float | None  # None: the cost is not known (or not convertible)
    clicks: int
    leads: int
    mql: int
    sql: int
    opportunities: int
    won: int
    won_revenue: float
    pipeline: float = 0.0
    open_without_value: int = 0  # open deals of its leads that have no value

    @property
    def cost_per_sql(self) -> float | None:
        return _per(self.cost, self.sql)

    @property
    def cost_per_opportunity(self) -> float | None:
        return _per(self.cost, self.opportunities)

    @property
    def roas(self) -> float | None:
        return self.won_revenue / self.cost if self.cost else None

    @property
    def cac(self) -> float | None:
        return _per(self.cost, self.won)


@dataclass(frozen=True)
class Costs:
    campaigns: list[CostRow]
    channels: list[CostRow]
    unconverted: int = 0  # campaign days whose cost had no rate into the report's currency

    @property
    def known(self) -> bool:
        return bool(self.channels)


def cost_rows(
    leads: Sequence[Lead],
    channels: Mapping[str, str],  # lead id -> channel
    days: Sequence[CampaignDay],
    clicks: Mapping[str, ClickCampaign],
    values: Valuation,
    rates: Sequence[CurrencyRate],
    reached: Callable[[Lead, str], bool],  # the funnel's rule (metrics.reached)
    pipeline: Valuation | None = None,  # the open deals' (metrics.open_pipeline)
) -> Costs:
    """The cost rows of every campaign with cost or leads, and of the paid search channel;
    none before `connector costs` stored any cost for the period."""
    if not days:
        return Costs([], [])
    open_values = pipeline or Valuation(values.currency)
    spend = _spend(days, values.currency, rates)
    groups = _campaign_leads(leads, clicks)
    names = {c.campaign_id: c.campaign_name for c in clicks.values()}
    names |= {cid: s.name for cid, s in spend.items()}

    def row(name: str, cost: float | None, n_clicks: int, group: Sequence[Lead]) -> CostRow:
        mql, sql, opportunities, won = (
            sum(reached(lead, s) for lead in group) for s in ("mql", "sql", "opportunity", "won")
        )
        revenue = sum(values.value(lead.lead_id) or 0.0 for lead in group)
        return CostRow(
            *(name, cost, n_clicks, len(group), mql, sql, opportunities, won, revenue),
            pipeline=sum(open_values.value(lead.lead_id) or 0.0 for lead in group),
            open_without_value=open_values.unvalued_of(lead.lead_id for lead in group),
        )

    none = _Spend("", None, 0, 0)
    ids = sorted(
        set(spend) | (set(groups) - {NOT_FOUND}), key=lambda c: -(spend.get(c, none).cost or 0)
    )
    campaigns = [
        row(names.get(c, c), spend.get(c, none).cost, spend.get(c, none).clicks, groups.get(c, []))
        for c in ids
    ]
    if NOT_FOUND in groups:
        campaigns.append(row(NOT_FOUND, None, 0, groups[NOT_FOUND]))
    unconverted = sum(s.unconverted for s in spend.values())
    paid = [lead for lead in leads if channels.get(lead.lead_id) == PAID_SEARCH]
    all_cost = None if unconverted else sum(s.cost or 0.0 for s in spend.values())
    channel = row(PAID_SEARCH, all_cost, sum(s.clicks for s in spend.values()), paid)
    return Costs(campaigns, [channel], unconverted)


@dataclass(frozen=True)
class _Spend:
    name: str
    cost: float | None  # None when a day's cost could not be converted
    clicks: int
    unconverted: int  # days without a rate into the report's currency


def _spend(
    days: Sequence[CampaignDay], currency: str, rates: Sequence[CurrencyRate]
) -> dict[str, _Spend]:
    """Each campaign's cost in the report's currency (each day at its own rate) and clicks."""
    found: dict[str, _Spend] = {}
    for d in days:
        value = convert_amount(d.cost_micros / 1e6, d.currency, currency, d.day, rates)
        was = found.get(d.campaign_id, _Spend(d.campaign_name, 0.0, 0, 0))
        cost = None if value is None or was.cost is None else was.cost + value
        found[d.campaign_id] = _Spend(
            d.campaign_name, cost, was.clicks + d.clicks, was.unconverted + (value is None)
        )
    return found


def _campaign_leads(
    leads: Sequence[Lead], clicks: Mapping[str, ClickCampaign]
) -> dict[str, list[Lead]]:
    """Leads with a gclid by the campaign of its click (NOT_FOUND when click_view had none)."""
    groups: dict[str, list[Lead]] = {}
    for lead in leads:
        if gclid := lead.attributes.get("gclid"):
            click = clicks.get(str(gclid))
            groups.setdefault(click.campaign_id if click else NOT_FOUND, []).append(lead)
    return groups


def _per(cost: float | None, count: int) -> float | None:
    return cost / count if cost is not None and count else None
