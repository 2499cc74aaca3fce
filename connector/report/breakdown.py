"""Who brought the leads and the won revenue, per channel and per campaign, period by period.

Each cell is a share with its count beside it (12 of 40 leads), so a small
sample reads as small. A lead's campaign is its `utm_campaign`; leads without
one are grouped under "(no campaign)".
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from connector.report.attribution import UNATTRIBUTED, Attribution
from connector.report.currency import Valuation
from connector.report.load import Lead

NO_CAMPAIGN = "(no campaign)"


@dataclass(frozen=True)
class Cell:
    """A group's leads and won revenue in one period, beside the period's totals."""

    leads: int
    period_leads: int
    revenue: float
    period_revenue: float

    @property
    def lead_share(self) -> float | None:
        return self.leads / self.period_leads if self.period_leads else None

    @property
    def revenue_share(self) -> float | None:
        return self.revenue / self.period_revenue if self.period_revenue else None


@dataclass(frozen=True)
class MixRow:
    name: str
    cells: list[Cell]  # one per period, in order
    total: Cell  # the whole report period


@dataclass(frozen=True)
class Mix:
    dimension: str  # "channel" or "campaign"
    periods: list[str]
    rows: list[MixRow]


def channel_of(attributions: Mapping[str, Attribution]) -> Callable[[Lead], str]:
    return lambda lead: attributions[lead.lead_id].channel


def campaign_of(lead: Lead) -> str:
    return " ".join(str(lead.attributes.get("utm_campaign") or "").split()) or NO_CAMPAIGN


def mix(
    dimension: str,
    leads: Sequence[Lead],
    key: Callable[[Lead], str],
    periods: Sequence[str],
    bucket_of: Callable[[Lead], str],
    values: Valuation,
) -> Mix:
    """Leads and won revenue per group and period; biggest groups first, the remainder last."""
    count: Counter[tuple[str, str]] = Counter()
    revenue: defaultdict[tuple[str, str], float] = defaultdict(float)
    for lead in leads:
        cell = (key(lead), bucket_of(lead))
        count[cell] += 1
        revenue[cell] += values.value(lead.lead_id) or 0.0
    groups = Counter(name for name, _ in count.elements())
    period_leads = Counter(p for _, p in count.elements())
    period_revenue: defaultdict[str, float] = defaultdict(float)
    for (_, p), value in revenue.items():
        period_revenue[p] += value
    all_leads, all_revenue = sum(count.values()), sum(revenue.values())
    rows = []
    for name in sorted(groups, key=lambda g: (g in (UNATTRIBUTED, NO_CAMPAIGN), -groups[g], g)):
        cells = [
            Cell(count[(name, p)], period_leads[p], revenue[(name, p)], period_revenue[p])
            for p in periods
        ]
        group_revenue = sum(revenue[(name, p)] for p in periods)
        rows.append(MixRow(name, cells, Cell(groups[name], all_leads, group_revenue, all_revenue)))
    return Mix(dimension, list(periods), rows)
