"""GA4 through Data Manager: the real client against the emulator, the same local rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from connector.core import Delivery, StageChange, Status, utcnow
from connector.destinations.ga4.datamanager import GA4DataManagerDestination
from connector.destinations.ga4.events import GA4Extras
from connector.errors import ConfigError
from connector.ledger import Ledger
from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector.report import Period, build_report, load
from connector.settings import GA4Settings, Settings
from connector.summary_view import print_summary
from connector_sandbox.datamanager import DataManagerEmulator
from connector_sandbox.dataset import sf_datetime
from connector_sandbox.stack import Sandbox
from connector_sandbox.tls import sandbox_ca
from tests.conftest import MAPPING

PROPERTY, STREAM = "123456789", "G-TEST000001"
DIGEST = "b" * 64


def make(emulator: DataManagerEmulator, **options: Any) -> GA4DataManagerDestination:
    settings = GA4Settings(
        measurement_id=STREAM,
        property_id=PROPERTY,
        upload_api="datamanager",
        datamanager_endpoint=emulator.endpoint,
        datamanager_ca_bundle=sandbox_ca().bundle_path,
        anonymous_credentials=True,
    )
    return GA4DataManagerDestination(settings, extras=GA4Extras(**options), sleep=lambda _: None)


@pytest.fixture
def ga4(emulator: DataManagerEmulator) -> Iterator[GA4DataManagerDestination]:
    destination = make(emulator)
    yield destination
    destination.close()


def delivery(
    i: int, *, hours_ago: float = 1, event: str = "qualify_lead", **attrs: Any
) -> Delivery:
    change = StageChange(
        lead_id=f"00Q{i:012d}",
        crm_status="MQL",
        stage="mql",
        changed_at=utcnow() - timedelta(hours=hours_ago),
        source_record_id=f"017{i}",
        lead_created_at=None,
        attributes={"ga_client_id": f"{i}.1700000000", "consent_ad_user_data": True, **attrs},
    )
    return Delivery(i, "ga4", event, 50.0, "EUR", 0, change)


def test_events_go_to_the_property_with_name_client_params_time_and_consent(
    ga4: GA4DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    outcomes = ga4.deliver([delivery(1), delivery(2, lead_source="Web")])
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    assert len({o.request_id for o in outcomes}) == 1 and outcomes[0].request_id
    first, second = emulator.ga4_events
    assert (first["property_id"], first["measurement_id"]) == (PROPERTY, STREAM)
    assert (first["event_name"], first["client_id"]) == ("qualify_lead", "1.1700000000")
    assert (first["conversion_value"], first["currency"]) == (50.0, "EUR")
    params = {p["parameter_name"]: p["value"] for p in second["additional_event_parameters"]}
    assert params == {"lead_id": "00Q000000000002", "lead_status": "MQL", "lead_source": "Web"}
    assert first["consent"]["ad_user_data"] == "CONSENT_GRANTED"
    assert "event_timestamp" in first and "transaction_id" not in first
    assert "user_id" not in first and "user_data" not in first  # off by default


def test_the_same_local_rules_and_the_72_hour_window(
    ga4: GA4DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    old, nameless, bad = delivery(1, hours_ago=73), delivery(2, ga_client_id=None), delivery(3)
    bad = Delivery(3, "ga4", "page_view", None, None, 0, bad.change)
    outcomes = {o.delivery_id: o for o in ga4.deliver([old, nameless, bad])}
    assert (outcomes[1].status, outcomes[1].reason) == (Status.SKIPPED, "too_old_for_ga4")
    assert (outcomes[2].status, outcomes[2].reason) == (Status.SKIPPED, "no_ga_client_id")
    assert (outcomes[3].status, outcomes[3].reason) == (
        Status.REJECTED,
        "reserved_event_name: page_view",
    )
    assert emulator.requests == 0


def test_a_rejected_request_is_split_to_set_only_the_bad_event_aside(
    ga4: GA4DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    # A currency our rules let through but Google does not know: the request is refused.
    batch = [delivery(i) for i in range(1, 5)]
    odd = Delivery(9, "ga4", "qualify_lead", 50.0, "XYZ", 0, delivery(9).change)
    outcomes = {o.delivery_id: o for o in ga4.deliver([*batch, odd])}
    assert {outcomes[i].status for i in range(1, 5)} == {Status.DELIVERED}
    assert outcomes[9].status == Status.REJECTED
    assert (outcomes[9].reason or "").startswith("ga4: INVALID_CURRENCY_CODE: events[0].currency")
    assert len(emulator.ga4_events) == 4 and emulator.rejected_requests >= 2


def test_hashed_user_data_and_user_id_only_as_the_mapping_says(
    emulator: DataManagerEmulator,
) -> None:
    ga4 = make(emulator, user_data=True, lead_id_as_user_id=True)
    try:
        ga4.deliver(
            [
                delivery(1, email_sha256=DIGEST),
                delivery(2, email_sha256=DIGEST, consent_ad_user_data=False),
            ]
        )
    finally:
        ga4.close()
    granted, denied = emulator.ga4_events
    assert granted["user_data"]["user_identifiers"] == [{"email_address": DIGEST}]
    assert granted["user_id"] == "00Q000000000001"
    assert "user_data" not in denied and denied["user_id"] == "00Q000000000002"


def test_field_warnings_are_stored_per_request_and_put_on_the_event(
    ga4: GA4DataManagerDestination, emulator: DataManagerEmulator, sqlite_url: str
) -> None:
    ledger = Ledger.open(sqlite_url)
    emulator.warn_client_ids = {"222.1700000000"}
    cookie = delivery(2, ga_client_id="222.1700000000")
    ga4.plan(ledger, [cookie])
    plain, warned = ga4.deliver([delivery(1), cookie])
    assert plain.warnings == () and warned.warnings == ("INVALID_CLIENT_ID client_id",)
    assert ledger.warnings.totals() == {"ga4": {"INVALID_CLIENT_ID client_id": 1}}


def test_validate_only_and_payloads_ingest_nothing(
    ga4: GA4DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    (outcome,) = ga4.deliver([delivery(1)], validate_only=True)
    assert outcome.status == Status.DELIVERED and outcome.request_id is None
    (payload,) = ga4.payloads([delivery(1), delivery(2)])
    destination = payload["destinations"][0]
    assert destination["operatingAccount"]["accountType"] == "GOOGLE_ANALYTICS_PROPERTY"
    assert payload["validateOnly"] and len(payload["events"]) == 2
    assert emulator.ga4_events == [] and emulator.validated_requests == 1


def test_request_status_is_checked_on_the_next_run(
    ga4: GA4DataManagerDestination, emulator: DataManagerEmulator, sqlite_url: str
) -> None:
    ledger = Ledger.open(sqlite_url)
    (outcome,) = ga4.deliver([delivery(1)])
    assert outcome.request_id
    ledger.requests.save("ga4", {outcome.request_id: 1})
    assert (ga4.check_requests(ledger) or {})["checked"] == 1
    emulator.processing_polls = 0
    totals = ga4.check_requests(ledger) or {}
    assert (totals["finished"], totals["processed"]) == (1, 1)


def sf_tables(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Two leads made MQL an hour ago, one with its client id in `_ga` cookie form (sent in
    the recommended form; the emulator is told to warn about that one)."""
    leads, history = [], []
    for n, client_id in ((1, "111.1700000000"), (2, "GA1.1.222.1700000000")):
        lead_id = f"00Q00000000000{n}AAA"
        leads.append(
            {
                "Id": lead_id,
                "CreatedDate": sf_datetime(now - timedelta(days=3)),
                "Status": "MQL",
                "GA_Client_ID__c": client_id,
                "Consent_Ad_User_Data__c": "Granted",
            }
        )
        history.append(
            {
                "LeadId": lead_id,
                "Field": "Status",
                "OldValue": "Open",
                "NewValue": "MQL",
                "CreatedDate": sf_datetime(now - timedelta(hours=1)),
            }
        )
    return {"Lead": leads, "LeadHistory": history}


