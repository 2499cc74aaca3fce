"""How a figure reads, the same in the terminal tables and the HTML page."""

from __future__ import annotations

from datetime import timedelta

from babel.numbers import format_currency, get_currency_symbol

from connector.report.breakdown import Cell
from connector.report.costs import CostRow
from connector.report.currency import RateUse
from connector.report.metrics import DeliveryHealth, Funnel

STAGE_LABELS = {
    "lead": "Lead",
    "mql": "MQL",
    "sql": "SQL",
    "opportunity": "Opportunity",
    "won": "Won",
}
NONE = "\u2013"  # an en dash: "unknown", not zero

# The channel table's columns, in two halves so each fits an 80-column terminal;
# the HTML table joins them.
FUNNEL_COLUMNS = ("leads", "MQL→SQL", "SQL→opp", "opp→won", "overall")
VALUE_COLUMNS = ("won", "won revenue", "avg deal", "median days", "velocity/day")


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


# In two halves, like the channel table, so each fits an 80-column terminal.
COST_COUNT_COLUMNS = ("cost", "leads", "MQL", "SQL", "opps", "won")
COST_VALUE_COLUMNS = ("per SQL", "per opp", "won revenue", "ROAS", "CAC")
COST_COLUMNS = (*COST_COUNT_COLUMNS, *COST_VALUE_COLUMNS)


def cost_count_cells(r: CostRow, currency: str) -> list[str]:
    counts = (r.leads, r.mql, r.sql, r.opportunities, r.won)
    return [money(r.cost, currency), *(f"{n:,}" for n in counts)]


def cost_value_cells(r: CostRow, currency: str) -> list[str]:
    roas = NONE if r.roas is None else f"{r.roas:.1f}×"
    return [
        money(r.cost_per_sql, currency),
        money(r.cost_per_opportunity, currency),
        money(r.won_revenue, currency),
        roas,
        money(r.cac, currency),
    ]


def cost_cells(r: CostRow, currency: str) -> list[str]:
    """One campaign's (or channel's) cells under COST_COLUMNS."""
    return [*cost_count_cells(r, currency), *cost_value_cells(r, currency)]


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
