"""How a figure reads, the same in the terminal tables and the HTML page."""

from __future__ import annotations

from connector.report.metrics import Funnel

STAGE_LABELS = {
    "lead": "Lead",
    "mql": "MQL",
    "sql": "SQL",
    "opportunity": "Opportunity",
    "won": "Won",
}
NONE = "\u2013"  # an en dash: "unknown", not zero
_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}

# The channel table's columns, in two halves so each fits an 80-column terminal;
# the HTML table joins them.
FUNNEL_COLUMNS = ("leads", "MQL→SQL", "SQL→opp", "opp→won", "overall")
VALUE_COLUMNS = ("won", "won revenue", "avg deal", "median days", "velocity/day")


def pct(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.0f}%"


def money(value: float | None, currency: str) -> str:
    if value is None:
        return NONE
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{value:,.0f}" if symbol else f"{value:,.0f} {currency}"


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
