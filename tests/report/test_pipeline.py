"""Open pipeline and won deals at their CloseDate's rate, on the worked fixture of `deals`."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

import pytest
from rich.console import Console

from connector.ledger import Ledger
from connector.ledger.rates import CURRENT, DATED
from connector.report import Period, build_report, load
from connector.report.currency import (
    AT_CHANGE_DATE,
    AT_CLOSE_DATE,
    NO_AMOUNT,
    NOT_RECORDED,
    RateUse,
    UnvaluedDeal,
)
from connector.report.html import to_html
from connector.report.load import Deal, group_leads
from connector.report.metrics import Report, Share, open_pipeline
from connector.report.tabular import report_dict, to_csv, to_wide_csv
from connector.report.terminal import print_table
from tests.report.deals import at, costs, deals_data, mapped


@pytest.fixture(scope="module")
def report() -> Report:
    return build_report(deals_data(), currency="EUR")


def test_the_open_deals_are_the_pipeline_at_their_latest_amount(report: Report) -> None:
    leads = {lead.lead_id: lead for lead in report.leads}
    assert [d.amount for d in leads["A"].open_deals] == [12_000]  # its latest amount
    assert leads["D"].open_deals == () and leads["C"].open_deals == ()  # lost, won
    assert [d.amount for d in leads["H"].open_deals] == [4_500]  # an unlisted stage keeps it open
    assert [(d.amount, d.currency) for d in leads["G"].open_deals] == [(2_000, "GBP")]
    assert [d.recorded for d in leads["J"].open_deals] == [False]
    f = report.funnel
    assert [d.amount for d in leads["K"].open_deals] == [9_000]  # won, then reopened
    assert leads["L"].open_deals == ()  # won, then lost
    assert (f.open_deals, f.pipeline, f.open_without_value) == (8, pytest.approx(32_000), 3)
    assert (f.won, f.won_revenue, f.won_without_value) == (3, pytest.approx(7_000), 0)


def test_a_won_deal_reopened_or_lost_since_counts_as_won_nowhere(report: Report) -> None:
    # K (won Mar 9, reopened Mar 13) and L (won Mar 7, lost Mar 11) are on Brand; once won,
    # the CRM now says open and lost: C, G and I are the only won deals.
    leads = {lead.lead_id: lead for lead in report.leads}
    assert "won" not in leads["K"].stages and "won" not in leads["L"].stages
    assert leads["K"].won_deals == () == leads["L"].won_deals
    f = report.funnel
    assert (f.opportunities, f.won, f.won_revenue, f.deals_with_value) == (12, 3, 7_000, 3)
    # C and I won 14 days after creation, G 8: median 14, mean 12; velocity = 12
    # opportunities x 3/12 won x 7,000/3 average deal / 12 days.
    assert (f.median_days_to_contract, f.average_cycle_days) == (14, 12)
    assert f.velocity_per_day == pytest.approx(7_000 / 12)
    m = report.measurability
    assert (m.revenue, m.by_stage["won"]) == (Share(5_000, 7_000), Share(2, 3))
    assert [(t.revenue.part, t.revenue.whole) for t in report.trend] == [(5_000, 7_000)]
    paid = report.channels["paid search"]
    assert (paid.leads, paid.opportunities, paid.won, paid.won_revenue) == (7, 7, 2, 5_000)
    mix = {row.name: row.total for row in report.by_channel.rows}
    assert (mix["paid search"].revenue, mix["paid search"].period_revenue) == (5_000, 7_000)
    rows = {r.name: r for r in report.costs.campaigns}
    brand = rows["Brand"]
    assert (brand.opportunities, brand.won, brand.won_revenue, brand.roas, brand.cac) == (
        5, 0, 0, 0, None,
    )  # fmt: skip
    (channel,) = report.costs.channels
    assert (channel.won, channel.won_revenue, channel.cac) == (2, pytest.approx(5_000), 1_500)
    data = report_dict(report)
    assert (data["funnel"]["won"], data["funnel"]["won_revenue"]) == (3, 7_000)
    brand_row = next(r for r in data["google_ads_costs"]["campaigns"] if r["name"] == "Brand")
    assert (brand_row["won"], brand_row["won_revenue"]) == (0, 0)
    wide = {r["name"]: r for r in csv.DictReader(io.StringIO(to_wide_csv(report)))}
    assert (wide["Brand"]["won"], wide["paid search"]["won revenue"]) == ("0", "5000.0")


def test_a_deal_won_reopened_and_won_again_counts_from_its_last_win() -> None:
    rows = [
        _row("N", "opportunity", 4, "ON", 1_000),
        _row("N", "won", 6, "ON", 1_000),
        _row("N", "opportunity", 8, "ON", 1_500),
        _row("N", "won", 12, "ON", 1_500),
        _row("N", "won", 14, "ON", 1_800),  # a restated amount: the latest counts
    ]
    (lead,) = group_leads(rows)
    assert lead.stages["won"] == at(12) and lead.open_deals == ()
    assert [(d.amount, d.currency) for d in lead.won_deals] == [(1_800, "EUR")]


def test_a_won_deal_moved_to_a_stage_the_mapping_does_not_list_is_reopened() -> None:
    # The sync retracts its Google Ads conversion (translate._retraction): open, not won.
    rows = [_row("P", "won", 6, "OP", 2_000), _row("P", "unmapped", 9, "OP", 2_500)]
    (lead,) = group_leads(rows)
    assert "won" not in lead.stages and lead.won_deals == ()
    assert [d.amount for d in lead.open_deals] == [2_500]
    # A lead status the mapping does not list says nothing about a deal won without one.
    rows = [_row("Q", "won", 6, None, 2_000), _row("Q", "unmapped", 9, None, None)]
    (lead,) = group_leads(rows)
    assert [d.amount for d in lead.won_deals] == [2_000] and lead.open_deals == ()


def _row(lead: str, stage: str, day: int, opportunity: str | None, amount: float | None) -> Any:
    deal = {"deal_amount": amount, "deal_currency": "EUR"} if amount is not None else {}
    return {
        **{"lead_id": lead, "stage": stage, "changed_at": at(day), "lead_created_at": at(2)},
        **{"attributes": deal, "problems": {}, "opportunity_id": opportunity},
    }


def test_each_open_deal_converts_at_its_expected_close_date(report: Report) -> None:
    v = report.pipeline
    assert v is not None
    # B 6,000 USD on Mar 20 / 1.50 = 4,000; G 2,000 GBP / 0.80 = 2,500
    assert v.values == pytest.approx({"A": 12_000, "B": 4_000, "G": 2_500, "H": 4_500, "K": 9_000})
    assert v.rates_used == {
        RateUse("USD", "EUR", 1.50, DATED, date(2026, 3, 15), None): 1,
        RateUse("GBP", "EUR", 0.80, CURRENT): 1,
    }
    assert v.converted_at == {AT_CLOSE_DATE: 2}
    assert sorted(v.unvalued, key=lambda d: d.lead_id) == [
        UnvaluedDeal("E", None, None, NOT_RECORDED),
        UnvaluedDeal("F", None, "EUR", NO_AMOUNT),
        UnvaluedDeal("J", None, None, NOT_RECORDED),
    ]


def test_a_won_deal_converts_at_its_close_date_not_the_day_it_was_recorded(
    report: Report,
) -> None:
    v = report.valuation
    assert v is not None
    # C: 5,000 USD closed Mar 12 (1.25) = 4,000, though recorded won on Mar 16 (1.50 would
    # give 3,333); I has no CloseDate: the day of its change, Mar 16, 3,000 / 1.50 = 2,000.
    assert v.values == pytest.approx({"C": 4_000, "G": 1_000, "I": 2_000})
    assert v.converted_at == {AT_CLOSE_DATE: 1, AT_CHANGE_DATE: 1}
    assert set(v.rates_used) == {
        RateUse("USD", "EUR", 1.25, DATED, date(2026, 3, 1), date(2026, 3, 15)),
        RateUse("USD", "EUR", 1.50, DATED, date(2026, 3, 15), None),
    }


def test_pipeline_per_channel(report: Report) -> None:
    paid, email = report.channels["paid search"], report.channels["email"]
    assert (paid.open_deals, paid.pipeline, paid.open_without_value) == (5, 27_500, 1)
    assert (email.open_deals, email.pipeline, email.open_without_value) == (3, 4_500, 2)
    assert report.channels["unattributed"].pipeline == 0


def test_pipeline_per_google_ads_campaign_and_for_paid_search(report: Report) -> None:
    rows = {r.name: r for r in report.costs.campaigns}
    brand, generic = rows["Brand"], rows["Generic"]
    assert (brand.cost, brand.leads, brand.pipeline, brand.open_without_value) == (
        1_000, 5, 25_000, 1,
    )  # fmt: skip
    assert (brand.won_revenue, brand.roas, brand.cac) == (0, 0, None)
    assert (generic.cost, generic.leads, generic.sql, generic.opportunities, generic.won) == (
        2_000, 2, 2, 2, 2,
    )  # fmt: skip
    assert (generic.cost_per_sql, generic.cost_per_opportunity) == (1_000, 1_000)
    assert (generic.won_revenue, generic.pipeline, generic.roas, generic.cac) == (
        pytest.approx(5_000), 2_500, pytest.approx(2.5), 1_000,
    )  # fmt: skip
    (channel,) = report.costs.channels
    assert (channel.cost, channel.leads, channel.pipeline, channel.open_without_value) == (
        3_000, 7, 27_500, 1,
    )  # fmt: skip
    assert (channel.roas, channel.cac) == (pytest.approx(5_000 / 3_000), 1_500)


def test_json_and_long_csv_carry_the_pipeline(report: Report) -> None:
    data = json.loads(json.dumps(report_dict(report)))
    assert {k: data["funnel"][k] for k in ("open_deals", "pipeline", "open_without_value")} == {
        "open_deals": 8,
        "pipeline": 32_000,
        "open_without_value": 3,
    }
    assert data["channels"]["paid search"]["pipeline"] == 27_500
    brand = next(r for r in data["google_ads_costs"]["campaigns"] if r["name"] == "Brand")
    assert (brand["pipeline"], brand["open_without_value"]) == (25_000, 1)
    assert {d["lead_id"]: d["reason"] for d in data["pipeline_unvalued"]} == {
        "E": "no_opportunity_change",
        "F": "no_amount",
        "J": "no_opportunity_change",
    }
    rates = data["currency_rates"]
    assert rates["converted_at"] == {"close_date": 1, "change_date": 1}
    assert rates["pipeline"]["converted_at"] == {"close_date": 2}
    assert rates["pipeline"]["rates"][0]["rate"] in (1.5, 0.8)
    found = {
        (r["section"], r["group"], r["metric"]): r["value"]
        for r in csv.DictReader(io.StringIO(to_csv(report)))
    }
    assert found[("funnel", "all", "pipeline")] == "32000.0"
    assert found[("funnel", "email", "open_without_value")] == "2"
    assert found[("google_ads_cost_by_campaign", "Generic", "pipeline")] == "2500.0"
    assert found[("google_ads_cost_by_channel", "paid search", "pipeline")] == "27500.0"
    assert found[("pipeline_unvalued", "F", "reason")] == "no_amount"
    assert found[("currency_rates", "converted_at", "change_date")] == "1"
    assert found[("pipeline_currency_rates", "GBP CurrencyType", "deals")] == "1"


def test_wide_csv_has_pipeline_per_channel_and_a_row_per_google_ads_campaign(
    report: Report,
) -> None:
    rows = list(csv.DictReader(io.StringIO(to_wide_csv(report))))
    by = {(r["dimension"], r["name"]): r for r in rows}
    paid = by[("channel", "paid search")]
    assert (paid["pipeline"], paid["open without value"], paid["cost"], paid["cac"]) == (
        "27500.0", "1", "3000.0", "1500.0",
    )  # fmt: skip
    assert by[("channel", "email")]["pipeline"] == "4500.0"
    assert by[("channel", "email")]["cost"] == ""  # no cost known for email
    generic = by[("google_ads_campaign", "Generic")]
    assert (generic["leads"], generic["won"], generic["won revenue"], generic["pipeline"]) == (
        "2", "2", "5000.0", "2500.0",
    )  # fmt: skip
    assert (generic["cost"], generic["roas"], generic["cost per sql"]) == (
        "2000.0",
        "2.5",
        "1000.0",
    )


def test_table_and_html_show_the_pipeline_and_the_days_of_the_rates(report: Report) -> None:
    console = Console(record=True, width=100)
    print_table(report, console)
    text = console.export_text()
    assert "pipeline" in text and "€32,000" in text and "€27,500" in text and "€25,000" in text
    assert (
        "2 won deals converted to EUR with the org's rates, 1 at their CloseDate, 1 at the "
        "day of their change (no CloseDate recorded)"
    ) in " ".join(text.split())
    assert "2 open deals converted to EUR with the org's rates, 2 at their CloseDate" in text
    assert "3 open deals not in the pipeline (no value in EUR): 2 amount not recorded" in text
    page = to_html(report)
    assert "open pipeline · 8 deals" in page and "€32,000" in page
    assert "3 open deals without a value in EUR" in page
    assert "1 at their CloseDate, 1 at the day of their change" in page
    assert 'aria-label="Google Ads cost, won revenue and pipeline"' in page


def test_the_pipeline_from_a_real_ledger(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    run = ledger.runs.start()
    ledger.changes.record(
        run, mapped(), "salesforce.OpportunityFieldHistory", deals_data().period.end
    )
    ledger.rates.replace(deals_data().rates, deals_data().period.start)
    days, clicks = costs()
    ledger.costs.save_costs(days, deals_data().period.start)
    ledger.costs.save_clicks(list(clicks.values()), deals_data().period.start)
    data = load(Ledger.open(state_url, readonly=True), Period(date(2026, 3, 1), date(2026, 3, 31)))
    stored = build_report(data, currency="EUR")
    f = stored.funnel
    assert (f.open_deals, f.pipeline, f.open_without_value) == (8, pytest.approx(32_000), 3)
    assert (f.won, f.won_revenue) == (3, pytest.approx(7_000))
    assert {r.name: r.pipeline for r in stored.costs.campaigns} == {
        "Brand": 25_000,
        "Generic": 2_500,
    }


def test_an_open_deal_recorded_before_deals_were_is_counted_as_not_recorded() -> None:
    # A ledger written before opportunity changes carried deal_amount: no amount to value.
    old = {"lead_id": "K", "stage": "opportunity", "changed_at": at(5), "lead_created_at": None}
    (lead,) = group_leads([old | {"attributes": {}, "problems": {}, "opportunity_id": "OK"}])
    assert lead.open_deals == (Deal(None, None, date(2026, 3, 5), recorded=False),)
    v = open_pipeline([lead], "EUR")
    assert [(d.lead_id, d.reason) for d in v.unvalued] == [("K", NOT_RECORDED)]
