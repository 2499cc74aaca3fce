"""The report as rich tables in the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from connector.report.attribution import REASONS
from connector.report.breakdown import Mix
from connector.report.currency import UNVALUED_REASONS
from connector.report.formatting import (
    COST_COUNT_COLUMNS,
    COST_PER_COLUMNS,
    COST_RETURN_COLUMNS,
    FUNNEL_COLUMNS,
    PIPELINE_COLUMNS,
    STAGE_LABELS,
    VALUE_COLUMNS,
    amount_text,
    converted_text,
    cost_count_cells,
    cost_per_cells,
    cost_return_cells,
    funnel_cells,
    money,
    pairs,
    pct,
    pipeline_cells,
    plural,
    rate_text,
    short_revenue,
    short_share,
    trust_note,
    unvalued_text,
    value_cells,
)
from connector.report.metrics import DeliveryHealth, Report
from connector.report.unattributed import unattributed_leads


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
    for line in reason_lines(report):
        console.print(line, highlight=False)
    console.print(_trend_table(report))
    for mix in (report.by_channel, report.by_campaign):
        console.print(_mix_table(report, mix))
        if any(row.total.revenue for row in mix.rows):
            console.print(_mix_table(report, mix, revenue=True))
    for table in _channel_tables(report):
        console.print(table)
    for line in currency_lines(report):
        console.print(line, highlight=False)
    if report.costs.known:
        for table in _cost_tables(report):
            console.print(table)
    velocity = report.funnel.velocity_per_day
    console.print(f"  pipeline velocity: {money(velocity, cur)} per day")
    console.print(_delivery_table(report))
    for line in _delivery_notes(report):
        console.print(line, highlight=False)


def reason_lines(report: Report) -> list[str]:
    """Why leads are unattributed, as overlapping sets: each lead has several reasons."""
    sets = report.unattributed
    if not sets.leads:
        return []
    lines = [
        f"  {sets.leads:,} unattributed leads; {sets.without_any_signal:,} have none of the "
        f"signals (never tracked), {sets.with_some_signal:,} have one the report cannot use.",
        "  Leads having each reason (a lead has several: these overlap, they do not add up):",
    ]
    lines += [
        f"    {REASONS.get(k, k)}: {n:,} of {sets.leads:,}" for k, n in sets.by_reason.items()
    ]
    return lines


def currency_lines(report: Report) -> list[str]:
    """Which rates (at which days) valued won and open deals, and the deals without a value:
    each won one listed, the open ones counted by reason."""
    cur, lines = report.currency, []
    for kind, v in (("won", report.valuation), ("open", report.pipeline)):
        if v is not None and v.rates_used:
            lines.append(f"  {converted_text(v, kind, cur)}:")
            lines += [f"    {rate_text(r)}: {plural(n, 'deal')}" for r, n in v.rates_used.items()]
    won = report.valuation.unvalued if report.valuation else []
    if won:
        lines.append(f"  {plural(len(won), 'won deal')} not in revenue (no value in {cur}):")
        lines += [
            f"    {d.lead_id}: {amount_text(d.amount, d.currency)} ({UNVALUED_REASONS[d.reason]})"
            for d in won
        ]
    if report.pipeline and (unvalued := report.pipeline.unvalued):
        lines.append(
            f"  {plural(len(unvalued), 'open deal')} not in the pipeline (no value in {cur}): "
            + unvalued_text(unvalued)
        )
    return lines


def print_unattributed(report: Report, console: Console) -> None:
    """`connector report --unattributed`: one row per lead, furthest in the funnel first."""
    assert report.valuation is not None
    found = unattributed_leads(report.leads, report.attributions, report.valuation)
    table = Table(
        title=f"Unattributed leads {report.period.since} to {report.period.until}: {len(found):,}",
        title_justify="left",
        show_edge=False,
    )
    for column in ("lead id", "first seen", "furthest stage", "won value", "reasons"):
        table.add_column(column, justify="right" if column == "won value" else "left")
    for u in found:
        won = money(u.won_value, report.currency) if u.won_value is not None else ""
        reasons = ", ".join(REASONS.get(r, r) for r in u.reasons)
        table.add_row(u.lead_id, f"{u.first_seen:%Y-%m-%d}", u.furthest_stage, won, reasons)
    console.print(table)
    for line in reason_lines(report):
        console.print(line, highlight=False)


def _cost_tables(report: Report) -> list[Table]:
    rows = [*report.costs.campaigns, *report.costs.channels]
    last_campaign = len(report.costs.campaigns) - 1
    return [
        _split_table(
            title, "campaign", columns, [(r.name, cells(r, report.currency)) for r in rows],
            section_after=last_campaign, max_width=28,
        )
        for title, columns, cells in (
            ("Google Ads cost and funnel", COST_COUNT_COLUMNS, cost_count_cells),
            (f"Google Ads cost per result ({report.currency})", COST_PER_COLUMNS, cost_per_cells),
            (f"Google Ads return ({report.currency})", COST_RETURN_COLUMNS, cost_return_cells),
        )
    ]  # fmt: skip


def _split_table(
    title: str,
    first: str,
    columns: Sequence[str],
    rows: list[tuple[str, list[str]]],
    *,
    section_after: int,
    max_width: int | None = None,
) -> Table:
    """One of the tables a wide one is split into (to fit 80 columns): a name, then figures."""
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column(first, max_width=max_width, no_wrap=max_width is None)
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for i, (name, cells) in enumerate(rows):
        table.add_row(name, *cells, end_section=i == section_after)
    return table


def _mix_table(report: Report, mix: Mix, *, revenue: bool = False) -> Table:
    """Leads (or won revenue) per group and period, each with its share of the period's."""
    what = f"Won revenue ({report.currency})" if revenue else "Leads"
    table = Table(
        title=f"{what} by {mix.dimension} and {report.group_by}",
        title_justify="left",
        show_edge=False,
    )
    table.add_column(mix.dimension, no_wrap=True)
    for period in mix.periods:
        table.add_column(period, justify="right")
    table.add_column("all", justify="right")
    for row in mix.rows:
        cells = [*row.cells, row.total]
        shown = [short_revenue(c, report.currency) if revenue else short_share(c) for c in cells]
        table.add_row(row.name, *shown)
    return table


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
    return [
        _split_table(
            title, "channel", columns, [(name, cells(f, report.currency)) for name, f in rows],
            section_after=len(rows) - 2,
        )
        for title, columns, cells in (
            ("Funnel by channel", FUNNEL_COLUMNS, funnel_cells),
            (f"Revenue by channel ({report.currency})", VALUE_COLUMNS, value_cells),
            (f"Open pipeline by channel ({report.currency})", PIPELINE_COLUMNS, pipeline_cells),
        )
    ]  # fmt: skip


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
        if note := trust_note(h):
            notes.append(f"  {name}: {note}")
    return notes


def _google(h: DeliveryHealth) -> str:
    if h.processed is None and h.matched is None:
        return ""
    return f" Google processed {h.processed or 0}, matched {h.matched or 0}"
