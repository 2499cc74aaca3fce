"""The report as data: plain JSON types (`report_dict`, `to_json`) or one tidy CSV table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from connector.report.metrics import DeliveryHealth, Funnel, Report, Share


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
        "field_warnings": h.field_warnings,
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
