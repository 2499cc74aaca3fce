"""The legacy Google Ads API path: the real GoogleAdsClient over TLS against the emulator."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.core import Delivery, Outcome, Status
from connector.destinations.google_ads.actions import gaql_string
from connector.destinations.google_ads.errors import CLICK_NOT_FOUND
from connector.destinations.google_ads.legacy import (
    CONVERSION_NOT_DELIVERED,
    GoogleAdsApiDestination,
    conversion_date_time,
)
from connector.errors import DestinationError
from connector.settings import GoogleAdsSettings
from connector_sandbox.google_ads_api import (
    EmulatedAction,
    EmulatedCustomer,
    GoogleAdsApiEmulator,
    resource_exhausted_fault,
    unavailable_fault,
)
from connector_sandbox.tls import sandbox_ca
from tests.destinations import deliveries
from tests.destinations.deliveries import EMAIL_HASH, NOW

CUSTOMER = "1234567890"  # Europe/Berlin
NEW_YORK = "5550001111"
NO_ZONE = "5550002222"  # a time zone this machine does not know
BERLIN = ZoneInfo("Europe/Berlin")
WON = "700000003"
ODD_NAME = "Won 'big' deal \\ \"Q4\""
PHONE_HASH = hashlib.sha256(b"+4962153399982").hexdigest()


@pytest.fixture(scope="module")
def _shared() -> Iterator[GoogleAdsApiEmulator]:
    actions = [EmulatedAction(int(WON), "Won deal"), EmulatedAction(700000009, ODD_NAME)]
    customers = [
        EmulatedCustomer(CUSTOMER),
        EmulatedCustomer(NEW_YORK, time_zone="America/New_York", currency_code="USD"),
        EmulatedCustomer(NO_ZONE, time_zone="Mars/Olympus_Mons"),
    ]
    with GoogleAdsApiEmulator(customers, actions) as emulator:
        yield emulator


@pytest.fixture
def emulator(_shared: GoogleAdsApiEmulator) -> GoogleAdsApiEmulator:
    _shared.reset()
    return _shared


def make_destination(
    emulator: GoogleAdsApiEmulator, sleeps: list[float], customer: str = CUSTOMER
) -> GoogleAdsApiDestination:
    settings = GoogleAdsSettings(
        operating_account_id=customer,
        api_endpoint=emulator.endpoint,
        api_ca_bundle=sandbox_ca().bundle_path,
        anonymous_credentials=True,
        upload_api="ads_api",
    )
    return GoogleAdsApiDestination(settings, sleep=sleeps.append)


@pytest.fixture
def destination(
    emulator: GoogleAdsApiEmulator, sleeps: list[float]
) -> Iterator[GoogleAdsApiDestination]:
    dest = make_destination(emulator, sleeps)
    yield dest
    dest.close()


def won(n: int, *, target: str = WON, **kwargs: Any) -> Delivery:
    return deliveries.won(n, target=target, **{"phone_sha256": PHONE_HASH, **kwargs})


def restated(n: int, value: float, *, delivery_id: int | None = None) -> Delivery:
    """The won deal of lead `n` with a new amount: same order id, a RESTATEMENT."""
    return deliveries.restated(n, value, target=WON, delivery_id=delivery_id)


def retracted(n: int, *, delivery_id: int | None = None) -> Delivery:
    """Lead `n`'s won deal reopened: a RETRACTION of its won conversion, no value."""
    return deliveries.retracted(n, target=WON, delivery_id=delivery_id)


def by_id(outcomes: list[Outcome]) -> dict[int, Outcome]:
    return {o.delivery_id: o for o in outcomes}


