"""The report read from a real ledger (SQLite, and PostgreSQL when CI provides one)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app
from connector.core import Outcome, Status
from connector.ledger import CurrencyRate, Ledger
from connector.ledger.rates import CURRENT
from connector.report import Period, build_report, load
from tests.conftest import MAPPING
from tests.report.cases import change

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31))
PAID = {"gclid": "Cj0KCQiA-abcdEFGH_1234567890", "currency": "EUR"}
EMAIL = {"utm_source": "newsletter", "utm_medium": "email"}


def fill(ledger: Ledger) -> None:
    """A: paid search, won for €40,000 20 days after creation. B: email MQL, gclid damaged.
    C: first seen in February (outside). D: no signal. E: created in April (outside)."""
    day = timedelta(days=1)
    batch = [
        change("A", "mql", T0, PAID, created=T0 - day),
        change("A", "opportunity", T0 + 5 * day, PAID),
        change("A", "won", T0 + 19 * day, PAID | {"amount": "40000"}),
        change("A", "won", T0 + 40 * day, PAID),  # after the period: not read
        change("B", "mql", T0, EMAIL, problems={"gclid": "invalid_characters"}),
        change("C", "sql", T0, PAID, created=T0 - 30 * day),
        change("D", "unmapped", T0 + day, {}),
        change("E", "mql", T0 + 30 * day, PAID),
    ]
    run = ledger.runs.start()
    ledger.changes.record(run, batch, "salesforce.LeadHistory", T0 + 40 * day)
    pending = ledger.queue.pending("google_ads")
    outcomes = [
        Outcome(pending[0].id, Status.DELIVERED),
        Outcome(pending[1].id, Status.REJECTED, "CLICK_NOT_FOUND"),
    ]
    ledger.queue.settle(outcomes)
    ledger.runs.finish(run, "ok", {})
    # Google's counts come from the upload requests sent in the period, once it finished them.
    ledger.requests.save("google_ads", {"r-march": 2, "r-busy": 1}, sent_at=T0 + day)
    ledger.requests.save("google_ads", {"r-april": 1}, sent_at=T0 + 30 * day)
    for request_id in ("r-march", "r-april"):
        ledger.requests.update(request_id, "PARTIAL_SUCCESS", processed=2, matched=1)


def test_report_from_the_ledger(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    fill(ledger)
    data = load(Ledger.open(state_url, readonly=True), MARCH)
    assert sorted(lead.lead_id for lead in data.leads) == ["A", "B", "D"]
    report = build_report(data, currency="EUR")
    a = report.attributions
    assert (a["A"].channel, a["B"].channel, a["D"].channel) == (
        "paid search",
        "email",
        "unattributed",
    )
    assert a["D"].reasons == ("no_click_id", "no_utm", "no_ga_client_id", "no_lead_source")
    f = report.funnel
    assert (f.leads, f.mql, f.opportunities, f.won, f.won_revenue) == (3, 2, 1, 1, 40_000)
    assert f.median_days_to_contract == 20  # from lead creation, a day before its first change
    assert report.measurability.leads.value == pytest.approx(2 / 3)
    assert report.measurability.revenue.value == 1.0
    ads = report.delivery["google_ads"]
    # In March: A mql, A opportunity, A won, B mql, C sql, D unmapped (E's change is in April).
    assert (ads.delivered, ads.not_attributable, ads.pending) == (1, 1, 4)
    assert (ads.processed, ads.matched) == (2, 1)  # r-busy has no counts, r-april is April's


def test_absent_store_reads_as_empty(tmp_path: Path) -> None:
    data = load(Ledger.open(f"sqlite:///{tmp_path / 'absent.db'}", readonly=True), MARCH)
    assert data.leads == [] and not data.store_found
    assert not (tmp_path / "absent.db").exists()


def test_report_command(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(Ledger.open(sqlite_url))
    monkeypatch.setenv("CONNECTOR_STATE_URL", sqlite_url)
    monkeypatch.setenv("CONNECTOR_MAPPING_PATH", str(MAPPING))
    runner = CliRunner()
    period = ["--since", "2026-03-01", "--until", "2026-03-31"]

    result = runner.invoke(app, ["report", *period, "--json", "--group-by", "week"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["measurability"]["by_stage"]["won"] == {"attributable": 1, "total": 1, "share": 1.0}
    assert data["channels"]["paid search"]["won_revenue"] == 40_000
    assert data["trend"][0]["period"] == "2026-W09"

    html = tmp_path / "out" / "r.html"
    html.parent.mkdir()
    result = runner.invoke(app, ["report", *period, "--format", "html", "--output", str(html)])
    assert result.exit_code == 0 and "<svg" in html.read_text()

    table = runner.invoke(app, ["report", *period])
    assert table.exit_code == 0 and "paid search" in table.output

    bad = runner.invoke(app, ["report", "--since", "2026-04-01", "--until", "2026-03-01"])
    assert bad.exit_code == 2
    assert runner.invoke(app, ["report", "--format", "pdf"]).exit_code == 2


def test_won_deals_in_other_currencies_convert_with_the_stored_rates(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    fill(ledger)
    usd, xyz = PAID | {"currency": "USD"}, PAID | {"currency": "XYZ"}
    run = ledger.runs.start()
    batch = [
        change("F", "won", T0 + timedelta(days=2), usd | {"amount": "11000"}),
        change("G", "won", T0 + timedelta(days=2), xyz | {"amount": "500"}),
    ]
    ledger.changes.record(run, batch, "salesforce.OpportunityFieldHistory", T0)
    rates = [CurrencyRate(CURRENT, "EUR", 1.0, corporate=True), CurrencyRate(CURRENT, "USD", 1.1)]
    ledger.rates.replace(rates, T0)

    report = build_report(load(Ledger.open(state_url, readonly=True), MARCH), currency="EUR")
    f = report.funnel
    # A €40,000, F $11,000 / 1.10 = €10,000; G has no rate: won, listed, not in revenue.
    assert (f.won, f.won_revenue, f.won_without_value) == (3, pytest.approx(50_000), 1)
    assert report.valuation is not None
    assert [(d.lead_id, d.amount, d.currency) for d in report.valuation.unvalued] == [
        ("G", 500, "XYZ")
    ]
    assert report.rates_read_at == T0


def test_report_command_writes_to_stdout_and_lists_the_unattributed_leads(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(Ledger.open(sqlite_url))
    monkeypatch.setenv("CONNECTOR_STATE_URL", sqlite_url)
    monkeypatch.setenv("CONNECTOR_MAPPING_PATH", str(MAPPING))
    runner = CliRunner()
    period = ["report", "--since", "2026-03-01", "--until", "2026-03-31"]

    wide = runner.invoke(app, [*period, "--format", "wide-csv", "--output", "-"])
    assert wide.exit_code == 0, wide.output
    assert wide.output.startswith("dimension,name,leads,lead share,won revenue")
    assert "channel,paid search,1," in wide.output and not Path("-").exists()

    listed = runner.invoke(app, [*period, "--unattributed", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(u["lead_id"], u["reasons"]) for u in json.loads(listed.output)] == [
        ("D", ["no_click_id", "no_utm", "no_ga_client_id", "no_lead_source"])
    ]
    as_csv = runner.invoke(app, [*period, "--unattributed", "--format", "csv", "--output", "-"])
    assert as_csv.output.splitlines()[1].startswith("D,2026-03-11T12:00:00+00:00,lead,,EUR,")
    table = runner.invoke(app, [*period, "--unattributed"])
    assert "1 have none of the signals" in table.output
    assert runner.invoke(app, [*period, "--unattributed", "--format", "html"]).exit_code == 2
