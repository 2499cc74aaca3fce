"""JSON and CSV carry the report's figures."""

from __future__ import annotations

import csv
import io
import json

from connector.report.load import LedgerData
from connector.report.metrics import build_report
from connector.report.tabular import to_csv, to_json
from tests.report.cases import MARCH, worked_report


def test_json_carries_the_worked_example() -> None:
    data = json.loads(to_json(worked_report()))
    paid = data["channels"]["paid search"]
    assert (paid["mql_to_sql"], paid["sql_to_opportunity"], paid["opportunity_to_won"]) == (
        0.3,
        0.4,
        0.25,
    )
    assert paid["average_deal"] == 25_000 and paid["pipeline_velocity_per_day"] == 8333.33
    assert data["measurability"]["leads"] == {"attributable": 1000, "total": 1000, "share": 1.0}
    assert data["attribution_precedence"] == ["click_id", "utm", "ga4", "lead_source"]
    assert data["period"]["since"] == "2026-03-01"


def test_csv_is_one_tidy_table() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(worked_report()))))
    assert set(rows[0]) == {"section", "group", "metric", "value"}
    found = {(r["section"], r["group"], r["metric"]): r["value"] for r in rows}
    assert found[("funnel", "paid search", "opportunity_to_won")] == "0.25"
    assert found[("measurability", "won", "share")] == "1.0"
    assert ("trend", "2026-03", "share") in found


def test_empty_period_has_no_leads() -> None:
    assert (
        json.loads(to_json(build_report(LedgerData(MARCH), currency="EUR")))["funnel"]["leads"] == 0
    )
