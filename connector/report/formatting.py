"""How a figure reads, the same in the terminal tables and the HTML page."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

from babel.numbers import format_currency, get_currency_symbol

from connector.report.breakdown import Cell
from connector.report.costs import CostRow
from connector.report.currency import (
    AT_CHANGE_DATE,
    AT_CLOSE_DATE,
    UNVALUED_REASONS,
    RateUse,
    UnvaluedDeal,
    Valuation,
)
from connector.report.metrics import DeliveryHealth, Funnel

STAGE_LABELS = {
    "lead": "Lead",
    "mql": "MQL",
    "sql": "SQL",
    "opportunity": "Opportunity",
    "won": "Won",
}
NONE = "\u2013"  # an en dash: "unknown", not zero

# The channel table's columns, in three parts so each fits an 80-column terminal; the
# HTML page joins the last two in one table.
FUNNEL_COLUMNS = ("leads", "MQL→SQL", "SQL→opp", "opp→won", "overall")
VALUE_COLUMNS = ("won", "won revenue", "avg deal", "median days", "velocity/day")
PIPELINE_COLUMNS = ("open deals", "pipeline", "open, no value")


def pct(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.0f}%"


def money(value: float | None, currency: str) -> str:
    if value is None:
        return NONE
    # CLDR's symbol (Babel) where it has one ("€", "$", "£"); else the code after the figure.
    if get_currency_symbol(currency, locale="en") == currency:
        return f"{value:,.0f} {currency}"
    return format_currency(value, currency, format="¤#,##0", locale="en", currency_digits=False)


def amount_text(amount: float | None, currency: str | None) -> str:
    """A deal's own amount in its own currency, as the CRM has it."""
    if amount is None:
        return f"no amount ({currency})" if currency else "no amount"
    return f"{amount:,.2f} {currency}" if currency else f"{amount:,.2f}"


def rate_text(rate: RateUse) -> str:
    """`1.08 USD per EUR (DatedConversionRate 2026-10-01 to 2026-10-31)`."""
    when = ""
    if rate.valid_from or rate.valid_until:
        last = rate.valid_until - timedelta(days=1) if rate.valid_until else None
        when = f" {rate.valid_from or '…'} to {last or 'now'}"
    return f"{rate.rate:g} {rate.currency} per {rate.per} ({rate.kind}{when})"


def plural(count: int, noun: str) -> str:
    """`1 deal`, `3 deals`."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def converted_text(v: Valuation, kind: str, currency: str) -> str:
    """`3 won deals converted to EUR with the org's rates, 2 at their CloseDate, 1 at the day
    of their change (no CloseDate recorded)`: which day chose the deals' rates."""
    at_close, at_change = (
        v.converted_at.get(AT_CLOSE_DATE, 0),
        v.converted_at.get(AT_CHANGE_DATE, 0),
    )
    days = [f"{at_close:,} at their CloseDate"] if at_close else []
    if at_change:
        days.append(f"{at_change:,} at the day of their change (no CloseDate recorded)")
    return (
        f"{plural(v.converted, f'{kind} deal')} converted to {currency} with the org's rates, "
        + ", ".join(days)
    )


def unvalued_reasons(deals: Iterable[UnvaluedDeal]) -> dict[str, int]:
    """Deals without a value by why, in words, most common first."""
    return dict(Counter(UNVALUED_REASONS[d.reason] for d in deals).most_common())


def unvalued_text(deals: Iterable[UnvaluedDeal]) -> str:
    """`12 amount not recorded yet (...), 2 no amount in the CRM`."""
    return ", ".join(f"{n:,} {why}" for why, n in unvalued_reasons(deals).items())


def share_cell(cell: Cell) -> str:
    """`12 of 40 · 30%`: the count beside the share, so a small sample reads as small."""
    return f"{cell.leads:,} of {cell.period_leads:,} · {pct(cell.lead_share)}"


def days(value: float | None) -> str:
    return NONE if value is None else f"{value:.0f} d"


def pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.items())


def funnel_cells(f: Funnel, currency: str) -> list[str]:
    """One channel's cells under FUNNEL_COLUMNS."""
    steps = (f.mql_to_sql, f.sql_to_opportunity, f.opportunity_to_won, f.overall_conversion)
    return [f"{f.leads:,}", *map(pct, steps)]


def value_cells(f: Funnel, currency: str) -> list[str]:
    """One channel's cells under VALUE_COLUMNS."""
    return [
        f"{f.won:,}",
        money(f.won_revenue, currency),
        money(f.average_deal, currency),
        days(f.median_days_to_contract),
        money(f.velocity_per_day, currency),
    ]


def pipeline_cells(f: Funnel, currency: str) -> list[str]:
    """One channel's cells under PIPELINE_COLUMNS."""
    return [f"{f.open_deals:,}", money(f.pipeline, currency), f"{f.open_without_value:,}"]


# In three parts, like the channel table, for an 80-column terminal; the HTML table has
# them in COST_COLUMNS' order: cost and funnel, cost per SQL and opportunity, return, CAC.
COST_COUNT_COLUMNS = ("cost", "leads", "MQL", "SQL", "opps", "won")
COST_PER_COLUMNS = ("per SQL", "per opp", "CAC")
COST_RETURN_COLUMNS = ("won revenue", "pipeline", "ROAS")
COST_COLUMNS = (*COST_COUNT_COLUMNS, "per SQL", "per opp", *COST_RETURN_COLUMNS, "CAC")


def cost_count_cells(r: CostRow, currency: str) -> list[str]:
    counts = (r.leads, r.mql, r.sql, r.opportunities, r.won)
    return [money(r.cost, currency), *(f"{n:,}" for n in counts)]


def cost_per_cells(r: CostRow, currency: str) -> list[str]:
    per = (r.cost_per_sql, r.cost_per_opportunity, r.cac)
    return [money(value, currency) for value in per]


def cost_return_cells(r: CostRow, currency: str) -> list[str]:
    roas = NONE if r.roas is None else f"{r.roas:.1f}×"
    return [money(r.won_revenue, currency), money(r.pipeline, currency), roas]


def cost_cells(r: CostRow, currency: str) -> list[str]:
    """One campaign's (or channel's) cells under COST_COLUMNS."""
    per_sql, per_opp, cac = cost_per_cells(r, currency)
    counts, returns = cost_count_cells(r, currency), cost_return_cells(r, currency)
    return [*counts, per_sql, per_opp, *returns, cac]


def revenue_cell(cell: Cell, currency: str) -> str:
    """`€10,000 · 50%`: a group's won revenue in a period, and its share of the period's."""
    return f"{money(cell.revenue, currency)} · {pct(cell.revenue_share)}"


def short_revenue(cell: Cell, currency: str) -> str:
    """`€10,000 50%`: revenue_cell for narrow terminal columns."""
    return f"{money(cell.revenue, currency)} {pct(cell.revenue_share)}"


def short_share(cell: Cell) -> str:
    """`12/40 30%`: share_cell for narrow terminal columns."""
    return f"{cell.leads:,}/{cell.period_leads:,} {pct(cell.lead_share)}"


def trust_note(h: DeliveryHealth) -> str:
    """What a marketer must know before trusting the counts: doubles, unknowns, dead rows."""
    parts = [
        f"{h.may_be_duplicated:,} may be duplicated (resent after a run stopped)"
        if h.may_be_duplicated
        else "",
        f"{h.unknown:,} of unknown fate" if h.unknown else "",
        f"{h.dead:,} out of attempts" if h.dead else "",
        f"{h.in_flight:,} in flight" if h.in_flight else "",
    ]
    return ", ".join(p for p in parts if p)
