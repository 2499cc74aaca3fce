"""GA4 Measurement Protocol sender: local validation, the 72-hour rule, one request per client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.core import Delivery, StageChange, Status, utcnow
from connector.destinations.ga4.events import GA4Extras, event_problem
from connector.destinations.ga4.measurement_protocol import GA4Destination
from connector.mapping.rules import load_mapping
from connector.settings import GA4Settings
from connector_sandbox.ga4 import GA4Emulator, slow_fault
from connector_sandbox.tls import sandbox_ca
from tests.conftest import MAPPING


@pytest.fixture(scope="module")
def emulator() -> Iterator[GA4Emulator]:
    with GA4Emulator(measurement_id="G-TEST000001", api_secret="s3cret-value") as ga4:
        yield ga4


@pytest.fixture
def destination(emulator: GA4Emulator) -> Iterator[GA4Destination]:
    emulator.reset()
    settings = GA4Settings(
        measurement_id="G-TEST000001",
        api_secret="s3cret-value",  # type: ignore[arg-type]
        mp_base_url=emulator.url,
        ca_bundle=Path(sandbox_ca().bundle_path),
    )
    ga4 = GA4Destination(settings, too_old=load_mapping(MAPPING).ga4_too_old)
    yield ga4
    ga4.close()


def delivery(
    i: int, *, hours_ago: float = 1, event: str = "qualify_lead", **attrs: Any
) -> Delivery:
    change = StageChange(
        lead_id="00Q000000000001AAA",
        crm_status="MQL",
        stage="mql",
        changed_at=utcnow() - timedelta(hours=hours_ago),
        source_record_id=f"017{i}",
        lead_created_at=None,
        attributes={"ga_client_id": "111.222", **attrs},
    )
    return Delivery(i, "ga4", event, 50.0, "EUR", 0, change)


def test_four_changes_of_one_lead_go_in_one_request_in_time_order(
    destination: GA4Destination, emulator: GA4Emulator
) -> None:
    batch = [delivery(i, hours_ago=10 - i) for i in range(4)][::-1]
    outcomes = destination.deliver(batch)
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    assert emulator.requests == 1
    (body,) = emulator.received_bodies
    times = [e["timestamp_micros"] for e in json.loads(body)["events"]]
    assert len(times) == 4 and times == sorted(times)


def test_a_change_older_than_72_hours_is_skipped_and_never_sent(
    destination: GA4Destination, emulator: GA4Emulator
) -> None:
    (outcome,) = destination.deliver([delivery(1, hours_ago=73)])
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, "too_old_for_ga4")
    assert emulator.requests == 0


def test_a_pii_looking_param_is_refused_locally(
    destination: GA4Destination, emulator: GA4Emulator
) -> None:
    (outcome,) = destination.deliver([delivery(1, lead_source="jane.doe@example.com")])
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "pii_in_param: lead_source")
    assert emulator.received_bodies == []


@pytest.mark.parametrize(
    ("name", "params", "reason"),
    [
        ("1lead", {}, "invalid_event_name"),
        ("x" * 41, {}, "invalid_event_name"),
        ("session_start", {}, "reserved_event_name"),
        ("google_lead", {}, "reserved_event_name"),
        ("qualify_lead", {f"p{i}": i for i in range(26)}, "too_many_params"),
        ("qualify_lead", {"ga_thing": 1}, "reserved_param_name"),
        ("qualify_lead", {"bad-name": 1}, "invalid_param_name"),
        ("qualify_lead", {"note": "x" * 101}, "param_value_too_long"),
        ("qualify_lead", {"value": 5}, "value_without_currency"),
        ("qualify_lead", {"phone": "+49 621 533 999 82"}, "pii_in_param"),
    ],
)
def test_local_validation_names_the_rule(name: str, params: dict[str, Any], reason: str) -> None:
    problem = event_problem(name, params)
    assert problem is not None and problem.startswith(reason)


def test_a_valid_event_passes_local_validation() -> None:
    assert (
        event_problem("qualify_lead", {"value": 50.0, "currency": "EUR", "lead_id": "00Q1"}) is None
    )


def test_dry_run_uses_the_debug_endpoint_and_records_nothing(
    destination: GA4Destination, emulator: GA4Emulator
) -> None:
    outcomes = destination.deliver([delivery(1)], validate_only=True)
    assert outcomes[0].status == Status.DELIVERED
    assert emulator.debug_requests == 1 and emulator.requests == 0 and emulator.accepted == []


def test_hashed_user_data_only_when_the_mapping_asks_and_consent_is_granted(
    emulator: GA4Emulator, destination: GA4Destination
) -> None:
    settings = GA4Settings(
        measurement_id="G-TEST000001",
        api_secret="s3cret-value",  # type: ignore[arg-type]
        mp_base_url=emulator.url,
        ca_bundle=Path(sandbox_ca().bundle_path),
    )
    opted_in = GA4Destination(settings, extras=GA4Extras(user_data=True, lead_id_as_user_id=True))
    digest = "a" * 64
    try:
        opted_in.deliver([delivery(1, email_sha256=digest, consent_ad_user_data=True)])
        opted_in.deliver([delivery(2, email_sha256=digest, consent_ad_user_data=False)])
        destination.deliver([delivery(3, email_sha256=digest, consent_ad_user_data=True)])
    finally:
        opted_in.close()
    granted, denied, default = (json.loads(b) for b in emulator.received_bodies)
    assert granted["user_data"] == {"sha256_email_address": [digest]}
    assert granted["user_id"] == "00Q000000000001AAA"
    assert "user_data" not in denied and "user_data" not in default and "user_id" not in default
    assert "@" not in "".join(emulator.received_bodies)


def test_leads_of_one_browser_with_other_consent_never_share_a_request(
    destination: GA4Destination, emulator: GA4Emulator
) -> None:
    # Consent is request level in MP: a denied lead must not go under a granted one's.
    granted = delivery(1, consent_ad_user_data=True, consent_ad_personalization=True)
    denied = delivery(2, consent_ad_user_data=False, consent_ad_personalization=False)
    denied = replace(denied, change=replace(denied.change, lead_id="00Q000000000002AAA"))
    unknown = delivery(3)
    outcomes = destination.deliver([granted, denied, unknown])
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    sent = [json.loads(b) for b in emulator.received_bodies]
    consents = sorted(json.dumps(b.get("consent"), sort_keys=True) for b in sent)
    assert [len(b["events"]) for b in sent] == [1, 1, 1]
    assert consents == [
        "null",
        '{"ad_personalization": "DENIED", "ad_user_data": "DENIED"}',
        '{"ad_personalization": "GRANTED", "ad_user_data": "GRANTED"}',
    ]


def test_a_recorded_cookie_form_client_id_is_sent_in_the_recommended_form(
    destination: GA4Destination, emulator: GA4Emulator
) -> None:
    """Rows recorded by an older connector: client ids go in the right form, restatements
    not at all."""
    cookie = delivery(1, ga_client_id="GA1.1.123456789.1700000000")
    bad = delivery(2, ga_client_id="not a client id")
    restated = delivery(3, event="close_convert_lead")
    restated = Delivery(
        3, "ga4", restated.target, 9.0, "EUR", 0, replace(restated.change, restatement=True)
    )
    outcomes = {o.delivery_id: o for o in destination.deliver([cookie, bad, restated])}
    assert (outcomes[3].status, outcomes[3].reason) == (Status.SKIPPED, "stage_already_reached")
    assert outcomes[1].status == Status.DELIVERED
    assert (outcomes[2].status, outcomes[2].reason) == (Status.SKIPPED, "invalid_ga_client_id")
    assert [(e["client_id"], e.get("warnings")) for e in emulator.accepted] == [
        ("123456789.1700000000", None)
    ]


def test_a_request_that_times_out_after_sending_stays_pending_as_maybe_counted(
    emulator: GA4Emulator,
) -> None:
    """No answer within the timeout: GA4 may have counted the events, so the rows are not
    resent blindly (the run's crash policy decides), and the error says why."""
    emulator.reset()
    emulator.faults.push(slow_fault(1.0))
    settings = GA4Settings(
        measurement_id="G-TEST000001",
        api_secret="s3cret-value",  # type: ignore[arg-type]
        mp_base_url=emulator.url,
        ca_bundle=Path(sandbox_ca().bundle_path),
        timeout_seconds=0.2,
    )
    impatient = GA4Destination(settings, too_old=load_mapping(MAPPING).ga4_too_old)
    try:
        (outcome,) = impatient.deliver([delivery(1)])
    finally:
        impatient.close()
    assert (outcome.status, outcome.maybe_sent) == (Status.PENDING, True)
    assert "ReadTimeout" in str(outcome.error) and "s3cret" not in str(outcome.error)


def test_requests_that_return_together_settle_in_one_transaction(
    destination: GA4Destination, emulator: GA4Emulator
) -> None:
    """One commit per request cost more CPU than the request: a window's returns share one."""
    batch = [delivery(i, ga_client_id=f"{i}.222") for i in range(30)]  # 30 clients: 30 requests
    settled: list[list[int]] = []
    outcomes = destination.deliver(
        batch, settle=lambda o: settled.append([x.delivery_id for x in o])
    )
    assert emulator.requests == 30 and {o.status for o in outcomes} == {Status.DELIVERED}
    calls = [ids for ids in settled if ids]
    assert sorted(i for ids in calls for i in ids) == list(range(30))  # each settled once
    assert len(calls) < 30
