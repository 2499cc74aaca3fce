"""Google Ads cost and click campaigns through the real GoogleAdsClient, into the report.

OAuth only: the emulator here asks for no developer token (none is needed since
September 2026). Every figure below is worked out by hand from the fixture.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
from google.ads.googleads.errors import GoogleAdsException
from rich.console import Console
from typer.testing import CliRunner

from connector.analytics.google_ads_costs import fetch_costs
from connector.cli import app
from connector.destinations.google_ads.ads_api import ads_client
from connector.ledger import Ledger
from connector.report import Period, build_report, load, print_table, report_dict, to_csv, to_html
from connector.report.costs import NOT_FOUND
from connector.settings import GoogleAdsSettings
from connector_sandbox.google_ads_api import EmulatedCustomer, GoogleAdsApiEmulator
from connector_sandbox.google_ads_reporting import EmulatedCampaign
from connector_sandbox.tls import sandbox_ca
from tests.conftest import MAPPING
from tests.report.cases import change

CUSTOMER = "1234567890"
TODAY = datetime.now(UTC).date()
DAY1, DAY2, OLD = TODAY - timedelta(days=10), TODAY - timedelta(days=9), TODAY - timedelta(days=100)
EUR = 1_000_000  # micros


def at(day: object, hour: int) -> datetime:
    return datetime.combine(day, time(hour), UTC)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def emulator() -> Iterator[GoogleAdsApiEmulator]:
    with GoogleAdsApiEmulator([EmulatedCustomer(CUSTOMER)]) as emulator:  # no token: none needed
        emulator.reporting.add_campaign(
            EmulatedCampaign(111, "Brand", days={DAY1: (100 * EUR, 30), DAY2: (50 * EUR, 20)})
        )
        emulator.reporting.add_campaign(
            EmulatedCampaign(222, "Generic", days={DAY1: (300 * EUR, 60)})
        )
        for gclid, day, campaign in (
            ("gA", DAY1, 111),
            ("gB", DAY1, 111),
            ("gC", DAY2, 222),
            ("gE", OLD, 111),
        ):
            emulator.reporting.add_click(gclid, day, campaign)
        yield emulator


def settings(emulator: GoogleAdsApiEmulator) -> GoogleAdsSettings:
    return GoogleAdsSettings(
        operating_account_id=CUSTOMER,
        api_endpoint=emulator.endpoint,
        api_ca_bundle=sandbox_ca().bundle_path,
        anonymous_credentials=True,
    )


def fill(ledger: Ledger) -> None:
    """A (Brand) won for €3,000; B (Brand) SQL; C (Generic) MQL; D's click is in no campaign;
    E's click is older than click_view's 90 days."""

    def paid(gclid: str) -> dict[str, str]:
        return {"gclid": gclid, "currency": "EUR"}

    batch = [
        change("A", "mql", at(DAY1, 10), paid("gA"), created=at(DAY1, 9)),
        change("A", "sql", at(DAY1, 11), paid("gA")),
        change("A", "opportunity", at(DAY1, 12), paid("gA")),
        change("A", "won", at(DAY1, 13), paid("gA") | {"amount": "3000"}),
        change("B", "sql", at(DAY1, 10), paid("gB"), created=at(DAY1, 9)),
        change("C", "mql", at(DAY2, 10), paid("gC"), created=at(DAY2, 9)),
        change("D", "lead", at(DAY2, 10), paid("gD"), created=at(DAY2, 9)),
        change("E", "mql", at(OLD, 10), paid("gE"), created=at(OLD, 9)),
    ]
    run = ledger.runs.start()
    ledger.changes.record(run, batch, "salesforce.LeadHistory", at(DAY2, 12))


def test_costs_and_click_campaigns_feed_cost_per_sql_roas_and_cac(
    emulator: GoogleAdsApiEmulator, sqlite_url: str
) -> None:
    ledger = Ledger.open(sqlite_url)
    fill(ledger)
    stored = fetch_costs(settings(emulator), ledger, DAY1, DAY2)
    assert stored == {
        "since": DAY1.isoformat(),
        "until": DAY2.isoformat(),
        "currency": "EUR",
        "campaign_days": 3,
        "cost": 450.0,
        "click_days_queried": 2,  # DAY1 and DAY2; E's day is beyond click_view's 90 days
        "clicks_looked_up": 4,
        "clicks_found": 3,
    }
    click_queries = [q for q in emulator.queries if "FROM click_view" in q]
    assert len(click_queries) == 2

    period = Period(DAY1, DAY2)
    report = build_report(load(Ledger.open(sqlite_url, readonly=True), period), currency="EUR")
    rows = {r.name: r for r in report.costs.campaigns}
    assert list(rows) == ["Generic", "Brand", NOT_FOUND]  # by cost, unplaced clicks last
    brand = rows["Brand"]
    assert (brand.cost, brand.clicks, brand.leads, brand.sql, brand.opportunities) == (
        150,
        50,
        2,
        2,
        1,
    )
    assert (brand.cost_per_sql, brand.cost_per_opportunity) == (75, 150)
    assert (brand.won_revenue, brand.roas, brand.cac) == (3000, 20, 150)
    generic = rows["Generic"]
    assert (generic.cost, generic.leads, generic.cost_per_sql, generic.roas, generic.cac) == (
        300, 1, None, 0, None,
    )  # fmt: skip
    assert (rows[NOT_FOUND].leads, rows[NOT_FOUND].cost) == (1, None)
    (channel,) = report.costs.channels
    assert (channel.name, channel.cost, channel.leads, channel.mql, channel.sql) == (
        "paid search", 450, 4, 3, 2,
    )  # fmt: skip
    assert channel.cost_per_sql == 225 and channel.cac == 450
    assert channel.roas == pytest.approx(3000 / 450)


def test_click_view_answers_one_day_at_a_time(emulator: GoogleAdsApiEmulator) -> None:
    service = ads_client(settings(emulator)).get_service("GoogleAdsService")
    query = "SELECT click_view.gclid FROM click_view WHERE segments.date >= '2026-11-01'"
    with pytest.raises(GoogleAdsException) as raised:
        list(service.search(customer_id=CUSTOMER, query=query))
    assert "DATE_RANGE_TOO_WIDE" in str(raised.value.failure)


def test_every_format_shows_the_cost_rows(emulator: GoogleAdsApiEmulator, sqlite_url: str) -> None:
    ledger = Ledger.open(sqlite_url)
    fill(ledger)
    fetch_costs(settings(emulator), ledger, DAY1, DAY2)
    report = build_report(load(ledger, Period(DAY1, DAY2)), currency="EUR")
    brand = next(
        r for r in report_dict(report)["google_ads_costs"]["campaigns"] if r["name"] == "Brand"
    )
    assert (brand["cost"], brand["cost_per_sql"], brand["roas"], brand["cac"]) == (150, 75, 20, 150)
    console = Console(record=True, width=80)
    print_table(report, console)
    text = console.export_text()
    assert "Google Ads return (EUR)" in text and "20.0×" in text
    assert "Google Ads cost and return" in to_html(report)
    assert ("google_ads_cost_by_campaign", "Brand", "roas", "20.0") in {
        tuple(r.values()) for r in csv.DictReader(io.StringIO(to_csv(report)))
    }


def set_costs_env(
    monkeypatch: pytest.MonkeyPatch, emulator: GoogleAdsApiEmulator, state_url: str, **extra: str
) -> None:
    """`connector costs` against the emulator, OAuth left out (anonymous credentials)."""
    env = {
        "CONNECTOR_STATE_URL": state_url,
        "CONNECTOR_MAPPING_PATH": str(MAPPING),
        "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID": CUSTOMER,
        "CONNECTOR_GOOGLE_ADS__API_ENDPOINT": emulator.endpoint,
        "CONNECTOR_GOOGLE_ADS__API_CA_BUNDLE": str(sandbox_ca().bundle_path),
        "CONNECTOR_GOOGLE_ADS__ANONYMOUS_CREDENTIALS": "true",
        **extra,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_costs_command(
    emulator: GoogleAdsApiEmulator, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(Ledger.open(sqlite_url))
    set_costs_env(monkeypatch, emulator, sqlite_url)
    period = ["--since", DAY1.isoformat(), "--until", DAY2.isoformat()]
    result = CliRunner().invoke(app, ["costs", *period, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["clicks_found"] == 3
    table = CliRunner().invoke(app, ["costs", *period])
    assert "cost 450.00 EUR" in table.output
    assert CliRunner().invoke(app, ["costs", "--since", "someday"]).exit_code == 2


@pytest.mark.parametrize(
    ("update", "code"),
    [
        ({"CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID": "9999999999"}, 2),  # no access to it
        ({"CONNECTOR_GOOGLE_ADS__API_ENDPOINT": "127.0.0.1:9"}, 3),  # nothing answers
    ],
    ids=["refused", "unreachable"],
)
def test_costs_exits_by_what_failed(
    emulator: GoogleAdsApiEmulator,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    update: dict[str, str],
    code: int,
) -> None:
    set_costs_env(
        monkeypatch, emulator, sqlite_url, CONNECTOR_GOOGLE_ADS__TIMEOUT_SECONDS="2", **update
    )
    result = CliRunner().invoke(app, ["costs", "--json"])
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["status"] == "failed"
