"""The report as rich tables in the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from connector.report.attribution import REASONS
from connector.report.formatting import (
    FUNNEL_COLUMNS,
    STAGE_LABELS,
    VALUE_COLUMNS,
    funnel_cells,
    money,
    pairs,
    pct,
    value_cells,
)
from connector.report.metrics import DeliveryHealth, Report


def print_table(report: Report, console: Console) -> None:
    m, cur = report.measurability, report.currency
    console.print(
        f"[bold]Attribution report[/bold] {report.period.since} to {report.period.until}: "
        f"{m.leads.whole:,.0f} leads, [bold]{pct(m.leads.value)}[/bold] attributable to a "
        f"channel, {pct(m.revenue.value)} of won revenue ({cur})"
    )
    if not report.store_found:
        console.print("  [yellow]the state store is empty or absent: run `connector sync`[/]")
    console.print(_measurability_table(report))
    if m.unattributed_reasons:
        reasons = {REASONS.get(k, k): n for k, n in m.unattributed_reasons.items()}
        console.print(f"  unattributed because: {pairs(reasons)}", highlight=False)
    console.print(_trend_table(report))
    for table in _channel_tables(report):
        console.print(table)
    velocity = report.funnel.velocity_per_day
    console.print(f"  pipeline velocity: {money(velocity, cur)} per day")
    console.print(_delivery_table(report))
    for line in _delivery_notes(report):
        console.print(line, highlight=False)


def _measurability_table(report: Report) -> Table:
    m = report.measurability
    table = Table(title="Measurability", title_justify="left", show_edge=False)
    for column in ("stage", "attributable", "of", "share"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, share in m.by_stage.items():
        table.add_row(
            STAGE_LABELS[stage], f"{share.part:,.0f}", f"{share.whole:,.0f}", pct(share.value)
        )
    table.add_row(
        "won revenue",
        money(m.revenue.part, report.currency),
        money(m.revenue.whole, report.currency),
        pct(m.revenue.value),
    )
    return table


def _trend_table(report: Report) -> Table:
    table = Table(
        title=f"Measurability by {report.group_by}", title_justify="left", show_edge=False
    )
    for column in (report.group_by, "leads", "attributable", "share"):
        table.add_column(column, justify="left" if column == report.group_by else "right")
    for p in report.trend:
        table.add_row(p.period, f"{p.leads.whole:,.0f}", f"{p.leads.part:,.0f}", pct(p.leads.value))
    return table


def _channel_tables(report: Report) -> list[Table]:
    rows = [*report.channels.items(), ("all channels", report.funnel)]
    tables = []
    for title, columns, cells in (
        ("Funnel by channel", FUNNEL_COLUMNS, funnel_cells),
        (f"Revenue by channel ({report.currency})", VALUE_COLUMNS, value_cells),
    ):
        table = Table(title=title, title_justify="left", show_edge=False)
        table.add_column("channel", no_wrap=True)
        for column in columns:
            table.add_column(column, justify="right", no_wrap=True)
        for i, (name, f) in enumerate(rows):
            table.add_row(name, *cells(f, report.currency), end_section=i == len(rows) - 2)
        tables.append(table)
    return tables


def _delivery_table(report: Report) -> Table:
    table = Table(title="Delivery health", title_justify="left", show_edge=False)
    table.add_column("destination", no_wrap=True)
    for column in ("delivered", "pending", "not attributable", "skipped", "rejected"):
        table.add_column(column, justify="right")
    for name, h in report.delivery.items():
        skipped, rejected = sum(h.skipped.values()), sum(h.rejected.values())
        counts = (h.delivered, h.pending, h.not_attributable, skipped, rejected)
        table.add_row(name, *(f"{n:,}" for n in counts))
    return table


def _delivery_notes(report: Report) -> list[str]:
    notes = []
    for name, h in report.delivery.items():
        for label, counts in (("skipped", h.skipped), ("rejected", h.rejected)):
            if counts:
                notes.append(f"  {name} {label}: {pairs(counts)}")
        if google := _google(h):
            notes.append(f"  {name}:{google}")
        if h.field_warnings:
            notes.append(f"  {name} field warnings: {pairs(h.field_warnings)}")
    return notes


def _google(h: DeliveryHealth) -> str:
    if h.processed is None and h.matched is None:
        return ""
    return f" Google processed {h.processed or 0}, matched {h.matched or 0}"
