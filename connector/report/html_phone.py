"""The wide charts again, laid out for a phone: one row per item, the figures beside the bar.

A chart drawn 1,100 units wide shrinks to a third on a 360 px phone, and its 12 px text
to 4 px. These are drawn `PHONE_WIDTH` units wide, about what a phone leaves the chart
(314 px at 360 px), so 11 px text stays 9.5 px or more; the page shows them instead of
the wide ones below `html.PHONE_BREAKPOINT` (`responsive`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from connector.report.attribution import UNATTRIBUTED
from connector.report.breakdown import NO_CAMPAIGN, Mix
from connector.report.formatting import STAGE_LABELS, money, pct
from connector.report.html_charts import (
    MIX_COLORS,
    _legend,
    _rect,
    _svg,
    _text,
)
from connector.report.metrics import FUNNEL, Report, rate

PHONE_WIDTH = 360
_BLUE, _GREY, _GREEN = "#2563eb", "#e5e7eb", "#16a34a"
_ROW, _BAR = 44, 130  # a row: its name, then the bar and its figures
_NAME_CHARS = 44  # what fits the width at 13 px; the whole name is in the tooltip


def responsive(wide: str, phone: str) -> str:
    """Both layouts of a chart; the page's CSS shows the one that fits its width."""
    return f'<div class="wide">{wide}</div><div class="phone">{phone}</div>'


@dataclass(frozen=True)
class _Row:
    name: str
    fraction: float  # of the bar's full width
    figure: str  # bold, beside the bar
    note: str = ""
    color: str = _BLUE


def _rows(
    label: str,
    rows: Sequence[_Row],
    *,
    track: bool = True,
    legend: Sequence[tuple[str, str]] = (),
) -> str:
    body = []
    for i, r in enumerate(rows):
        y = 4 + i * _ROW
        body.append(_name(0, y + 13, r.name))
        if track:  # the grey remainder reads as "of the whole"
            body.append(_rect(0, y + 19, _BAR, 14, _GREY))
        body.append(_rect(0, y + 19, _BAR * max(min(r.fraction, 1.0), 0.0), 14, r.color))
        body.append(_figure(_BAR + 8, y + 31, r.figure, r.note))
    height = 4 + len(rows) * _ROW
    if legend:
        body.append(_legend(height + 4, legend, x=0))
    return _svg(PHONE_WIDTH, height + (24 if legend else 4), label, "".join(body))


def _name(x: float, y: float, name: str) -> str:
    shown = name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"
    return f"<g><title>{escape(name)}</title>{_text(x, y, shown, size=13, font_weight='600')}</g>"


def _figure(x: float, y: float, figure: str, note: str) -> str:
    rest = f'<tspan fill="#64748b"> · {escape(note)}</tspan>' if note else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="12">'
        f'<tspan font-weight="700">{escape(figure)}</tspan>{rest}</text>'
    )


def measurability_phone(report: Report) -> str:
    m, cur = report.measurability, report.currency
    rows = [
        _Row(STAGE_LABELS[s], share.value or 0.0, pct(share.value), _of(share.part, share.whole))
        for s, share in m.by_stage.items()
    ]
    note = f"{money(m.revenue.part, cur)} of {money(m.revenue.whole, cur)}"
    rows.append(_Row("Won revenue", m.revenue.value or 0.0, pct(m.revenue.value), note))
    legend = [("attributable", _BLUE), ("unattributed", _GREY)]
    return _rows("Measurability per stage", rows, legend=legend)


def trend_phone(report: Report) -> str:
    rows = [
        _Row(p.period, p.leads.value or 0.0, pct(p.leads.value), _leads(p.leads.whole))
        for p in report.trend
    ]
    return _rows("Measurability trend", rows)


