"""Account checks and settings through the real GoogleAdsClient against the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from connector.check import expected
from connector.destinations.google_ads.account import (
    ACCOUNT_QUERY,
    IMPORTABLE_TYPES,
    AccountCheck,
    account_checks,
    read_account,
)
from connector.destinations.google_ads.ads_api import ads_client
from connector.mapping.rules import Mapping
from connector.settings import GoogleAdsSettings
from connector_sandbox.google_ads_api import (
    EmulatedAction,
    EmulatedCustomer,
    GoogleAdsApiEmulator,
)
from connector_sandbox.tls import sandbox_ca

READY = "1234567890"  # everything in order
UNREADY = "5550001111"  # terms not accepted, enhanced conversions off, USD
ACTIONS = [
    EmulatedAction(700000001, "MQL"),
    EmulatedAction(700000002, "Old SQL", status="REMOVED"),
    EmulatedAction(700000003, "Hidden opportunity", status="HIDDEN"),
    EmulatedAction(700000004, "Website purchase", type="WEBPAGE"),
    EmulatedAction(700000005, "Calls", type="UPLOAD_CALLS"),
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[GoogleAdsApiEmulator]:
    customers = [
        EmulatedCustomer(READY),
        EmulatedCustomer(
            UNREADY,
            time_zone="America/New_York",
            currency_code="USD",
            accepted_customer_data_terms=False,
            enhanced_conversions=False,
        ),
    ]
    with GoogleAdsApiEmulator(customers, ACTIONS) as emulator:
        yield emulator


def settings(
    emulator: GoogleAdsApiEmulator, customer: str = READY, **overrides: Any
) -> GoogleAdsSettings:
    values: dict[str, Any] = {
        "operating_account_id": customer,
        "api_endpoint": emulator.endpoint,
        "api_ca_bundle": sandbox_ca().bundle_path,
        "anonymous_credentials": True,
    }
    return GoogleAdsSettings(**(values | overrides))


def mapping(*action_ids: str, email: str | None = "Email", phone: str | None = None) -> Mapping:
    stages = {
        f"S{i}": {"stage": "mql", "google_ads": {"conversion_action": a}}
        for i, a in enumerate(action_ids)
    }
    return Mapping.model_validate(
        {
            "version": 1,
            "source": {"fields": {"email": email, "phone": phone, "gclid": "GCLID__c"}},
            "default_currency": "EUR",
            "stages": stages,
        }
    )


def by_name(checks: list[AccountCheck]) -> dict[str, AccountCheck]:
    return {c.name: c for c in checks}


def test_a_ready_account_passes_every_line(emulator: GoogleAdsApiEmulator) -> None:
    checks = account_checks(settings(emulator), expected(mapping("700000001")))
    assert [(c.name, c.status) for c in checks] == [
        ("google_ads developer token", "ok"),
        ("google_ads account", "ok"),
        ("google_ads customer data terms", "ok"),
        ("google_ads enhanced conversions for leads", "ok"),
        ("google_ads conversion action 700000001", "ok"),
    ]
    assert checks[1].detail == f"customer {READY}: time zone Europe/Berlin, currency EUR"
    assert "'MQL' (UPLOAD_CLICKS, ENABLED)" in checks[4].detail
    assert {"UPLOAD_CLICKS"} == IMPORTABLE_TYPES


def test_each_conversion_action_problem_says_what_to_do(emulator: GoogleAdsApiEmulator) -> None:
    ids = ("700000002", "700000003", "700000004", "700000005", "700000404")
    emulator.reset()
    checks = by_name(account_checks(settings(emulator), expected(mapping(*ids))))
    lines = {i: checks[f"google_ads conversion action {i}"] for i in ids}
    assert {i: c.status for i, c in lines.items()} == dict.fromkeys(ids, "fail")
    assert "removed from customer" in lines["700000002"].detail
    assert "HIDDEN" in lines["700000003"].detail and "enable it" in lines["700000003"].detail
    assert "website tag" in lines["700000004"].detail
    assert "phone calls" in lines["700000005"].detail
    assert all("UPLOAD_CLICKS" in lines[i].detail for i in ("700000004", "700000005"))
    assert "not found in customer" in lines["700000404"].detail
    # One query for the customer, one for all the mapped actions.
    assert [q.rsplit(" FROM ", 1)[1].split()[0] for q in emulator.queries] == [
        "customer",
        "conversion_action",
    ]


def test_an_unready_account_fails_terms_and_warns_on_currency_and_enhanced_conversions(
    emulator: GoogleAdsApiEmulator,
) -> None:
    checks = by_name(account_checks(settings(emulator, UNREADY), expected(mapping("700000001"))))
    account = checks["google_ads account"]
    assert account.status == "warn" and "currency USD" in account.detail
    assert "default_currency is EUR" in account.detail and "America/New_York" in account.detail
    terms = checks["google_ads customer data terms"]
    assert terms.status == "fail" and "Customer data terms" in terms.detail
    enhanced = checks["google_ads enhanced conversions for leads"]
    assert enhanced.status == "warn" and "turn on" in enhanced.detail


def test_without_hashed_identifiers_terms_and_enhanced_conversions_are_not_needed(
    emulator: GoogleAdsApiEmulator,
) -> None:
    no_pii = mapping("700000001", email=None, phone=None)
    checks = by_name(account_checks(settings(emulator, UNREADY), expected(no_pii)))
    assert checks["google_ads customer data terms"].status == "ok"
    assert checks["google_ads enhanced conversions for leads"].status == "ok"
    assert "not needed" in checks["google_ads customer data terms"].detail


@pytest.mark.parametrize("upload_api", ["datamanager", "ads_api"])
def test_the_account_is_read_without_a_developer_token(
    emulator: GoogleAdsApiEmulator, upload_api: str
) -> None:
    m = mapping("700000001")
    checks = by_name(account_checks(settings(emulator, upload_api=upload_api), expected(m)))
    assert checks["google_ads account"].status == "ok"
    assert checks["google_ads conversion action 700000001"].status == "ok"
    assert all("developer-token" not in headers for headers in emulator.metadata)
    assert checks["google_ads developer token"].status == "ok"
    assert "none needed" in checks["google_ads developer token"].detail
    assert account_checks(settings(emulator, operating_account_id=""), expected(m)) == []


def test_a_leftover_developer_token_is_a_warning_to_remove_it(
    emulator: GoogleAdsApiEmulator,
) -> None:
    leftover = settings(emulator, developer_token=SecretStr("old-token"))
    checks = by_name(account_checks(leftover, expected(mapping("700000001"))))
    line = checks["google_ads developer token"]
    assert line.status == "warn" and "CONNECTOR_GOOGLE_ADS__DEVELOPER_TOKEN" in line.detail
    assert "old-token" not in line.detail
    assert checks["google_ads account"].status == "ok"


def test_a_test_access_project_is_one_failed_line_saying_what_to_do(
    emulator: GoogleAdsApiEmulator,
) -> None:
    emulator.production_access = False
    try:
        _token, line = account_checks(settings(emulator), expected(mapping("700000001")))
    finally:
        emulator.production_access = True
    assert line.status == "fail" and "CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION" in line.detail
    assert "Google Ads API Center" in line.detail


def test_an_unreadable_account_is_one_failed_line(emulator: GoogleAdsApiEmulator) -> None:
    token, line = account_checks(settings(emulator, "9999999999"), expected(mapping("700000001")))
    assert (token.name, token.status) == ("google_ads developer token", "ok")
    assert line.status == "fail" and "USER_PERMISSION_DENIED" in line.detail
    assert "no developer token is needed" in line.detail


def test_read_account_selects_only_v26_fields(emulator: GoogleAdsApiEmulator) -> None:
    service = ads_client(settings(emulator)).get_service("GoogleAdsService")
    try:
        account = read_account(service, UNREADY)
    finally:
        service.transport.close()
    assert (account.time_zone, account.currency_code) == ("America/New_York", "USD")
    assert not account.accepted_customer_data_terms and account.enhanced_conversions == "OFF"
    assert "enhanced_conversions_for_leads_enabled" not in ACCOUNT_QUERY  # v25 and older only
