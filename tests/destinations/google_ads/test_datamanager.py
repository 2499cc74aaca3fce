"""The Data Manager path: the real GAPIC gRPC client over TLS against the emulator."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from connector.core import Delivery, Outcome, Status
from connector.destinations.datamanager import Pace
from connector.destinations.google_ads.datamanager import DataManagerDestination
from connector.errors import DestinationError
from connector.retry import RetryableError
from connector_sandbox.datamanager import (
    INGEST_PATH,
    STATUS_PATH,
    DataManagerEmulator,
    already_exists_fault,
    internal_fault,
    refusal_fault,
    resource_exhausted_fault,
    slow_fault,
    unavailable_fault,
)
from connector_sandbox.faults import Fault
from tests.destinations import deliveries
from tests.destinations.conftest import make_destination
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


def test_resource_exhausted_is_retried_after_the_servers_retry_delay(
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
    assert outcome.status == Status.PENDING and "ResourceExhausted" in str(outcome.error)
    assert sleeps and all(s >= 1 for s in sleeps)


def test_persistent_outage_leaves_the_batch_pending(
    emulator: DataManagerEmulator, destination: DataManagerDestination
) -> None:
    emulator.faults.push(unavailable_fault(), times=5)
    outcomes = destination.deliver([won(1), won(2)])
    assert {o.status for o in outcomes} == {Status.PENDING}
    assert emulator.conversions == {}


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (
            refusal_fault(
                403,
                "PERMISSION_DENIED",
                "The Cloud project is not allowlisted.",
                "CUSTOMER_NOT_ALLOWLISTED",
            ),
            ["403 CUSTOMER_NOT_ALLOWLISTED", "give the credentials access to Google Ads account"],
        ),
        (
            refusal_fault(401, "UNAUTHENTICATED", "Request had invalid authentication."),
            ["401", "check CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE"],
        ),
    ],
)
def test_a_refusal_of_the_request_stops_the_destination_with_googles_reason(
    emulator: DataManagerEmulator,
    destination: DataManagerDestination,
    fault: Fault,
    says: list[str],
) -> None:
    emulator.faults.push(fault)
    with pytest.raises(DestinationError) as refused:
        destination.deliver([won(1), won(2)])
    for text in says:
        assert text in str(refused.value)
    assert emulator.requests == 1 and emulator.conversions == {}  # not split: no row burnt


def test_an_internal_error_is_retried(
    emulator: DataManagerEmulator, destination: DataManagerDestination, sleeps: list[float]
) -> None:
    emulator.faults.push(internal_fault())
    (outcome,) = destination.deliver([won(1)])
    assert outcome.status == Status.DELIVERED and len(sleeps) == 1
    assert emulator.requests == 2


def test_a_timeout_is_retried(
    emulator: DataManagerEmulator,
) -> None:
    destination = make_destination(emulator, timeout_seconds=0.3)
    emulator.faults.push(slow_fault(1.0))
    try:
        (outcome,) = destination.deliver([won(1)])
    finally:
        destination.close()
    assert outcome.status == Status.DELIVERED
    assert emulator.requests == 2 and len(emulator.conversions) == 1


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


def concurrent_destination(emulator: DataManagerEmulator) -> DataManagerDestination:
    return make_destination(emulator, batch_size=2, max_concurrency=3)


def test_requests_go_side_by_side_each_settled_as_it_returns(
    emulator: DataManagerEmulator,
) -> None:
    destination = concurrent_destination(emulator)
    assert destination.capabilities.batch_size == 6  # a call holds the requests in the air
    settled: list[list[Outcome]] = []
    try:
        outcomes = destination.deliver([won(n) for n in range(1, 7)], settle=settled.append)
    finally:
        destination.close()
    assert emulator.requests == 3 and len(emulator.conversions) == 6
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    requests = [s for s in settled if s]  # the local checks' (empty) outcomes come first
    assert sorted(len(s) for s in requests) == [2, 2, 2]
    assert all(len({o.request_id for o in s}) == 1 for s in requests)


def test_a_refusal_settles_the_requests_in_the_air_before_it_stops_the_destination(
    emulator: DataManagerEmulator,
) -> None:
    denied = "The caller does not have permission."
    emulator.faults.push(refusal_fault(403, "PERMISSION_DENIED", denied))
    destination = concurrent_destination(emulator)
    settled: list[Outcome] = []
    try:
        with pytest.raises(DestinationError, match="refused the request \\(403"):
            destination.deliver([won(n) for n in range(1, 7)], settle=settled.extend)
    finally:
        destination.close()
    # The two requests Google took are settled delivered: never sent again as untried.
    assert len(emulator.conversions) == 4
    ingested = sorted(int(transaction.split(":")[0][3:]) for _, transaction in emulator.conversions)
    assert sorted(o.delivery_id for o in settled) == ingested
    assert {o.status for o in settled} == {Status.DELIVERED}


def test_a_refusal_of_a_split_batchs_second_half_settles_the_half_that_went(
    emulator: DataManagerEmulator,
) -> None:
    # An event error splits the batch; the first half goes, the second is refused whole.
    emulator.faults.push(refusal_fault(400, "INVALID_ARGUMENT", "One event is invalid."))
    emulator.faults.push(Fault(then_serve=True, path_contains=INGEST_PATH))
    emulator.faults.push(refusal_fault(403, "PERMISSION_DENIED", "No permission."))
    destination = make_destination(emulator)
    settled: list[Outcome] = []
    try:
        with pytest.raises(DestinationError, match="403"):
            destination.deliver([won(n) for n in range(1, 5)], settle=settled.extend)
    finally:
        destination.close()
    assert len(emulator.conversions) == 2  # the first half
    assert sorted((o.delivery_id, o.status) for o in settled) == [
        (1, Status.DELIVERED),
        (2, Status.DELIVERED),
    ]


def test_an_https_url_from_the_rest_days_reaches_the_same_grpc_endpoint(
    emulator: DataManagerEmulator,
) -> None:
    destination = make_destination(emulator, datamanager_endpoint=f"https://{emulator.endpoint}/")
    try:
        (outcome,) = destination.deliver([won(1)])
    finally:
        destination.close()
    assert outcome.status == Status.DELIVERED and len(emulator.conversions) == 1


def test_a_ca_bundle_that_does_not_sign_the_certificate_stops_the_destination_naming_it(
    emulator: DataManagerEmulator, tmp_path: Path
) -> None:
    # The process-wide gRPC roots trust the test CA: only the setting pinned on the
    # channel can make this fail.
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    destination = make_destination(emulator, datamanager_ca_bundle=other)
    try:
        with pytest.raises(DestinationError) as refused:
            destination.deliver([won(1)])
        # The request status check says why it could not ask, and goes on.
        with pytest.raises(RetryableError, match="DATAMANAGER_CA_BUNDLE"):
            destination.request_status("any")
    finally:
        destination.close()
    message = str(refused.value)
    assert "CONNECTOR_GOOGLE_ADS__DATAMANAGER_CA_BUNDLE" in message
    assert f"TLS handshake with the Data Manager endpoint {emulator.endpoint}" in message
    assert emulator.requests == 0  # nothing reached the emulator


def test_pace_lets_a_burst_under_the_quota_go_and_holds_the_one_too_many() -> None:
    now = [100.0]
    waits: list[float] = []
    pace = Pace(3, clock=lambda: now[0])
    for _ in range(3):
        pace.wait(sleep=waits.append)
    assert waits == []  # three in a minute: under the quota, no wait
    now[0] += 10
    pace.wait(sleep=waits.append)
    pace.wait(sleep=waits.append)
    assert waits == [50.0, 50.0]  # the oldest calls leave the window at 160
    now[0] = 200.0
    pace.wait(sleep=waits.append)  # the window holds 160, 160: room for one
    pace.wait(sleep=waits.append)  # 160, 160, 200: the next slot is at 220
    assert waits == [50.0, 50.0, 20.0]
