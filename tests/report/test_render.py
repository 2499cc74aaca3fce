"""The report's formats: JSON and CSV carry the figures, HTML is self-contained and escaped."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date

from rich.console import Console

from connector.report import build_report, print_table, to_csv, to_html, to_json
from connector.report.load import LedgerData, Period
from connector.report.metrics import Report
from tests.report.cases import lead, sample_data, worked_funnel

PAID = {"gclid": "Cj0KCQiA-abcdEFGH_1234567890"}
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31))


def worked_report() -> Report:
    return build_report(LedgerData(MARCH, worked_funnel(PAID)), currency="EUR")


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


def test_terminal_table_names_the_sections() -> None:
    console = Console(record=True, width=100)
    print_table(build_report(sample_data(), currency="EUR"), console)
    text = console.export_text()
    for heading in ("Measurability", "Funnel by channel", "Revenue by channel", "Delivery health"):
        assert heading in text
    assert "€8,333" in _table_text(worked_report())


def test_html_is_self_contained() -> None:
    page = to_html(build_report(sample_data(), currency="EUR"))
    assert page.count("<svg") >= 5
    for needle in ("<script", "<link", "@import", "url(", 'src="', "<img"):
        assert needle not in page
    # The SVG namespace is the only URL, and it is never fetched.
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}


def test_html_escapes_crm_text() -> None:
    hostile = {"lead_source": '<img src=x onerror="alert(1)">'}
    page = to_html(build_report(LedgerData(MARCH, [lead("A", attrs=hostile)]), currency="EUR"))
    assert "<img" not in page and "&lt;img src=x" in page


def test_empty_period_renders_with_a_warning() -> None:
    page = to_html(build_report(LedgerData(MARCH, store_found=False), currency="EUR"))
    assert "state store is empty" in page
    assert (
        json.loads(to_json(build_report(LedgerData(MARCH), currency="EUR")))["funnel"]["leads"] == 0
    )


def _table_text(report: Report) -> str:
    console = Console(record=True, width=120)
    print_table(report, console)
    return console.export_text()
