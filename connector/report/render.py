"""The report as a terminal table (rich), JSON, CSV or one self-contained HTML page.

The HTML page has inline CSS and inline SVG charts only: no script, no font
or image fetched, so it opens the same from an e-mail attachment, offline.
Every text from the CRM (channel names from LeadSource) is escaped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from html import escape
from typing import Any

from rich.console import Console
from rich.table import Table

from connector.report.attribution import REASONS, SIGNAL_LABELS, UNATTRIBUTED
from connector.report.metrics import (
    FUNNEL,
    DeliveryHealth,
    Funnel,
    Measurability,
    Report,
    Share,
    rate,
)

STAGE_LABELS = {
    "lead": "Lead",
    "mql": "MQL",
    "sql": "SQL",
    "opportunity": "Opportunity",
    "won": "Won",
}
_NONE = "\u2013"  # an en dash: "unknown", not zero
_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}
_BLUE, _GREY, _GREEN, _AMBER, _RED = "#2563eb", "#e5e7eb", "#16a34a", "#d97706", "#dc2626"


# formatting ----------------------------------------------------------------------


def pct(value: float | None) -> str:
    return _NONE if value is None else f"{value * 100:.0f}%"


def money(value: float | None, currency: str) -> str:
    if value is None:
        return _NONE
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{value:,.0f}" if symbol else f"{value:,.0f} {currency}"


def days(value: float | None) -> str:
    return _NONE if value is None else f"{value:.0f} d"


# JSON and CSV ----------------------------------------------------------------------


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON types; shares as fractions (0.25), money in `currency`."""
    m = report.measurability
    return {
        "period": {
            "since": report.period.since.isoformat(),
            "until": report.period.until.isoformat(),
            "group_by": report.group_by,
            "cohort": "leads first seen in the period, followed to its end",
        },
        "generated_at": report.generated_at.isoformat(timespec="seconds"),
        "currency": report.currency,
        "attribution_precedence": list(report.precedence),
        "store_found": report.store_found,
        "measurability": {
            "leads": _share(m.leads),
            "by_stage": {stage: _share(share) for stage, share in m.by_stage.items()},
            "revenue_weighted": _share(m.revenue),
            "by_signal": m.by_signal,
            "unattributed_reasons": m.unattributed_reasons,
        },
        "trend": [{"period": p.period, **_share(p.leads)} for p in report.trend],
        "funnel": _funnel(report.funnel),
        "channels": {name: _funnel(f) for name, f in report.channels.items()},
        "delivery": {name: _health(h) for name, h in report.delivery.items()},
    }


def to_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2)