def test_every_eligible_won_deal_arrives_once_with_value_currency_and_time(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(n) for n in range(1, 6)]
    outcomes = destination.deliver(batch)
    assert {o.status for o in outcomes} == {Status.DELIVERED} and len(outcomes) == 5
    assert all(o.request_id and o.request_id.startswith("job:") for o in outcomes)
    stored = {c.order_id: c for c in emulator.conversions}
    assert sorted(stored) == sorted(d.change.transaction_id for d in batch)
    first = stored[batch[0].change.transaction_id]
    assert (first.value, first.currency) == (1000.0, "EUR")
    # In the account's time zone (Europe/Berlin), with its offset written out.
    local = (NOW - timedelta(days=2)).astimezone(BERLIN)
    offset = "+02:00" if local.utcoffset() == timedelta(hours=2) else "+01:00"
    assert first.conversion_date_time == local.strftime("%Y-%m-%d %H:%M:%S") + offset
    assert first.conversion_action == f"customers/{CUSTOMER}/conversionActions/{WON}"
    assert first.hashed_identifiers == [EMAIL_HASH, PHONE_HASH]
    (request,) = emulator.upload_requests
    assert request.partial_failure and not request.validate_only
    sent = request.conversions[0]
    assert sent.consent.ad_user_data.name == "GRANTED"
    assert not sent.consent.ad_personalization  # not accepted by this API


def test_a_resend_counts_as_delivered_not_as_a_second_conversion(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(1), won(2)]
    destination.deliver(batch)
    again = destination.deliver(batch)
    assert [o.status for o in again] == [Status.DELIVERED, Status.DELIVERED]
    assert len(emulator.conversions) == 2


def test_one_bad_row_does_not_hold_back_the_others(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(n) for n in range(1, 6)]
    batch[2] = won(3, target="700000404")  # an id the account does not have
    outcomes = by_id(destination.deliver(batch))
    assert (
        outcomes[3].status == Status.REJECTED and outcomes[3].reason == "NO_CONVERSION_ACTION_FOUND"
    )
    assert "conversion_upload_error.NO_CONVERSION_ACTION_FOUND" in (outcomes[3].error or "")
    assert [outcomes[n].status for n in (1, 2, 4, 5)] == [Status.DELIVERED] * 4
    assert len(emulator.conversions) == 4


def test_click_not_found_is_not_attributable_and_too_recent_stays_pending(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(1), won(2), won(3)]
    emulator.mark_clicks(
        not_found=[batch[0].change.attributes["gclid"]],
        too_recent=[batch[1].change.attributes["gclid"]],
    )
    outcomes = by_id(destination.deliver(batch))
    assert (outcomes[1].status, outcomes[1].reason) == (Status.REJECTED, CLICK_NOT_FOUND)
    assert outcomes[2].status == Status.PENDING and "TOO_RECENT_EVENT" in (outcomes[2].error or "")
    # Google's advice: try again in 6 hours; the ledger keeps the row until then.
    not_before = outcomes[2].not_before
    assert not_before is not None
    assert timedelta(hours=5, minutes=59) < not_before - datetime.now(UTC) <= timedelta(hours=6)
    assert outcomes[3].status == Status.DELIVERED


