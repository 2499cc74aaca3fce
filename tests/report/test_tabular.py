"""JSON and CSV carry the report's figures."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console

from connector.report.html import to_html
from connector.report.load import LedgerData
from connector.report.metrics import Report, build_report
from connector.report.tabular import to_csv, to_json, to_wide_csv
from connector.report.terminal import print_table
from tests.report.cases import MARCH, worked_report
from tests.report.test_currency import RATES, deals


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


def test_every_format_names_the_unvalued_deals_and_the_rates_used() -> None:
    report = build_report(LedgerData(MARCH, deals(), rates=RATES), currency="EUR")
    data = json.loads(to_json(report))
    assert data["won_unvalued"] == [
        {"lead_id": "E", "amount": 1000, "currency": "XYZ", "reason": "no_rate"},
        {"lead_id": "F", "amount": None, "currency": "USD", "reason": "no_amount"},
    ]
    rates = data["currency_rates"]
    assert rates["deals_converted"] == 3
    assert rates["rates"][0] == {
        "currency": "USD",
        "per": "EUR",
        "rate": 1.25,
        "source": "DatedConversionRate",
        "valid_from": "2026-03-01",
        "valid_until": "2026-03-15",
        "deals": 1,
    }
    found = {(r["section"], r["group"], r["metric"]): r["value"] for r in _csv(report)}
    assert found[("won_unvalued", "E", "currency")] == "XYZ"
    assert found[("currency_rates", "GBP CurrencyType", "rate")] == "0.8"
    console = Console(record=True, width=120)
    print_table(report, console)
    text = console.export_text()
    assert "E: 1,000.00 XYZ (no conversion rate for its currency)" in text
    assert "1.25 USD per EUR (DatedConversionRate 2026-03-01 to 2026-03-14): 1 deal" in text
    page = to_html(report)
    assert "1,000.00 XYZ" in page and "2 won deals without a value in EUR" in page


def test_wide_csv_has_a_row_per_channel_and_campaign() -> None:
    rows = list(csv.DictReader(io.StringIO(to_wide_csv(worked_report()))))
    paid = next(r for r in rows if r["name"] == "paid search")
    assert (paid["dimension"], paid["leads"], paid["lead share"], paid["won"]) == (
        "channel",
        "1000",
        "1.0",
        "30",
    )
    assert paid["won revenue"] == "750000.0" and paid["leads 2026-03"] == "1000"
    assert {r["dimension"] for r in rows} == {"channel", "campaign"}


def _csv(report: Report) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(to_csv(report))))