def to_csv(report: Report) -> str:
    """One tidy table (section, group, metric, value): pivots in any spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "group", "metric", "value"])
    writer.writerows(_csv_rows(report_dict(report)))
    return out.getvalue()


def _share(share: Share) -> dict[str, Any]:
    return {"attributable": _num(share.part), "total": _num(share.whole), "share": _r(share.value)}


def _funnel(f: Funnel) -> dict[str, Any]:
    return {
        "leads": f.leads,
        "mql": f.mql,
        "sql": f.sql,
        "opportunities": f.opportunities,
        "won": f.won,
        "mql_to_sql": _r(f.mql_to_sql),
        "sql_to_opportunity": _r(f.sql_to_opportunity),
        "opportunity_to_won": _r(f.opportunity_to_won),
        "overall_conversion": _r(f.overall_conversion),
        "won_revenue": round(f.won_revenue, 2),
        "average_deal": _r(f.average_deal, 2),
        "won_without_value": f.won_without_value,
        "median_days_to_contract": _r(f.median_days_to_contract, 1),
        "average_cycle_days": _r(f.average_cycle_days, 1),
        "pipeline_velocity_per_day": _r(f.velocity_per_day, 2),
    }


def _health(h: DeliveryHealth) -> dict[str, Any]:
    return {
        "delivered": h.delivered,
        "pending": h.pending,
        "not_attributable": h.not_attributable,
        "skipped": h.skipped,
        "rejected": h.rejected,
        "processed": h.processed,
        "matched": h.matched,
    }


def _csv_rows(data: dict[str, Any]) -> Iterator[list[Any]]:
    m = data["measurability"]
    for stage, share in m["by_stage"].items():
        yield from _flat("measurability", stage, share)
    yield from _flat("measurability", "revenue_weighted", m["revenue_weighted"])
    yield from _flat("attributed_by_signal", "all", m["by_signal"])
    yield from _flat("unattributed_reasons", "all", m["unattributed_reasons"])
    for point in data["trend"]:
        yield from _flat(
            "trend", point["period"], {k: v for k, v in point.items() if k != "period"}
        )
    yield from _flat("funnel", "all", data["funnel"])
    for name, values in data["channels"].items():
        yield from _flat("funnel", name, values)
    for name, values in data["delivery"].items():
        yield from _flat("delivery", name, values)


def _flat(
    section: str, group: str, values: dict[str, Any], prefix: str = ""
) -> Iterator[list[Any]]:
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flat(section, group, value, f"{prefix}{key}:")
        else:
            yield [section, group, f"{prefix}{key}", "" if value is None else value]


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 2)


# terminal ------------------------------------------------------------------------


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
        console.print(f"  unattributed because: {_pairs(reasons)}", highlight=False)
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


# Split in two so each fits an 80-column terminal; the HTML table joins them.
_FUNNEL_COLUMNS = ("leads", "MQL→SQL", "SQL→opp", "opp→won", "overall")
_VALUE_COLUMNS = ("won", "won revenue", "avg deal", "median days", "velocity/day")


def _channel_tables(report: Report) -> list[Table]:
    rows = [*report.channels.items(), ("all channels", report.funnel)]
    tables = []
    for title, columns, cells in (
        ("Funnel by channel", _FUNNEL_COLUMNS, _funnel_cells),
        (f"Revenue by channel ({report.currency})", _VALUE_COLUMNS, _value_cells),
    ):
        table = Table(title=title, title_justify="left", show_edge=False)
        table.add_column("channel", no_wrap=True)
        for column in columns:
            table.add_column(column, justify="right", no_wrap=True)
        for i, (name, f) in enumerate(rows):
            table.add_row(name, *cells(f, report.currency), end_section=i == len(rows) - 2)
        tables.append(table)
    return tables


def _funnel_cells(f: Funnel, currency: str) -> list[str]:
    steps = (f.mql_to_sql, f.sql_to_opportunity, f.opportunity_to_won, f.overall_conversion)
    return [f"{f.leads:,}", *map(pct, steps)]


def _value_cells(f: Funnel, currency: str) -> list[str]:
    return [
        f"{f.won:,}",
        money(f.won_revenue, currency),
        money(f.average_deal, currency),
        days(f.median_days_to_contract),
        money(f.velocity_per_day, currency),
    ]


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
                notes.append(f"  {name} {label}: {_pairs(counts)}")
        if google := _google(h):
            notes.append(f"  {name}:{google}")
    return notes


def _google(h: DeliveryHealth) -> str:
    if h.processed is None and h.matched is None:
        return ""
    return f" Google processed {h.processed or 0}, matched {h.matched or 0}"


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.items())


# HTML ----------------------------------------------------------------------------


_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f8fafc;color:#0f172a;
 font:15px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:0 0 4px}
.sub{color:#475569;margin:0 0 20px}.hint{color:#64748b;font-size:13px;margin:0 0 12px}
.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin-bottom:20px}
.kpi{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:12px 14px}
.kpi b{display:block;font-size:24px;color:#0f172a}.kpi span{color:#64748b;font-size:13px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:18px 20px;
 margin-bottom:18px}
.cols{display:grid;grid-template-columns:3fr 2fr;gap:24px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 8px;border-bottom:1px solid #eef2f7;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{color:#475569;font-weight:600}
tr.total td{font-weight:700;border-top:2px solid #cbd5e1}
ul.reasons{list-style:none;padding:0;margin:0}ul.reasons li{display:flex;
 justify-content:space-between;border-bottom:1px solid #eef2f7;padding:4px 0}
.warn{background:#fef3c7;border:1px solid #fcd34d;padding:10px 14px;border-radius:8px}
svg{display:block;max-width:100%;height:auto}svg text{font-family:inherit}
footer{color:#64748b;font-size:13px}
small.why{color:#64748b;white-space:normal}h3{font-size:15px;margin:6px 0}
"""


def to_html(report: Report) -> str:
    m = report.measurability
    title = f"Lead attribution report {report.period.since} to {report.period.until}"
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{_subtitle(report)}</p>',
        _empty_warning(report),
        _kpis(report),
        _section(
            "How measurable is the funnel?",
            "Share of leads a channel can be credited for, at each stage, and of won revenue.",
            f'<div class="cols"><div>{_measurability_chart(report)}</div>'
            f"<div>{_reasons(m)}</div></div>",
        ),
        _section(
            f"Measurability trend by {report.group_by}",
            "Share of the leads first seen in each period that are attributable.",
            _trend_chart(report),
        ),
        _section(
            "Funnel by channel",
            "Bars: share of the channel's leads reaching each stage; arrows: step conversion.",
            _funnel_chart(report) + _channel_html_table(report),
        ),
        _section(
            "Won revenue by channel",
            f"Won deals with a value in {escape(report.currency)}.",
            _revenue_chart(report),
        ),
        _section(
            "Delivery health",
            "What reached Google Ads and GA4, what waits, and why the rest did not.",
            _delivery_html(report),
        ),
        f"<footer>{_footer(report)}</footer>",
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )


def _subtitle(report: Report) -> str:
    return escape(
        f"Leads first seen {report.period.since} to {report.period.until}, followed to the end "
        f"of the period · revenue in {report.currency} · generated "
        f"{report.generated_at:%Y-%m-%d %H:%M}"
    )


