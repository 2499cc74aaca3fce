"""The Data Manager path: the real GAPIC REST client over TLS against the emulator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from connector.core import Delivery, Status
from connector.destinations.google_ads.datamanager import DataManagerDestination
from connector.retry import RetryableError
from connector_sandbox.datamanager import (
    STATUS_PATH,
    DataManagerEmulator,
    already_exists_fault,
    resource_exhausted_fault,
    unavailable_fault,
)
from tests.destinations import deliveries
from tests.destinations.deliveries import NOW

WON = "700000004"


def won(n: int, **kwargs: Any) -> Delivery:
    return deliveries.won(n, target=WON, **kwargs)


def restated(n: int, value: float) -> Delivery:
    return deliveries.restated(n, value, target=WON)


def retracted(n: int) -> Delivery:
    return deliveries.retracted(n, target=WON)


def test_a_batch_goes_in_one_request_with_its_request_id(
    emulator: DataManagerEmulator, destination: DataManagerDestination
) -> None:
    outcomes = destination.deliver([won(1), won(2, value=250.0)])

    assert {o.status for o in outcomes} == {Status.DELIVERED}
    assert len({o.request_id for o in outcomes}) == 1 and outcomes[0].request_id
    assert emulator.requests == 1
    first = emulator.conversions[WON, "00Q000000000001:won"]
    assert (first["conversion_value"], first["currency"]) == (1000.0, "EUR")
    assert first["event_timestamp"] == NOW - timedelta(days=2)
    assert first["consent"] == {
        "ad_user_data": "CONSENT_GRANTED",
        "ad_personalization": "CONSENT_GRANTED",
    }


def test_restatement_and_retraction_adjust_the_same_conversion(
    emulator: DataManagerEmulator, destination: DataManagerDestination
) -> None:
    destination.deliver([won(1)])
    destination.deliver([restated(1, 1500.0)])
    outcomes = destination.deliver([retracted(1)])

    assert outcomes[0].status == Status.DELIVERED
    (conversion,) = emulator.conversions.values()
    assert conversion["transaction_id"] == "00Q000000000001:won"
    assert (conversion["original_value"], conversion["conversion_value"]) == (1000.0, 0.0)
    assert [a["conversion_value"] for a in conversion["adjustments"]] == [1500.0, 0.0]
    # An adjustment says when it happened; the retraction keeps the won deal's currency.
    assert conversion["last_updated"] == NOW - timedelta(minutes=30)
    assert conversion["currency"] == "EUR"


def test_a_rejected_event_is_isolated_with_googles_code_and_field(
    emulator: DataManagerEmulator, destination: DataManagerDestination
) -> None:
    batch = [won(n) for n in range(1, 6)]
    emulator.reject(gclids=[batch[3].change.attributes["gclid"]])

    outcomes = {o.delivery_id: o for o in destination.deliver(batch)}

    bad = outcomes[4]
    assert bad.status == Status.REJECTED
    assert bad.reason == (
        "google_ads: INVALID_FORMAT: events[0].ad_identifiers.gclid: "
        "The gclid could not be decoded."
    )
    assert [o.status for i, o in sorted(outcomes.items()) if i != 4] == [Status.DELIVERED] * 4
    assert len(emulator.conversions) == 4


def test_already_exists_counts_as_delivered(
    emulator: DataManagerEmulator, destination: DataManagerDestination
) -> None:
    emulator.faults.push(already_exists_fault())
    (outcome,) = destination.deliver([won(1)])
    assert (outcome.status, outcome.reason, outcome.request_id) == (Status.DELIVERED, None, None)


def test_quota_429_is_retried_after_the_servers_hint(
    emulator: DataManagerEmulator, destination: DataManagerDestination, sleeps: list[float]
) -> None:
    emulator.faults.push(resource_exhausted_fault(retry_after_seconds=7), times=2)
    (outcome,) = destination.deliver([won(1)])
    assert outcome.status == Status.DELIVERED
    assert len(sleeps) == 2 and min(sleeps) >= 7
    assert emulator.requests == 3


def test_a_spent_quota_leaves_the_row_pending_after_backoff(
    emulator: DataManagerEmulator, destination: DataManagerDestination, sleeps: list[float]
) -> None:
    emulator.set_quota(1)
    destination.deliver([won(1)])
    # The emulator's minute does not pass in a test: the retries run out, the row stays pending.
    (outcome,) = destination.deliver([won(2)])
    assert outcome.status == Status.PENDING and "TooManyRequests" in str(outcome.error)
    assert sleeps and all(s >= 1 for s in sleeps)


def test_persistent_outage_leaves_the_batch_pending(
    emulator: DataManagerEmulator, destination: DataManagerDestination
) -> None:
    emulator.faults.push(unavailable_fault(), times=5)
    outcomes = destination.deliver([won(1), won(2)])
    assert {o.status for o in outcomes} == {Status.PENDING}
    assert emulator.conversions == {}


def test_validate_only_sends_nothing_and_gets_no_request_id(
    emulator: DataManagerEmulator, destination: DataManagerDestination
) -> None:
    (outcome,) = destination.deliver([won(1)], validate_only=True)
    assert (outcome.status, outcome.request_id) == (Status.DELIVERED, None)
    assert emulator.validated_requests == 1 and emulator.conversions == {}


def test_request_status_through_the_client(
    emulator: DataManagerEmulator, destination: DataManagerDestination
) -> None:
    (outcome,) = destination.deliver([won(1)])
    assert outcome.request_id
    status = destination.request_status(outcome.request_id)
    (item,) = status.request_status_per_destination
    assert (item.destination.product_destination_id, item.request_status.name) == (
        WON,
        "PROCESSING",
    )
    emulator.faults.push(unavailable_fault(path=STATUS_PATH))
    with pytest.raises(RetryableError):
        destination.request_status(outcome.request_id)
