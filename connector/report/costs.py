"""Google Ads cost beside what it brought, per campaign and for the paid search channel.

A lead belongs to the campaign of its gclid's click (`click_view`, read by
`connector costs`). Per row: cost, leads, MQL, SQL, opportunities, won, cost
per SQL and per opportunity, won revenue, return on ad spend (won revenue /
cost) and CAC (cost / won deals). Cost is in the account's currency as Google
reports it, converted to the report's with the org's rates when they differ.
Open pipeline value is not shown: the ledger records a deal's amount only once
it is won.
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
) -> Costs:
    """The cost rows of every campaign with cost or leads, and of the paid search channel;
    none before `connector costs` stored any cost for the period."""
    if not days:
        return Costs([], [])
    spend: dict[str, list[float | None]] = {}
    names: dict[str, str] = {}
    clicked: dict[str, int] = {}
    for d in days:
        names[d.campaign_id] = d.campaign_name
        value = convert_amount(d.cost_micros / 1e6, d.currency, values.currency, d.day, rates)
        spend.setdefault(d.campaign_id, []).append(value)
        clicked[d.campaign_id] = clicked.get(d.campaign_id, 0) + d.clicks
    groups: dict[str, list[Lead]] = {}
    for lead in leads:
        gclid = lead.attributes.get("gclid")
        if not gclid:
            continue
        click = clicks.get(str(gclid))
        key = click.campaign_id if click else NOT_FOUND
        if click:
            names.setdefault(click.campaign_id, click.campaign_name)
        groups.setdefault(key, []).append(lead)

    def row(name: str, cost: float | None, n_clicks: int, group: Sequence[Lead]) -> CostRow:
        mql, sql, opportunities, won = (
            sum(reached(lead, s) for lead in group) for s in ("mql", "sql", "opportunity", "won")
        )
        revenue = sum(values.value(lead.lead_id) or 0.0 for lead in group)
        return CostRow(name, cost, n_clicks, len(group), mql, sql, opportunities, won, revenue)

    def total(cid: str) -> float | None:
        parts = spend.get(cid, [])
        return None if any(p is None for p in parts) else sum(p or 0.0 for p in parts)

    ids = sorted(set(spend) | (set(groups) - {NOT_FOUND}), key=lambda c: -(total(c) or 0.0))
    campaigns = [row(names.get(c, c), total(c), clicked.get(c, 0), groups.get(c, [])) for c in ids]
    if NOT_FOUND in groups:
        campaigns.append(row(NOT_FOUND, None, 0, groups[NOT_FOUND]))
    unconverted = sum(1 for parts in spend.values() for p in parts if p is None)
    paid = [lead for lead in leads if channels.get(lead.lead_id) == PAID_SEARCH]
    all_cost = None if unconverted else sum(total(c) or 0.0 for c in spend)
    channel = row(PAID_SEARCH, all_cost, sum(clicked.values()), paid)
    return Costs(campaigns, [channel], unconverted)


def _per(cost: float | None, count: int) -> float | None:
    return cost / count if cost is not None and count else None