def test_a_sync_to_ga4_through_data_manager_needs_no_api_secret_and_shows_warnings(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with Sandbox(sf_tables(now)) as box:
        box.datamanager.warn_client_ids = {"222.1700000000"}
        ga4 = {
            "upload_api": "datamanager",
            "api_secret": None,
            "property_id": PROPERTY,
            "datamanager_endpoint": box.datamanager.endpoint,
            "datamanager_ca_bundle": sandbox_ca().bundle_path,
            "anonymous_credentials": True,
        }
        settings = box.settings(url, MAPPING, ga4=ga4, google_ads={"operating_account_id": ""})
        summary = sync(settings, load_mapping(MAPPING), SyncOptions())
        assert box.ga4.requests == 0  # nothing through the Measurement Protocol
        events = box.datamanager.ga4_events
    tally = summary.as_dict()["destinations"]["ga4"]
    assert tally["delivered"] == 2 and len(events) == 2
    assert tally["field_warnings"] == {"INVALID_CLIENT_ID client_id": 1}
    console = Console(record=True, width=200)
    print_summary(summary, console)
    assert "ga4 field warnings" in console.export_text()
    # The changes are an hour old: yesterday's, just after midnight UTC.
    period = Period((now - timedelta(days=1)).date(), now.date())
    report = build_report(load(Ledger.open(url), period), currency="EUR")
    assert report.delivery["ga4"].field_warnings == {"INVALID_CLIENT_ID client_id": 1}


def test_the_data_manager_path_needs_the_property_and_no_api_secret() -> None:
    ga4 = {"measurement_id": STREAM, "upload_api": "datamanager"}
    base = {"salesforce": {"session_id": "x", "instance_url": "https://sf.example.com"}}
    with pytest.raises(ConfigError) as missing:
        Settings.model_validate({**base, "ga4": ga4}).require_for_sync()
    assert "CONNECTOR_GA4__PROPERTY_ID" in str(missing.value)
    assert "API_SECRET" not in str(missing.value)
    Settings.model_validate({**base, "ga4": {**ga4, "property_id": PROPERTY}}).require_for_sync()
