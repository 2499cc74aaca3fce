"""The report as one self-contained HTML page.

The page has inline CSS and inline SVG charts (`html_charts`) only: no script,
no font or image fetched, so it opens the same from an e-mail attachment,
offline. Every text from the CRM (channel names from LeadSource) is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from connector.report.attribution import REASONS, SIGNAL_LABELS
from connector.report.breakdown import Mix
from connector.report.currency import UNVALUED_REASONS
from connector.report.formatting import (
    COST_COLUMNS,
    FUNNEL_COLUMNS,
    PIPELINE_COLUMNS,
    VALUE_COLUMNS,
    amount_text,
    converted_text,
    cost_cells,
    days,
    funnel_cells,
    money,
    pairs,
    pct,
    pipeline_cells,
    plural,
    rate_text,
    revenue_cell,
    share_cell,
    trust_note,
    unvalued_text,
    value_cells,
)
from connector.report.html_charts import (
    cost_chart,
    delivery_bar,
    delivery_legend,
    funnel_chart,
    measurability_chart,
    mix_chart,
    revenue_chart,
    trend_chart,
)
from connector.report.html_phone import (
    funnel_phone,
    measurability_phone,
    mix_phone,
    responsive,
    revenue_phone,
    trend_phone,
)
from connector.report.metrics import DeliveryHealth, Funnel, Report

# Below this page width the wide charts (about 1,100 units) would draw their text under
# 9 px: the phone layouts (`html_phone`) replace them.
PHONE_BREAKPOINT = 1100

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f8fafc;color:#0f172a;
 font:15px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:0 0 4px}
.sub{color:#475569;margin:0 0 20px}.hint{color:#64748b;font-size:13px;margin:0 0 12px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;
 margin-bottom:20px}
.kpi{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:12px 14px}
.kpi b{display:block;font-size:24px;color:#0f172a}.kpi span{color:#64748b;font-size:13px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:18px 20px;
 margin-bottom:18px}
.cols{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:24px}
.scroll{overflow-x:auto;max-width:100%}.scroll+.scroll{margin-top:14px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 8px;border-bottom:1px solid #eef2f7;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{color:#475569;font-weight:600}
tr.total td{font-weight:700;border-top:2px solid #cbd5e1}
ul.reasons{list-style:none;padding:0;margin:0}ul.reasons li{display:flex;
 justify-content:space-between;border-bottom:1px solid #eef2f7;padding:4px 0}
.warn{background:#fef3c7;border:1px solid #fcd34d;padding:10px 14px;border-radius:8px}
svg{display:block;max-width:100%;height:auto}svg text{font-family:inherit}
.phone{display:none}
footer{color:#64748b;font-size:13px}
small.why{color:#64748b;white-space:normal}h3{font-size:15px;margin:6px 0}
.names td:first-child{white-space:normal;min-width:9em}
@media (max-width:760px){main{padding:16px 8px 32px}.cols{grid-template-columns:minmax(0,1fr)}
 section{padding:14px 10px}h1{font-size:21px}.kpi b{font-size:20px}}
@media (max-width:PHONE_BREAKPOINTpx){.wide{display:none}.phone{display:block}}
""".replace("PHONE_BREAKPOINT", str(PHONE_BREAKPOINT))


