"""The report as data: plain JSON types (`report_dict`, `to_json`) or one tidy CSV table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from connector.report.breakdown import Cell, Mix
from connector.report.costs import CostRow
from connector.report.currency import Valuation
from connector.report.metrics import DeliveryHealth, Funnel, Report, Share
from connector.report.unattributed import ReasonSets, unattributed_leads


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
        "unattributed": _reason_sets(report.unattributed),
        "trend": [
            {"period": p.period, **_share(p.leads), "won_revenue": _share(p.revenue)}
            for p in report.trend
        ],
        "by_channel": _mix(report.by_channel),
        "by_campaign": _mix(report.by_campaign),
        "funnel": _funnel(report.funnel),
        "channels": {name: _funnel(f) for name, f in report.channels.items()},
        "google_ads_costs": {
            "campaigns": [_cost(r) for r in report.costs.campaigns],
            "channels": [_cost(r) for r in report.costs.channels],
            "campaign_days_without_rate": report.costs.unconverted,
        },
        "won_unvalued": unvalued_rows(report.valuation),
        "pipeline_unvalued": unvalued_rows(report.pipeline),
        "currency_rates": rates_used(report),
        "delivery": {name: _health(h) for name, h in report.delivery.items()},
    }


def unvalued_rows(v: Valuation | None) -> list[dict[str, Any]]:
    """Deals (won, or open) left out of the figures, with their own amount and currency, and
    why."""
    return [
        {"lead_id": d.lead_id, "amount": d.amount, "currency": d.currency, "reason": d.reason}
        for d in (v.unvalued if v else [])
    ]


def rates_used(report: Report) -> dict[str, Any]:
    """The org's rates the report converted with (Salesforce's units per corporate unit), for
    won deals and, under `pipeline`, for open ones; `converted_at`: the days that chose them."""
    read = report.rates_read_at
    return {
        "read_at": read.isoformat(timespec="seconds") if read else None,
        **_conversions(report.valuation),
        "pipeline": _conversions(report.pipeline),
    }


def _conversions(v: Valuation | None) -> dict[str, Any]:
    return {
        "deals_converted": v.converted if v else 0,
        "converted_at": dict(v.converted_at) if v else {},
        "rates": [
            {
                "currency": r.currency,
                "per": r.per,
                "rate": r.rate,
                "source": r.kind,
                "valid_from": r.valid_from.isoformat() if r.valid_from else None,
                "valid_until": r.valid_until.isoformat() if r.valid_until else None,
                "deals": deals,
            }
            for r, deals in (v.rates_used if v else {}).items()
        ],
    }


def unattributed_dict(report: Report) -> list[dict[str, Any]]:
    """`connector report --unattributed`: each lead no channel can claim, and every reason."""
    assert report.valuation is not None
    return [
        {
            "lead_id": u.lead_id,
            "first_seen": u.first_seen.isoformat(timespec="seconds"),
            "furthest_stage": u.furthest_stage,
            "won_value": _r(u.won_value, 2),
            "currency": report.currency,
            "reasons": list(u.reasons),
        }
        for u in unattributed_leads(report.leads, report.attributions, report.valuation)
    ]


def unattributed_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = ["lead_id", "first_seen", "furthest_stage", "won_value", "currency", "reasons"]
    writer.writerow(columns)
    for row in unattributed_dict(report):
        row["reasons"] = " ".join(row["reasons"])
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
    return out.getvalue()


def to_wide_csv(report: Report) -> str:
    """One row per channel, then per campaign (`utm_campaign`), then per Google Ads campaign:
    its funnel, won revenue, pipeline, cost and return, and its leads and won revenue (with
    their shares of the period's) per period.
    A cell that does not apply to a row's dimension is empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    periods = report.by_channel.periods
    kinds = ("leads", "lead share", "won revenue", "revenue share")
    per_period = [f"{kind} {p}" for p in periods for kind in kinds]
    head = ["dimension", "name", "leads", "lead share", "won revenue", "revenue share"]
    writer.writerow([*head, *_FUNNEL_COLUMNS, *_COST_COLUMNS, *per_period])
    costs = {r.name: r for r in report.costs.channels}
    for mix in (report.by_channel, report.by_campaign):
        for row in mix.rows:
            t = row.total
            channel = mix.dimension == "channel"
            funnel = report.channels.get(row.name) if channel else None
            cost = costs.get(row.name) if channel else None
            cells = [c for cell in row.cells for c in _period_cells(cell)]
            writer.writerow(
                [
                    *(mix.dimension, row.name, t.leads, _r(t.lead_share), round(t.revenue, 2)),
                    _r(t.revenue_share),
                    *_funnel_cells(funnel),
                    *_cost_cells(cost),
                    *["" if c is None else c for c in cells],
                ]
            )
    for r in report.costs.campaigns:
        counts = [r.mql, r.sql, r.opportunities, r.won, ""]
        deals = [round(r.pipeline, 2), r.open_without_value]
        row_cells = ["google_ads_campaign", r.name, r.leads, "", round(r.won_revenue, 2), ""]
        writer.writerow([*row_cells, *counts, *deals, *_cost_cells(r), *[""] * len(per_period)])
    return out.getvalue()


def _period_cells(cell: Cell) -> list[float | int | None]:
    return [cell.leads, _r(cell.lead_share), round(cell.revenue, 2), _r(cell.revenue_share)]


_FUNNEL_COLUMNS = (
    *("mql", "sql", "opportunities", "won", "won without value"),
    *("pipeline", "open without value"),
)
_COST_COLUMNS = ("cost", "clicks", "cost per sql", "cost per opportunity", "roas", "cac")


def _funnel_cells(f: Funnel | None) -> list[Any]:
    if f is None:
        return [""] * len(_FUNNEL_COLUMNS)
    counts = [f.mql, f.sql, f.opportunities, f.won, f.won_without_value]
    return [*counts, round(f.pipeline, 2), f.open_without_value]


def _cost_cells(r: CostRow | None) -> list[Any]:
    """Cost and return: empty where no cost is known (also an unknown cost of a known row)."""
    if r is None:
        return [""] * len(_COST_COLUMNS)
    figures = [_r(r.cost, 2), r.clicks, _r(r.cost_per_sql, 2), _r(r.cost_per_opportunity, 2)]
    return ["" if c is None else c for c in [*figures, _r(r.roas), _r(r.cac, 2)]]


def _cost(r: CostRow) -> dict[str, Any]:
    return {
        "name": r.name,
        "cost": _r(r.cost, 2),
        "clicks": r.clicks,
        "leads": r.leads,
        "mql": r.mql,
        "sql": r.sql,
        "opportunities": r.opportunities,
        "won": r.won,
        "cost_per_sql": _r(r.cost_per_sql, 2),
        "cost_per_opportunity": _r(r.cost_per_opportunity, 2),
        "won_revenue": round(r.won_revenue, 2),
        "pipeline": round(r.pipeline, 2),
        "open_without_value": r.open_without_value,
        "roas": _r(r.roas),
        "cac": _r(r.cac, 2),
    }


def _reason_sets(sets: ReasonSets) -> dict[str, Any]:
    return {
        "leads": sets.leads,
        "without_any_signal": sets.without_any_signal,
        "with_some_signal": sets.with_some_signal,
        "by_reason": sets.by_reason,
        "combinations": [
            {"reasons": list(combo), "leads": n} for combo, n in sets.combinations.items()
        ],
        "note": "a lead has one reason per signal tried: reasons overlap and do not add up",
    }


def _mix(mix: Mix) -> dict[str, Any]:
    return {
        "periods": mix.periods,
        "rows": [
            {
                "name": row.name,
                "total": _cell(row.total),
                "periods": {p: _cell(c) for p, c in zip(mix.periods, row.cells, strict=True)},
            }
            for row in mix.rows
        ],
    }


def _cell(cell: Cell) -> dict[str, Any]:
    return {
        "leads": cell.leads,
        "of_leads": cell.period_leads,
        "lead_share": _r(cell.lead_share),
        "won_revenue": round(cell.revenue, 2),
        "of_won_revenue": round(cell.period_revenue, 2),
        "revenue_share": _r(cell.revenue_share),
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
        "open_deals": f.open_deals,
        "pipeline": round(f.pipeline, 2),
        "open_without_value": f.open_without_value,
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
        "field_warnings": h.field_warnings,
        "in_flight": h.in_flight,
        "dead": h.dead,
        "unknown": h.unknown,
        "may_be_duplicated": h.may_be_duplicated,
    }


def _csv_rows(data: dict[str, Any]) -> Iterator[list[Any]]:
    m = data["measurability"]
    for stage, share in m["by_stage"].items():
        yield from _flat("measurability", stage, share)
    yield from _flat("measurability", "revenue_weighted", m["revenue_weighted"])
    yield from _flat("attributed_by_signal", "all", m["by_signal"])
    u = data["unattributed"]
    yield from _flat("unattributed", "all", {k: u[k] for k in ("leads", "without_any_signal")})
    yield from _flat("unattributed_reasons", "all (overlapping)", u["by_reason"])
    for combo in u["combinations"]:
        yield ["unattributed_combinations", " + ".join(combo["reasons"]), "leads", combo["leads"]]
    for point in data["trend"]:
        yield from _flat(
            "trend", point["period"], {k: v for k, v in point.items() if k != "period"}
        )
    for section in ("by_channel", "by_campaign"):
        for row in data[section]["rows"]:
            yield from _flat(section, row["name"], {"total": row["total"], **row["periods"]})
    yield from _flat("funnel", "all", data["funnel"])
    for name, values in data["channels"].items():
        yield from _flat("funnel", name, values)
    for kind in ("campaigns", "channels"):
        for row in data["google_ads_costs"][kind]:
            yield from _flat(f"google_ads_cost_by_{kind[:-1]}", row["name"], row)
    for section in ("won_unvalued", "pipeline_unvalued"):
        for deal in data[section]:
            yield from _flat(section, deal["lead_id"], {k: deal[k] for k in list(deal)[1:]})
    rates = data["currency_rates"]
    for section, used in (
        ("currency_rates", rates),
        ("pipeline_currency_rates", rates["pipeline"]),
    ):
        yield from _flat(section, "converted_at", used["converted_at"])
        for rate in used["rates"]:
            group = f"{rate['currency']} {rate['source']} {rate['valid_from'] or ''}".strip()
            yield from _flat(section, group, rate)
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
