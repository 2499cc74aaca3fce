"""GA4 analytics on the terminal: the reconciliation as a line and a table of differences."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from connector.analytics.reconcile import Reconciliation


def print_reconciliation(result: Reconciliation, console: Console) -> None:
    differences = result.differences
    console.print(
        f"GA4 events {result.since} to {result.until} ({result.time_zone or 'no events'}): "
        f"{sum(result.delivered.values())} delivered, {sum(result.reported.values())} in GA4"
    )
    if not differences:
        console.print("no differences")
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("date")
    table.add_column("event")
    for column in ("delivered", "in GA4", "difference"):
        table.add_column(column, justify="right")
    table.add_column("kind")
    for d in differences:
        table.add_row(
            d.day.isoformat(),
            d.event_name,
            str(d.delivered),
            str(d.reported),
            f"{d.gap:+d}",
            d.kind.replace("_", " ").replace("ga4", "GA4"),
        )
    console.print(table)