def to_html(report: Report) -> str:
    title = f"Lead attribution report {report.period.since} to {report.period.until}"
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{_subtitle(report)}</p>',
        _empty_warning(report),
        _kpis(report),
        _section(
            "How measurable is the funnel?",
            "Share of leads a channel can be credited for, at each stage, and of won revenue.",
            f'<div class="cols"><div>{_measurability_charts(report)}</div>'
            f"<div>{_reasons(report)}</div></div>",
        ),
        _section(
            f"Measurability trend by {report.group_by}",
            "Share of the leads first seen in each period that are attributable.",
            responsive(trend_chart(report), trend_phone(report)) + _scroll(_trend_table(report)),
        ),
        *(
            _section(
                f"Leads and won revenue by {mix.dimension} and {report.group_by}",
                f"Each {mix.dimension}'s leads of the period's, with the counts (a small "
                "sample reads as small), and under them its won revenue and share of it.",
                responsive(mix_chart(mix), mix_phone(mix))
                + _scroll(_mix_table(mix, report.currency)),
            )
            for mix in (report.by_channel, report.by_campaign)
        ),
        _section(
            "Funnel by channel",
            "Bars: share of the channel's leads reaching each stage; arrows: step conversion.",
            responsive(_scroll(funnel_chart(report)), funnel_phone(report))
            + _channel_html_tables(report),
        ),
        _section(
            "Won revenue by channel",
            f"Won deals valued in {report.currency} (other currencies at the org's rates); "
            "below, which rates valued won and open deals, and the deals without a value.",
            responsive(revenue_chart(report), revenue_phone(report)) + _currency_html(report),
        ),
        _costs_html(report),
        _section(
            "Delivery health",
            "What reached Google Ads and GA4, what waits, and why the rest did not.",
            _scroll(_delivery_html(report)),
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
        (money(f.pipeline, cur), f"open pipeline · {f.open_deals:,} deals"),
        (money(f.velocity_per_day, cur), "pipeline velocity per day"),
        (days(f.median_days_to_contract), "median time to contract"),
    ]
    cells = "".join(
        f'<div class="kpi"><b>{escape(v)}</b><span>{escape(t)}</span></div>' for v, t in tiles
    )
    return f'<div class="kpis">{cells}</div>'


def _section(title: str, hint: str, body: str) -> str:
    return f'<section><h2>{escape(title)}</h2><p class="hint">{escape(hint)}</p>{body}</section>'


def _items(counts: Mapping[str, int], labels: Mapping[str, str], of: int | None = None) -> str:
    suffix = f" of {of:,}" if of is not None else ""
    rows = (
        f"<li><span>{escape(labels.get(k, k))}</span><b>{v:,}{suffix}</b></li>"
        for k, v in counts.items()
    )
    return "".join(rows) or "<li><span>none</span></li>"


def _reasons(report: Report) -> str:
    m, sets = report.measurability, report.unattributed
    return (
        f"<h3>Attributed by</h3><ul class='reasons'>{_items(m.by_signal, SIGNAL_LABELS)}</ul>"
        f"<h3>Unattributed: {sets.leads:,} leads</h3>"
        f"<p class='hint'>{sets.without_any_signal:,} have none of the signals (never "
        f"tracked); {sets.with_some_signal:,} carry one the report cannot use. Leads having "
        "each reason (a lead has several: they overlap and do not add up):</p>"
        f"<ul class='reasons'>{_items(sets.by_reason, REASONS, sets.leads)}</ul>"
        "<p class='hint'>Each lead: <code>connector report --unattributed</code></p>"
    )


def _scroll(body: str, extra_class: str = "") -> str:
    """A wide table scrolls inside its box; the page itself never scrolls sideways."""
    return f'<div class="{f"scroll {extra_class}".strip()}">{body}</div>'


def _trend_table(report: Report) -> str:
    cur = report.currency
    head = (report.group_by, "leads attributable", "won revenue attributable")
    rows = [
        _html_row(
            [
                p.period,
                f"{p.leads.part:,.0f} of {p.leads.whole:,.0f} · {pct(p.leads.value)}",
                f"{money(p.revenue.part, cur)} of {money(p.revenue.whole, cur)} · "
                f"{pct(p.revenue.value)}",
            ]
        )
        for p in report.trend
    ]
    return _table(head, rows)


