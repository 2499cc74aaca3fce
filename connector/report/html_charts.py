"""The HTML report's charts, as inline SVG: bars, a trend line, a funnel, stacked bars.

Every text is escaped; a chart's size is fixed in its viewBox and scales with the page.
The wide ones (trend, mix, funnel, revenue, measurability) have a phone layout in
`html_phone`, shown instead below `html.PHONE_BREAKPOINT`; the others are narrow enough.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from html import escape

from connector.report.attribution import UNATTRIBUTED
from connector.report.breakdown import NO_CAMPAIGN, Mix
from connector.report.formatting import STAGE_LABELS, money, pct
from connector.report.metrics import FUNNEL, DeliveryHealth, Funnel, Report, Share, rate

_BLUE, _GREY, _GREEN, _AMBER, _RED = "#2563eb", "#e5e7eb", "#16a34a", "#d97706", "#dc2626"
_DELIVERY_COLORS = (
    ("delivered", _GREEN),
    ("pending", _AMBER),
    ("not attributable or rejected", _RED),
    ("skipped", "#94a3b8"),
)


def _svg(width: int, height: int, label: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}">{body}</svg>'
    )


def _text(
    x: float, y: float, text: str, *, anchor: str = "start", size: int = 13, **style: str
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in style.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, rx: int = 3) -> str:
    size = f'width="{max(w, 0):.1f}" height="{h:.1f}"'
    return f'<rect x="{x:.1f}" y="{y:.1f}" {size} rx="{rx}" fill="{fill}"/>'


def _bar_row(y: float, label: str, share: float | None, note: str, *, x0: int, width: int) -> str:
    filled = width * (share or 0.0)
    return (
        _text(x0 - 10, y + 17, label, anchor="end", size=14)
        + _rect(x0, y, width, 26, _GREY)
        + _rect(x0, y, filled, 26, _BLUE)
        + _text(x0 + width + 10, y + 18, pct(share), size=15, font_weight="700")
        + _text(x0 + width + 58, y + 18, note, size=13, fill="#64748b")
    )


def measurability_chart(report: Report) -> str:
    m, cur = report.measurability, report.currency
    rows = [
        (STAGE_LABELS[s], share.value, f"{share.part:,.0f} of {share.whole:,.0f}")
        for s, share in m.by_stage.items()
    ]
    revenue_note = f"{money(m.revenue.part, cur)} of {money(m.revenue.whole, cur)}"
    rows.append(("Won revenue", m.revenue.value, revenue_note))
    body = "".join(
        _bar_row(10 + i * 40, label, share, note, x0=110, width=330)
        for i, (label, share, note) in enumerate(rows)
    )
    legend = _legend(10 + len(rows) * 40 + 6, [("attributable", _BLUE), ("unattributed", _GREY)])
    return _svg(680, 10 + len(rows) * 40 + 30, "Measurability per stage", body + legend)


def _legend(y: float, items: Sequence[tuple[str, str]], x: float = 110) -> str:
    out = []
    for label, color in items:
        out.append(_rect(x, y, 12, 12, color, rx=2) + _text(x + 18, y + 11, label, size=12))
        x += 30 + 8 * len(label)
    return "".join(out)


def trend_chart(report: Report) -> str:
    points = report.trend
    width, height, left, top, plot_h = 1120, 250, 56, 18, 180
    step = (width - left - 20) / max(len(points), 1)
    xs = [left + step * (i + 0.5) for i in range(len(points))]
    body = [_gridlines(left, top, width - 20, plot_h)]
    ys = [None if p.leads.value is None else top + plot_h * (1 - p.leads.value) for p in points]
    body.extend(_polyline(segment) for segment in _segments(list(zip(xs, ys, strict=True))))
    every = max(1, math.ceil(len(points) / 16))
    for i, (x, y, p) in enumerate(zip(xs, ys, points, strict=True)):
        if y is not None:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{_BLUE}"/>')
        if i % every == 0:
            body.append(_point_labels(x, y, p.period, p.leads, top + plot_h))
    return _svg(width, height, "Measurability trend", "".join(body))


def _gridlines(left: int, top: int, right: int, plot_h: int) -> str:
    out = []
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        out.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>')
        out.append(_text(left - 8, y + 4, pct(tick), anchor="end", size=12, fill="#64748b"))
    return "".join(out)


def _segments(points: list[tuple[float, float | None]]) -> Iterator[list[tuple[float, float]]]:
    """Runs of consecutive known values: an empty period breaks the line, not zeroes it."""
    run: list[tuple[float, float]] = []
    for x, y in points:
        if y is None:
            if run:
                yield run
            run = []
        else:
            run.append((x, y))
    if run:
        yield run


def _polyline(points: list[tuple[float, float]]) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{coords}" fill="none" stroke="{_BLUE}" stroke-width="2.5"/>'


def _point_labels(x: float, y: float | None, period: str, share: Share, base: float) -> str:
    out = _text(x, base + 20, period, anchor="middle", size=12, fill="#475569")
    out += _text(
        x,
        base + 36,
        f"{share.whole:,.0f} lead{'' if share.whole == 1 else 's'}",
        anchor="middle",
        size=11,
        fill="#94a3b8",
    )
    if y is not None:
        out += _text(x, y - 10, pct(share.value), anchor="middle", size=12, font_weight="600")
    return out


def funnel_chart(report: Report) -> str:
    channels = list(report.channels.items())
    row_h, name_w, cell_w = 34, 190, 182
    height = 30 + row_h * len(channels) + 8
    body = [
        _text(name_w + i * cell_w + 4, 16, STAGE_LABELS[s], size=13, font_weight="600")
        for i, s in enumerate(FUNNEL)
    ]
    for r, (name, f) in enumerate(channels):
        body.append(_funnel_row(30 + r * row_h, name, f, name_w, cell_w))
    return _svg(name_w + cell_w * len(FUNNEL), height, "Funnel per channel", "".join(body))


def _funnel_row(y: float, name: str, f: Funnel, name_w: int, cell_w: int) -> str:
    counts = (f.leads, f.mql, f.sql, f.opportunities, f.won)
    lead_to_mql = rate(f.mql, f.leads)
    steps = (None, lead_to_mql, f.mql_to_sql, f.sql_to_opportunity, f.opportunity_to_won)
    color = _GREY if name == UNATTRIBUTED else _BLUE
    out = [_text(name_w - 12, y + 17, name, anchor="end", size=14)]
    for i, (count, step) in enumerate(zip(counts, steps, strict=True)):
        x = name_w + i * cell_w
        share = count / f.leads if f.leads else 0.0
        out.append(_rect(x + 4, y + 4, (cell_w - 70) * share + 2, 18, color))
        out.append(_text(x + 8 + (cell_w - 70) * share, y + 18, f"{count:,}", size=13))
        if step is not None and i:
            out.append(_text(x - 4, y + 18, f"→{pct(step)}", anchor="end", size=11, fill="#64748b"))
    return "".join(out)


def revenue_chart(report: Report) -> str:
    cur = report.currency
    ranked = sorted(report.channels.items(), key=lambda kv: -kv[1].won_revenue)
    ranked = [(name, f) for name, f in ranked if f.won_revenue > 0] or ranked[:1]
    total = report.funnel.won_revenue or 1.0
    top = max((f.won_revenue for _, f in ranked), default=0.0) or 1.0
    body = []
    for i, (name, f) in enumerate(ranked):
        y, w = 8 + i * 36, 560 * f.won_revenue / top
        color = _GREY if name == UNATTRIBUTED else _GREEN
        body.append(_text(180, y + 18, name, anchor="end", size=14))
        body.append(_rect(190, y, w, 24, color))
        note = f"{money(f.won_revenue, cur)} · {pct(f.won_revenue / total)} · {f.won} won"
        body.append(_text(198 + w, y + 17, note, size=13))
    return _svg(1100, 16 + 36 * len(ranked), "Won revenue per channel", "".join(body))


_COST_BARS = (("cost", _AMBER), ("won revenue", _GREEN), ("pipeline", _BLUE))


def cost_chart(report: Report) -> str:
    """Per Google Ads campaign (and for paid search): cost, won revenue and pipeline, as three
    bars on one scale, so what a campaign costs reads beside what it brought and may bring.

    Narrow (400 units), with each name above its bars: drawn at the 314 px a 360 px phone
    leaves it, its 12 px legend still reads at 9.4 px.
    """
    cur, rows = report.currency, [*report.costs.campaigns, *report.costs.channels]
    top = max((v or 0.0 for r in rows for v in (r.cost, r.won_revenue, r.pipeline)), default=0.0)
    body, row_h, bar_w = [], 72, 280
    for i, r in enumerate(rows):
        y = 6 + i * row_h
        label = r.name if len(r.name) <= 44 else r.name[:43] + "…"  # whole in the table
        body.append(f"<g><title>{escape(r.name)}</title>")
        body.append(_text(0, y + 14, label, size=14, font_weight="600") + "</g>")
        for j, ((_, color), value) in enumerate(
            zip(_COST_BARS, (r.cost, r.won_revenue, r.pipeline), strict=True)
        ):
            w, top_y = bar_w * (value or 0.0) / (top or 1.0), y + 22 + j * 15
            body.append(_rect(0, top_y, w, 12, color, rx=2))
            body.append(_text(w + 6, top_y + 11, money(value, cur), size=13))
    legend = _legend(6 + len(rows) * row_h, _COST_BARS, x=0)
    height = 6 + len(rows) * row_h + 20
    return _svg(400, height, "Google Ads cost, won revenue and pipeline", "".join(body) + legend)


def delivery_bar(name: str, h: DeliveryHealth) -> str:
    """One destination's rows by status, as a stacked bar."""
    skipped, rejected = sum(h.skipped.values()), sum(h.rejected.values())
    counts = (h.delivered, h.pending, h.not_attributable + rejected, skipped)
    bar, x = [], 0.0
    for count, (_, color) in zip(counts, _DELIVERY_COLORS, strict=True):
        w = 200 * count / (h.total or 1)
        bar.append(_rect(x, 2, w, 14, color, rx=0))
        x += w
    return _svg(200, 18, f"{name} delivery status", "".join(bar))


