"""The report as one self-contained HTML page.

The page has inline CSS and inline SVG charts (`html_charts`) only: no script,
no font or image fetched, so it opens the same from an e-mail attachment,
offline. Every text from the CRM (channel names from LeadSource) is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from connector.report.attribution import REASONS, SIGNAL_LABELS
from connector.report.formatting import (
    FUNNEL_COLUMNS,
    VALUE_COLUMNS,
    days,
    funnel_cells,
    money,
    pairs,
    pct,
    value_cells,
)
from connector.report.html_charts import (
    delivery_bar,
    delivery_legend,
    funnel_chart,
    measurability_chart,
    revenue_chart,
    trend_chart,
)
from connector.report.metrics import DeliveryHealth, Funnel, Measurability, Report

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
            f'<div class="cols"><div>{measurability_chart(report)}</div>'
            f"<div>{_reasons(m)}</div></div>",
        ),
        _section(
            f"Measurability trend by {report.group_by}",
            "Share of the leads first seen in each period that are attributable.",
            trend_chart(report),
        ),
        _section(
            "Funnel by channel",
            "Bars: share of the channel's leads reaching each stage; arrows: step conversion.",
            funnel_chart(report) + _channel_html_table(report),
        ),
        _section(
            "Won revenue by channel",
            f"Won deals with a value in {escape(report.currency)}.",
            revenue_chart(report),
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


def _channel_html_table(report: Report) -> str:
    columns = ("channel", *FUNNEL_COLUMNS, *VALUE_COLUMNS)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    cur = report.currency
    body = [_html_row([name, *_html_cells(f, cur)]) for name, f in report.channels.items()]
    body.append(_html_row(["all channels", *_html_cells(report.funnel, cur)], "total"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_row(cells: Sequence[str], css_class: str = "") -> str:
    attr = f' class="{css_class}"' if css_class else ""
    return f"<tr{attr}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def _html_cells(f: Funnel, currency: str) -> list[str]:
    return [*funnel_cells(f, currency), *value_cells(f, currency)]


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
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{delivery_legend()}"


def _delivery_row(name: str, h: DeliveryHealth) -> str:
    skipped, rejected = sum(h.skipped.values()), sum(h.rejected.values())
    google = "" if h.processed is None else f"{h.processed:,} / {h.matched or 0:,}"
    cells = [
        escape(name),
        delivery_bar(name, h),
        f"{h.delivered:,}",
        f"{h.pending:,}",
        f"{h.not_attributable:,}",
        _with_reasons(skipped, h.skipped),
        _with_reasons(rejected, h.rejected),
        (google or "\u2013") + _warnings_html(h),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _warnings_html(h: DeliveryHealth) -> str:
    if not h.field_warnings:
        return ""
    return f'<br><small class="why">field warnings: {escape(pairs(h.field_warnings))}</small>'


def _with_reasons(total: int, reasons: dict[str, int]) -> str:
    detail = f'<br><small class="why">{escape(pairs(reasons))}</small>' if reasons else ""
    return f"{total:,}{detail}"