def _mix_table(mix: Mix, currency: str) -> str:
    """Each group's leads per period (count beside share), its won revenue under them."""
    head = "".join(f"<th>{escape(c)}</th>" for c in (mix.dimension, *mix.periods, "all"))
    rows = []
    for row in mix.rows:
        cells = "".join(
            f"<td>{escape(share_cell(c))}<br>"
            f'<small class="why">{escape(revenue_cell(c, currency))}</small></td>'
            for c in [*row.cells, row.total]
        )
        rows.append(f"<tr><td>{escape(row.name)}</td>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _currency_html(report: Report) -> str:
    """The rates (and the days that chose them) of won and open deals; the deals without a
    value: each won one listed, the open ones counted by reason."""
    parts = []
    read = f" (read {report.rates_read_at:%Y-%m-%d %H:%M})" if report.rates_read_at else ""
    for kind, v in (("won", report.valuation), ("open", report.pipeline)):
        if v is not None and v.rates_used:
            rates = "".join(
                f"<li><span>{escape(rate_text(r))}</span><b>{escape(plural(n, 'deal'))}</b></li>"
                for r, n in v.rates_used.items()
            )
            title = converted_text(v, kind, report.currency) + read
            parts.append(f"<h3>{escape(title)}</h3><ul class='reasons'>{rates}</ul>")
    won = report.valuation.unvalued if report.valuation else []
    if won:
        rows = [
            _html_row([d.lead_id, amount_text(d.amount, d.currency), UNVALUED_REASONS[d.reason]])
            for d in won
        ]
        parts.append(
            f"<h3>{len(won):,} won deals without a value in {escape(report.currency)}"
            "</h3><p class='hint'>Counted as won, not in revenue: fix them in Salesforce.</p>"
            + _scroll(_table(("lead", "amount in the CRM", "why"), rows))
        )
    if report.pipeline and (unvalued := report.pipeline.unvalued):
        parts.append(
            f"<h3>{escape(plural(len(unvalued), 'open deal'))} without a value in "
            f"{escape(report.currency)}</h3><p class='hint'>Counted as open, not in the "
            f"pipeline: {escape(unvalued_text(unvalued))}. Each one: <code>connector report "
            "--json</code> (pipeline_unvalued).</p>"
        )
    return "".join(parts)


def _costs_html(report: Report) -> str:
    if not report.costs.known:
        return ""
    cur = report.currency
    rows = [_html_row([r.name, *cost_cells(r, cur)]) for r in report.costs.campaigns]
    rows += [_html_row([r.name, *cost_cells(r, cur)], "total") for r in report.costs.channels]
    return _section(
        "Google Ads cost and return",
        f"Per campaign of the leads' clicks (connector costs), in {cur}. ROAS = won revenue ÷ "
        "cost; CAC = cost ÷ won deals; pipeline = the value of the leads' deals still open.",
        # Campaign names can be long: they wrap, so the figures fit beside them.
        cost_chart(report) + _scroll(_table(("campaign", *COST_COLUMNS), rows), "names"),
    )


def _measurability_charts(report: Report) -> str:
    return responsive(measurability_chart(report), measurability_phone(report))


def _table(head: Sequence[str], rows: Sequence[str]) -> str:
    cells = "".join(f"<th>{escape(c)}</th>" for c in head)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _footer(report: Report) -> str:
    order = " → ".join(SIGNAL_LABELS.get(s, s) for s in report.precedence)
    return escape(
        f"Attribution precedence: {order}, then unattributed. Revenue counts won deals in "
        f"{report.currency}, others converted with the org's Salesforce rates (dated rates at "
        "a deal's CloseDate, else at the day of its change); deals that still have no value "
        "are listed above and count as won only. Pipeline: the deals still open at the end of "
        "the period, at their latest amount, converted at their expected CloseDate. Pipeline "
        "velocity "
        "= opportunities \u00d7 win rate \u00d7 average deal \u00f7 average days from lead "
        "to contract."
    )


def _channel_html_tables(report: Report) -> str:
    """The funnel table, then the value and pipeline table: each fits beside its names."""
    rows = [*report.channels.items(), ("all channels", report.funnel)]
    tables = []
    for columns, cells in (
        (FUNNEL_COLUMNS, funnel_cells),
        ((*VALUE_COLUMNS, *PIPELINE_COLUMNS), _deal_cells),
    ):
        body = [
            _html_row([name, *cells(f, report.currency)], "total" if i == len(rows) - 1 else "")
            for i, (name, f) in enumerate(rows)
        ]
        tables.append(_scroll(_table(("channel", *columns), body)))
    return "".join(tables)


def _deal_cells(f: Funnel, currency: str) -> list[str]:
    return [*value_cells(f, currency), *pipeline_cells(f, currency)]


def _html_row(cells: Sequence[str], css_class: str = "") -> str:
    attr = f' class="{css_class}"' if css_class else ""
    return f"<tr{attr}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


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
    notes = [f"field warnings: {pairs(h.field_warnings)}"] if h.field_warnings else []
    if note := trust_note(h):
        notes.append(note)
    return "".join(f'<br><small class="why">{escape(n)}</small>' for n in notes)


def _with_reasons(total: int, reasons: dict[str, int]) -> str:
    detail = f'<br><small class="why">{escape(pairs(reasons))}</small>' if reasons else ""
    return f"{total:,}{detail}"