def revenue_phone(report: Report) -> str:
    cur, total = report.currency, report.funnel.won_revenue or 1.0
    ranked = sorted(report.channels.items(), key=lambda kv: -kv[1].won_revenue)
    ranked = [(name, f) for name, f in ranked if f.won_revenue > 0] or ranked[:1]
    top = max((f.won_revenue for _, f in ranked), default=0.0) or 1.0
    rows = [
        _Row(
            name,
            f.won_revenue / top,
            money(f.won_revenue, cur),
            f"{pct(f.won_revenue / total)} · {f.won} won",
            _GREY if name == UNATTRIBUTED else _GREEN,
        )
        for name, f in ranked
    ]
    return _rows("Won revenue per channel", rows, track=False)


def mix_phone(mix: Mix) -> str:
    """Per period one bar split by group, as the wide chart, with the legend in two columns."""
    shown = [row for row in mix.rows if row.name not in (UNATTRIBUTED, NO_CAMPAIGN)][:7]
    colors = {row.name: MIX_COLORS[i] for i, row in enumerate(shown)}
    width, body = 250, []
    for i, period in enumerate(mix.periods):
        y, x = 4 + i * _ROW, 0.0
        body.append(_name(0, y + 13, period) + _rect(0, y + 19, width, 14, _GREY))
        for row in mix.rows:
            cell = row.cells[i]
            w = width * (cell.lead_share or 0.0)
            tip = f"{row.name}: {cell.leads:,} of {cell.period_leads:,} leads"
            color = colors.get(row.name, "#94a3b8")
            body.append(f"<g><title>{escape(tip)}</title>{_rect(x, y + 19, w, 14, color, 0)}</g>")
            x += w
        total = mix.rows[0].cells[i].period_leads if mix.rows else 0
        body.append(_text(width + 8, y + 31, _leads(total), size=12, fill="#64748b"))
    items = [(row.name[:22], colors[row.name]) for row in shown] + [("other", "#94a3b8")]
    top = 4 + len(mix.periods) * _ROW + 4
    for i, (label, color) in enumerate(items):
        x, y = (i % 2) * 180, top + (i // 2) * 20
        body.append(_rect(x, y, 12, 12, color, rx=2) + _text(x + 18, y + 11, label, size=12))
    height = top + 20 * ((len(items) + 1) // 2) + 4
    return _svg(PHONE_WIDTH, height, f"Leads by {mix.dimension}", "".join(body))


def funnel_phone(report: Report) -> str:
    """Per channel, its name, then a cell per stage: bar (share of its leads), count, step."""
    cell, row_h = PHONE_WIDTH / len(FUNNEL), 66
    # "Opportunity" is wider than its column at this size: abridged, as the tables do.
    heads = [("Opp." if s == "opportunity" else STAGE_LABELS[s]) for s in FUNNEL]
    body = [_text(i * cell, 14, h, size=12, font_weight="600") for i, h in enumerate(heads)]
    for r, (name, f) in enumerate(report.channels.items()):
        y = 24 + r * row_h
        body.append(_name(0, y + 13, name))
        counts = (f.leads, f.mql, f.sql, f.opportunities, f.won)
        to_mql, to_won = rate(f.mql, f.leads), f.opportunity_to_won
        steps = (None, to_mql, f.mql_to_sql, f.sql_to_opportunity, to_won)
        color = _GREY if name == UNATTRIBUTED else _BLUE
        for i, (count, step) in enumerate(zip(counts, steps, strict=True)):
            x, share = i * cell, count / f.leads if f.leads else 0.0
            body.append(_rect(x, y + 19, (cell - 10) * share + 2, 12, color))
            body.append(_text(x, y + 45, f"{count:,}", size=12))
            if step is not None:
                body.append(_text(x, y + 60, f"→{pct(step)}", size=11, fill="#64748b"))
    height = 24 + row_h * len(report.channels) + 4
    return _svg(PHONE_WIDTH, height, "Funnel per channel", "".join(body))


def _of(part: float, whole: float) -> str:
    return f"{part:,.0f} of {whole:,.0f}"


def _leads(count: float) -> str:
    return f"{count:,.0f} lead{'' if count == 1 else 's'}"