def _empty_warning(report: Report) -> str:
    if report.store_found and report.funnel.leads:
        return ""
    text = "No leads in this period." if report.store_found else "The state store is empty."
    return f'<p class="warn">{text} Run <code>connector sync</code> or widen the period.</p>'


def _kpis(report: Report) -> str:
    m, f, cur = report.measurability, report.funnel, report.currency
    tiles = [
        (f"{f.leads:,}", "leads in the period"),
        (pct(m.leads.value), "of leads attributable"),
        (pct(m.revenue.value), "of won revenue attributable"),
        (money(f.won_revenue, cur), f"won revenue · {f.won:,} deals"),
        (money(f.velocity_per_day, cur), "pipeline velocity per day"),
        (days(f.median_days_to_contract), "median time to contract"),
    ]
    cells = "".join(
        f'<div class="kpi"><b>{escape(v)}</b><span>{escape(t)}</span></div>' for v, t in tiles
    )
    return f'<div class="kpis">{cells}</div>'


def _section(title: str, hint: str, body: str) -> str:
    return f'<section><h2>{escape(title)}</h2><p class="hint">{escape(hint)}</p>{body}</section>'


def _reasons(m: Measurability) -> str:
    def items(counts: dict[str, int], labels: Mapping[str, str]) -> str:
        rows = (
            f"<li><span>{escape(labels.get(k, k))}</span><b>{v:,}</b></li>"
            for k, v in counts.items()
        )
        return "".join(rows) or "<li><span>none</span></li>"

    return (
        f"<h3>Attributed by</h3><ul class='reasons'>{items(m.by_signal, SIGNAL_LABELS)}</ul>"
        "<h3>Unattributed because</h3>"
        f"<ul class='reasons'>{items(m.unattributed_reasons, REASONS)}</ul>"
    )


def _footer(report: Report) -> str:
    order = " → ".join(SIGNAL_LABELS.get(s, s) for s in report.precedence)
    return escape(
        f"Attribution precedence: {order}, then unattributed. Revenue counts won deals with an "
        f"amount in {report.currency}; deals without one count as won only. Pipeline velocity "
        "= opportunities \u00d7 win rate \u00d7 average deal \u00f7 average days from lead "
        "to contract."
    )


# SVG charts ------------------------------------------------------------------------


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


def _measurability_chart(report: Report) -> str:
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


def _trend_chart(report: Report) -> str:
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


def _funnel_chart(report: Report) -> str:
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


def _channel_html_table(report: Report) -> str:
    columns = ("channel", *_FUNNEL_COLUMNS, *_VALUE_COLUMNS)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    cur = report.currency
    body = [_html_row([name, *_html_cells(f, cur)]) for name, f in report.channels.items()]
    body.append(_html_row(["all channels", *_html_cells(report.funnel, cur)], "total"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_row(cells: Sequence[str], css_class: str = "") -> str:
    attr = f' class="{css_class}"' if css_class else ""
    return f"<tr{attr}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def _html_cells(f: Funnel, currency: str) -> list[str]:
    return [*_funnel_cells(f, currency), *_value_cells(f, currency)]


def _revenue_chart(report: Report) -> str:
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


_DELIVERY_COLORS = (
    ("delivered", _GREEN),
    ("pending", _AMBER),
    ("not attributable or rejected", _RED),
    ("skipped", "#94a3b8"),
)


_DELIVERY_COLUMNS = (
    "destination",
    "",
    "delivered",
    "pending",
    "not attributable",
    "skipped",
    "rejected",
    "Google processed / matched",
)


def _delivery_html(report: Report) -> str:
    if not report.delivery:
        return "<p>No deliveries recorded for changes in this period.</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in _DELIVERY_COLUMNS)
    rows = "".join(_delivery_row(name, h) for name, h in report.delivery.items())
    legend = _svg(700, 20, "legend", _legend(4, _DELIVERY_COLORS, x=0))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{legend}"


def _delivery_row(name: str, h: DeliveryHealth) -> str:
    skipped, rejected = sum(h.skipped.values()), sum(h.rejected.values())
    counts = (h.delivered, h.pending, h.not_attributable + rejected, skipped)
    bar, x = [], 0.0
    for count, (_, color) in zip(counts, _DELIVERY_COLORS, strict=True):
        w = 200 * count / (h.total or 1)
        bar.append(_rect(x, 2, w, 14, color, rx=0))
        x += w
    google = "" if h.processed is None else f"{h.processed:,} / {h.matched or 0:,}"
    cells = [
        escape(name),
        _svg(200, 18, f"{name} delivery status", "".join(bar)),
        f"{h.delivered:,}",
        f"{h.pending:,}",
        f"{h.not_attributable:,}",
        _with_reasons(skipped, h.skipped),
        _with_reasons(rejected, h.rejected),
        google or "\u2013",
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _with_reasons(total: int, reasons: dict[str, int]) -> str:
    detail = f'<br><small class="why">{escape(_pairs(reasons))}</small>' if reasons else ""
    return f"{total:,}{detail}"
