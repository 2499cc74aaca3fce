"""The emulator's `campaign` and `click_view` reports, read with the real GoogleAdsClient."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.auth.credentials import AnonymousCredentials

from connector_sandbox.google_ads_api import EmulatedCustomer, GoogleAdsApiEmulator
from connector_sandbox.google_ads_reporting import EmulatedCampaign

CUSTOMER = "1234567890"
TODAY = datetime.now(UTC).date()
D1, D2, OLD = TODAY - timedelta(days=3), TODAY - timedelta(days=2), TODAY - timedelta(days=95)
COSTS = "SELECT campaign.id, segments.date, metrics.cost_micros, metrics.clicks FROM campaign"


@pytest.fixture(scope="module")
def search() -> Iterator[Any]:
    with GoogleAdsApiEmulator([EmulatedCustomer(CUSTOMER)]) as emulator:
        emulator.reporting.add_campaign(
            EmulatedCampaign(7, "Brand", days={D1: (1_500_000, 3), D2: (2_000_000, 4)})
        )
        emulator.reporting.add_click("g-new", D1, 7)
        emulator.reporting.add_click("g-old", OLD, 7)
        client = GoogleAdsClient(
            credentials=AnonymousCredentials(),
            endpoint=emulator.endpoint,
            use_proto_plus=True,
            version="v26",
        )
        service = client.get_service("GoogleAdsService")

        def run(query: str) -> list[Any]:
            return list(service.search(customer_id=CUSTOMER, query=query))

        yield run


def failure(run: Any, query: str) -> str:
    with pytest.raises(GoogleAdsException) as raised:
        run(query)
    return str(raised.value.failure)


def test_campaign_cost_per_day_in_the_date_range(search: Any) -> None:
    rows = search(f"{COSTS} WHERE segments.date >= '{D2}' AND segments.date <= '{TODAY}'")
    assert [
        (r.campaign.id, r.segments.date, r.metrics.cost_micros, r.metrics.clicks) for r in rows
    ] == [(7, D2.isoformat(), 2_000_000, 4)]


def test_rows_by_day_need_a_date_range(search: Any) -> None:
    assert "EXPECTED_FILTERS_ON_DATE_RANGE" in failure(search, COSTS)


def test_click_view_is_one_day_per_query_and_keeps_90_days(search: Any) -> None:
    query = "SELECT click_view.gclid, campaign.id FROM click_view WHERE segments.date = '{}'"
    assert [(r.click_view.gclid, r.campaign.id) for r in search(query.format(D1))] == [("g-new", 7)]
    assert search(query.format(OLD)) == []  # beyond click_view's 90 days
    wide = "SELECT click_view.gclid FROM click_view WHERE segments.date >= '2026-01-01'"
    assert "DATE_RANGE_TOO_WIDE" in failure(search, wide)


def test_a_campaign_query_cannot_select_another_resource(search: Any) -> None:
    query = f"SELECT click_view.gclid FROM campaign WHERE segments.date = '{D1}'"
    assert "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE" in failure(search, query)