def delivery_legend() -> str:
    """Two columns, 360 units wide: readable at a phone's width (the wide charts' rule)."""
    items = [
        _rect((i % 2) * 210, 4 + (i // 2) * 18, 12, 12, color, rx=2)
        + _text((i % 2) * 210 + 18, 15 + (i // 2) * 18, label, size=12)
        for i, (label, color) in enumerate(_DELIVERY_COLORS)
    ]
    return _svg(360, 40, "legend", "".join(items))


MIX_COLORS = ("#2563eb", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d")


def mix_chart(mix: Mix) -> str:
    """Per period, one bar split by group: its share of the period's leads, count on hover."""
    shown = [row for row in mix.rows if row.name not in (UNATTRIBUTED, NO_CAMPAIGN)][:7]
    colors = {row.name: MIX_COLORS[i] for i, row in enumerate(shown)}
    x0, width, row_h = 110, 760, 30
    body = []
    for i, period in enumerate(mix.periods):
        y, x = 8 + i * row_h, float(x0)
        body.append(_text(x0 - 10, y + 15, period, anchor="end", size=13))
        body.append(_rect(x0, y, width, 20, _GREY))
        for row in mix.rows:
            cell = row.cells[i]
            w = width * (cell.lead_share or 0.0)
            color = colors.get(row.name, "#94a3b8")
            tip = f"{row.name}: {cell.leads:,} of {cell.period_leads:,} leads"
            body.append(f"<g><title>{escape(tip)}</title>{_rect(x, y, w, 20, color, rx=0)}</g>")
            x += w
        total = mix.rows[0].cells[i].period_leads if mix.rows else 0
        body.append(_text(x0 + width + 10, y + 15, f"{total:,} leads", size=12, fill="#64748b"))
    legend_items = [(row.name[:24], colors[row.name]) for row in shown] + [("other", "#94a3b8")]
    legend_y = 8 + len(mix.periods) * row_h + 6
    legend = "".join(
        _rect(x0 + (i % 4) * 200, legend_y + (i // 4) * 18, 12, 12, color, rx=2)
        + _text(x0 + (i % 4) * 200 + 18, legend_y + (i // 4) * 18 + 11, label, size=12)
        for i, (label, color) in enumerate(legend_items)
    )
    height = legend_y + 18 * (len(legend_items) // 4 + 1) + 4
    return _svg(1000, height, f"Leads by {mix.dimension}", "".join(body) + legend)