def test_local_checks_set_rows_aside_before_sending(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    outcomes = destination.deliver([won(1, at=NOW - timedelta(days=120)), won(2)])
    assert by_id(outcomes)[1].reason == "expired_event"
    (request,) = emulator.upload_requests
    assert len(request.conversions) == 1


def test_identifier_only_rows_send_hashes_and_never_clear_text(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    outcomes = destination.deliver(
        [won(1, gclid=None), won(2, gclid=None, gbraid="gbraid-0123456789")]
    )
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.DELIVERED]
    stored = {c.order_id: c for c in emulator.conversions}
    assert stored["00Q000000000001:won"].click == ""
    assert stored["00Q000000000002:won"].click == "gbraid:gbraid-0123456789"
    for body in emulator.received_bytes:
        assert b"jane.doe" not in body and b"example.com" not in body and b"+49" not in body


def test_conversion_action_names_resolve_once_with_escaped_quotes(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(1, target=ODD_NAME), won(2, target="No such action"), won(3)]
    first = by_id(destination.deliver(batch))
    second = by_id(destination.deliver([won(4, target=ODD_NAME)]))
    assert first[1].status == Status.DELIVERED and second[4].status == Status.DELIVERED
    assert (first[2].status, first[2].reason) == (Status.REJECTED, "unknown_conversion_action")
    names = [q for q in emulator.queries if "FROM conversion_action" in q]
    (query,) = names  # one lookup per run, then the cache
    assert gaql_string(ODD_NAME) in query
    assert len([q for q in emulator.queries if "FROM customer" in q]) == 1  # the time zone
    assert {c.conversion_action for c in emulator.conversions} == {
        f"customers/{CUSTOMER}/conversionActions/700000009",
        f"customers/{CUSTOMER}/conversionActions/{WON}",
    }


def test_gaql_string_escapes_backslashes_then_quotes() -> None:
    assert gaql_string('It\'s \\ "x"') == "'It\\'s \\\\ \"x\"'"
    with pytest.raises(ValueError, match="line breaks"):
        gaql_string("a\nb")


def test_transient_failures_are_retried_with_googles_delay(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination, sleeps: list[float]
) -> None:
    upload = "UploadClickConversions"
    emulator.push_fault(replace(resource_exhausted_fault(retry_delay_seconds=7), method=upload))
    emulator.push_fault(replace(unavailable_fault(), method=upload))
    outcomes = destination.deliver([won(1)])
    assert [o.status for o in outcomes] == [Status.DELIVERED]
    assert [c for c in emulator.calls if c != "Search"] == [upload] * 3
    assert len(sleeps) == 2 and sleeps[0] >= 7


def test_a_project_not_allowlisted_stops_the_destination_with_its_fix(
    emulator: GoogleAdsApiEmulator,
    destination: GoogleAdsApiDestination,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.allowlisted = False
    try:
        with pytest.raises(DestinationError) as stopped:
            destination.deliver([won(1), won(2)])
    finally:
        emulator.allowlisted = True
    error = str(stopped.value)
    assert "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE" in error
    assert "CONNECTOR_GOOGLE_ADS__UPLOAD_API=datamanager" in error
    assert emulator.conversions == []
    assert emulator.calls.count("UploadClickConversions") == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [error]  # logged once, with the fix


def test_a_test_access_project_stops_the_destination_with_what_to_do(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    emulator.production_access = False
    try:
        with pytest.raises(DestinationError) as stopped:
            destination.deliver([won(1)])
    finally:
        emulator.production_access = True
    assert "CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION" in str(stopped.value)
    assert "Google Ads API Center" in str(stopped.value)


def test_validate_only_and_payloads_store_nothing(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    outcomes = destination.deliver([won(1)], validate_only=True)
    assert [o.status for o in outcomes] == [Status.DELIVERED]
    (payload,) = destination.payloads([won(1), won(2)])
    assert payload["partialFailure"] and len(payload["conversions"]) == 2
    assert payload["conversions"][0]["orderId"] == "00Q000000000001:won"
    assert emulator.conversions == [] and len(emulator.upload_requests) == 1


def test_validate_only_adjustments_of_a_conversion_in_the_batch_are_not_sent(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    outcomes = destination.deliver([won(1), restated(1, 1500.0)], validate_only=True)
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.DELIVERED]
    # The validated conversion does not exist at Google: nothing to check the restatement against.
    assert emulator.adjustment_requests == [] and emulator.conversions == []
    conversions, adjustments = destination.payloads([won(1), restated(1, 1500.0), retracted(2)])
    assert conversions["conversions"][0]["orderId"] == "00Q000000000001:won"
    kinds = [a["adjustmentType"] for a in adjustments["conversionAdjustments"]]
    assert kinds == ["RESTATEMENT", "RETRACTION"] and adjustments["partialFailure"]


# --------------------------------------------------------------------------- adjustments


def test_a_restated_amount_is_a_restatement_not_a_second_conversion(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    destination.deliver([won(1), won(2)])
    outcomes = destination.deliver([restated(1, 1500.0)])
    assert [o.status for o in outcomes] == [Status.DELIVERED]
    assert outcomes[0].request_id and outcomes[0].request_id.startswith("job:")
    (request,) = emulator.adjustment_requests
    (sent,) = request.conversion_adjustments
    assert (sent.order_id, sent.adjustment_type.name) == ("00Q000000000001:won", "RESTATEMENT")
    assert not sent.gclid_date_time_pair.gclid  # order id or the pair, never both
    assert (sent.restatement_value.adjusted_value, sent.restatement_value.currency_code) == (
        1500.0,
        "EUR",
    )
    assert len(emulator.upload_requests) == 1  # the first delivery only
    stored = emulator.conversion("00Q000000000001:won")
    assert stored is not None and (stored.value, stored.adjustments) == (1500.0, ["RESTATEMENT"])
    assert len(emulator.conversions) == 2


def test_a_reopened_won_deal_is_a_retraction_by_order_id(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    destination.deliver([won(1)])
    outcomes = destination.deliver([retracted(1)])
    again = destination.deliver([retracted(1, delivery_id=301)])
    assert [o.status for o in outcomes + again] == [
        Status.DELIVERED,
        Status.DELIVERED,
    ]  # already retracted
    stored = emulator.conversion("00Q000000000001:won")
    assert stored is not None and stored.retracted
    sent = emulator.adjustment_requests[0].conversion_adjustments[0]
    assert sent.adjustment_type.name == "RETRACTION" and "restatement_value" not in sent


def test_adjustment_uploads_retry_transient_failures(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination, sleeps: list[float]
) -> None:
    destination.deliver([won(1)])
    method = "UploadConversionAdjustments"
    emulator.push_fault(replace(resource_exhausted_fault(retry_delay_seconds=3), method=method))
    (outcome,) = destination.deliver([retracted(1)])
    assert outcome.status == Status.DELIVERED and sleeps and sleeps[-1] >= 3
    assert emulator.calls.count(method) == 2


def test_an_adjustment_of_an_unknown_order_is_rejected_with_googles_code(
    destination: GoogleAdsApiDestination,
) -> None:
    (outcome,) = destination.deliver([retracted(9)])
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "CONVERSION_NOT_FOUND")
    assert "conversion_adjustment_upload_error.CONVERSION_NOT_FOUND" in (outcome.error or "")


def test_adjustment_times_are_crm_times_in_the_account_zone_and_strictly_increasing(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    # Won, restated twice and reopened in one batch, then restated again within the second.
    batch = [won(1), restated(1, 1200.0), restated(1, 1300.0, delivery_id=102), retracted(2)]
    destination.deliver([won(2)])
    first = destination.deliver(batch)
    assert [o.status for o in first] == [Status.DELIVERED] * 4
    destination.deliver([won(3)])
    second = destination.deliver([restated(3, 10.0), restated(3, 20.0, delivery_id=203)])
    assert [o.status for o in second] == [Status.DELIVERED, Status.DELIVERED]
    times = [
        datetime.strptime(a.adjustment_date_time, "%Y-%m-%d %H:%M:%S%z")
        for request in emulator.adjustment_requests
        for a in request.conversion_adjustments
        if a.order_id == "00Q000000000001:won"
    ]
    assert times == sorted(set(times)) and len(times) == 2
    # The CRM change time; two of one order in the same second: the later one a second on.
    restated_at = restated(1, 0.0).change.changed_at
    assert times == [restated_at, restated_at + timedelta(seconds=1)]
    offset = BERLIN.utcoffset(restated_at.replace(tzinfo=None))
    assert all(t.utcoffset() == offset for t in times)
    stored = emulator.conversion("00Q000000000001:won")
    assert stored is not None and stored.value == 1300.0  # the later restatement wins
    assert emulator.conversion("00Q000000000003:won").value == 20.0  # type: ignore[union-attr]


def test_an_adjustment_is_never_at_or_before_its_conversion_nor_the_one_before(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    """A restatement stamped in the CRM no later than the win (clock skew, a same-second
    save) still goes a second after it; the next one after that."""
    won_at = NOW - timedelta(hours=3)
    destination.deliver([won(4, at=won_at)])
    early = replace(restated(4, 10.0), change=replace(restated(4, 0.0).change, changed_at=won_at))
    (first,) = destination.deliver([early])
    (second,) = destination.deliver([replace(early, id=999, value=20.0)])
    assert (first.status, second.status) == (Status.DELIVERED, Status.DELIVERED)
    sent = [
        a.adjustment_date_time
        for r in emulator.adjustment_requests
        for a in r.conversion_adjustments
    ]
    assert sent == [
        conversion_date_time(won_at + timedelta(seconds=1), BERLIN),
        conversion_date_time(won_at + timedelta(seconds=2), BERLIN),
    ]
    stored = emulator.conversion("00Q000000000004:won")
    assert stored is not None and stored.value == 20.0


def test_an_adjustment_waits_for_its_conversion_in_the_same_batch(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    emulator.mark_clicks(
        too_recent=[won(1).change.attributes["gclid"]],
        not_found=[won(2).change.attributes["gclid"]],
    )
    batch = [won(1), restated(1, 1500.0), won(2), retracted(2)]
    outcomes = by_id(destination.deliver(batch))
    assert outcomes[1].status == Status.PENDING and outcomes[101].status == Status.PENDING
    assert outcomes[101].not_before == outcomes[1].not_before is not None
    assert (outcomes[202].status, outcomes[202].reason) == (
        Status.REJECTED,
        CONVERSION_NOT_DELIVERED,
    )
    assert emulator.adjustment_requests == []


def test_too_recent_conversion_for_an_adjustment_is_retried_in_6_hours(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    destination.deliver([won(1)])
    emulator.mark_orders(too_recent=["00Q000000000001:won"])
    (outcome,) = destination.deliver([restated(1, 1500.0)])
    assert outcome.status == Status.PENDING and "TOO_RECENT_CONVERSION" in (outcome.error or "")
    assert outcome.not_before is not None and outcome.not_before > datetime.now(UTC)


def test_restatement_without_an_amount_is_set_aside_locally(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    d = restated(1, 1.0)
    no_amount = Delivery(d.id, d.destination, d.target, None, None, 0, d.change)
    (outcome,) = destination.deliver([no_amount])
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "missing_amount")
    assert emulator.adjustment_requests == []


# --------------------------------------------------------------------------- time zones


def test_times_are_written_in_each_accounts_own_zone(
    emulator: GoogleAdsApiEmulator, sleeps: list[float]
) -> None:
    dest = make_destination(emulator, sleeps, NEW_YORK)
    try:
        outcomes = dest.deliver([won(1)])
    finally:
        dest.close()
    assert outcomes[0].status == Status.DELIVERED
    (stored,) = emulator.conversions
    changed_at = won(1).change.changed_at
    expected = conversion_date_time(changed_at, ZoneInfo("America/New_York"))
    assert stored.conversion_date_time == expected and expected[-6:] in ("-05:00", "-04:00")


def test_an_unreadable_time_zone_falls_back_to_utc_and_says_so(
    emulator: GoogleAdsApiEmulator, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    dest = make_destination(emulator, sleeps, NO_ZONE)
    try:
        with caplog.at_level(logging.WARNING, logger="connector.google_ads"):
            outcomes = dest.deliver([won(1), won(2)])
    finally:
        dest.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.DELIVERED]
    assert all(c.conversion_date_time.endswith("+00:00") for c in emulator.conversions)
    assert "Mars/Olympus_Mons" in caplog.text and "UTC" in caplog.text


def test_conversion_date_time_writes_the_offset_of_the_zone() -> None:
    at = datetime(2026, 11, 20, 15, 3, 11, tzinfo=timezone(timedelta(hours=1)))
    assert conversion_date_time(at) == "2026-11-20 14:03:11+00:00"
    assert conversion_date_time(datetime(2026, 11, 20, 14, 3, 11)) == "2026-11-20 14:03:11+00:00"
    assert conversion_date_time(at, BERLIN) == "2026-11-20 15:03:11+01:00"
    assert conversion_date_time(at, ZoneInfo("America/St_Johns")) == "2026-11-20 10:33:11-03:30"
    summer = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
    assert conversion_date_time(summer, BERLIN) == "2026-07-01 14:00:00+02:00"
