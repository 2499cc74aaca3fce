"""The org's conversion rates, read with real simple-salesforce from the emulated org."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from connector.ledger import CurrencyRate, Ledger
from connector.ledger.rates import CURRENT, DATED
from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector.source.auth import connect
from connector.source.currency import read_rates, refresh_rates
from connector_sandbox.dataset import generate
from connector_sandbox.salesforce import SalesforceEmulator
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CURRENCY_TYPES = [
    {"Id": "02c000000000001AAA", "IsoCode": "EUR", "ConversionRate": 1.0, "IsActive": True,
     "IsCorporate": True},
    {"Id": "02c000000000002AAA", "IsoCode": "USD", "ConversionRate": 1.08, "IsActive": True,
     "IsCorporate": False},
    {"Id": "02c000000000003AAA", "IsoCode": "JPY", "ConversionRate": 160.0, "IsActive": False,
     "IsCorporate": False},
]  # fmt: skip
DATED_RATES = [
    {"Id": "04w000000000002AAA", "IsoCode": "USD", "ConversionRate": 1.10,
     "StartDate": "2026-10-01", "NextStartDate": None},
    {"Id": "04w000000000001AAA", "IsoCode": "USD", "ConversionRate": 1.05,
     "StartDate": "2026-09-01", "NextStartDate": "2026-10-01"},
]  # fmt: skip


@pytest.fixture(scope="module")
def org() -> Iterator[SalesforceEmulator]:
    emulator = SalesforceEmulator({})
    emulator.start()
    yield emulator
    emulator.stop()


def client_for(org: SalesforceEmulator, tables: dict[str, list[dict[str, Any]]]) -> Any:
    org._initial = (tables, org.api_limit, org.page_size)  # the same server, another org
    org.reset()
    return connect(org.login_settings())


def test_current_and_dated_rates_of_an_org_with_advanced_currency_management(
    org: SalesforceEmulator,
) -> None:
    client = client_for(org, {"CurrencyType": CURRENCY_TYPES, "DatedConversionRate": DATED_RATES})
    assert read_rates(client) == [
        CurrencyRate(CURRENT, "EUR", 1.0, corporate=True),
        CurrencyRate(CURRENT, "USD", 1.08),  # JPY is inactive: not read
        CurrencyRate(DATED, "USD", 1.05, False, date(2026, 9, 1), date(2026, 10, 1)),
        CurrencyRate(DATED, "USD", 1.10, False, date(2026, 10, 1), None),
    ]


def test_an_org_without_advanced_currency_management_has_current_rates_only(
    org: SalesforceEmulator,
) -> None:
    client = client_for(org, {"CurrencyType": CURRENCY_TYPES})
    assert [r.kind for r in read_rates(client) or []] == [CURRENT, CURRENT]


def test_a_single_currency_org_has_no_rates(org: SalesforceEmulator) -> None:
    assert read_rates(client_for(org, {})) is None


def test_refresh_replaces_the_stored_rates(org: SalesforceEmulator, state_url: str) -> None:
    ledger = Ledger.open(state_url)
    client = client_for(org, {"CurrencyType": CURRENCY_TYPES, "DatedConversionRate": DATED_RATES})
    assert refresh_rates(client, ledger, NOW) == 4
    assert refresh_rates(client_for(org, {"CurrencyType": CURRENCY_TYPES}), ledger, NOW) == 2
    stored = Ledger.open(state_url, readonly=True).rates.get()
    assert [r.iso_code for r in stored.rates] == ["EUR", "USD"] and stored.read_at == NOW


def test_a_store_without_the_rates_table_reads_as_no_rates(tmp_path: Any) -> None:
    missing = Ledger.open(f"sqlite:///{tmp_path / 'absent.db'}", readonly=True)
    assert missing.rates.get().rates == []


def test_a_sync_stores_the_orgs_rates(sqlite_url: str) -> None:
    data = generate(n_leads=20, seed=3)
    with Sandbox(data.tables()) as box:
        sync(box.settings(sqlite_url, MAPPING), load_mapping(MAPPING), SyncOptions())
    stored = Ledger.open(sqlite_url, readonly=True).rates.get()
    assert len(stored.rates) == len(data.currency_types) + len(data.dated_rates)
    assert {r.iso_code for r in stored.rates if r.corporate} == {"EUR"}
