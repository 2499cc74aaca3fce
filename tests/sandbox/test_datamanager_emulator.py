"""The Data Manager emulator driven by the real GAPIC gRPC client over TLS (no mocks)."""

from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import google.auth.credentials
import grpc
import pytest
from google.ads import datamanager_v1 as dm
from google.ads.datamanager_v1.services.ingestion_service.transports.grpc import (
    IngestionServiceGrpcTransport,
)
from google.api_core import exceptions
from google.protobuf import json_format
from google.rpc import error_details_pb2

from connector_sandbox.datamanager import (
    INGEST_PATH,
    STATUS_PATH,
    DataManagerEmulator,
    already_exists_fault,
    resource_exhausted_fault,
    slow_fault,
    unavailable_fault,
)
from connector_sandbox.faults import Fault
from connector_sandbox.tls import sandbox_ca as _test_ca

EMAIL_HASH = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PHONE_HASH = hashlib.sha256(b"+4962153399982").hexdigest()
GOOGLE_ADS = dm.ProductAccount.AccountType.GOOGLE_ADS
STATUS = dm.RequestStatusPerDestination.RequestStatus
SUCCESS, PROCESSING = STATUS.SUCCESS, STATUS.PROCESSING


@pytest.fixture(scope="module")
def _shared_emulator() -> Iterator[DataManagerEmulator]:
    with DataManagerEmulator() as emu:
        yield emu


@pytest.fixture
def emulator(_shared_emulator: DataManagerEmulator) -> DataManagerEmulator:
    _shared_emulator.reset()
    return _shared_emulator


def roots() -> grpc.ChannelCredentials:
    """The test CA on the channel itself (the process-wide roots are read only once)."""
    return grpc.ssl_channel_credentials(root_certificates=_test_ca().bundle_path.read_bytes())


def make_client(emulator: DataManagerEmulator) -> dm.IngestionServiceClient:
    transport = IngestionServiceGrpcTransport(
        host=emulator.endpoint,
        credentials=google.auth.credentials.AnonymousCredentials(),  # type: ignore[no-untyped-call]
        ssl_channel_credentials=roots(),
    )
    return dm.IngestionServiceClient(transport=transport)


@pytest.fixture
def client(emulator: DataManagerEmulator) -> Iterator[dm.IngestionServiceClient]:
    own = make_client(emulator)
    yield own
    own.transport.close()


def violations(error: exceptions.GoogleAPICallError) -> list[dict[str, str]]:
    """The BadRequest field violations of `error`, as decoded from grpc-status-details-bin."""
    return [
        json_format.MessageToDict(v)
        for d in error.details
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    ]


def retry_delay(error: exceptions.GoogleAPICallError) -> float:
    (info,) = [d for d in error.details if isinstance(d, error_details_pb2.RetryInfo)]
    return float(info.retry_delay.ToTimedelta().total_seconds())


def destination(action: str = "555000", reference: str = "") -> dm.Destination:
    account = dm.ProductAccount(account_id="1234567890", account_type=GOOGLE_ADS)
    return dm.Destination(
        operating_account=account, product_destination_id=action, reference=reference
    )


def event(transaction_id: str, gclid: str = "Cj0KCQ_abc-123", value: float = 10.0) -> dm.Event:
    return dm.Event(
        transaction_id=transaction_id,
        event_timestamp=datetime.now(UTC) - timedelta(hours=2),
        ad_identifiers=dm.AdIdentifiers(gclid=gclid),
        conversion_value=value,
        currency="EUR",
        event_source=dm.EventSource.OTHER,
    )


def email_event(transaction_id: str, email_hash: str = EMAIL_HASH) -> dm.Event:
    ev = event(transaction_id)
    ev.ad_identifiers = dm.AdIdentifiers()
    ev.user_data = dm.UserData(user_identifiers=[dm.UserIdentifier(email_address=email_hash)])
    return ev


def ingest(events: list[dm.Event], **kwargs: object) -> dm.IngestEventsRequest:
    kwargs.setdefault("destinations", [destination()])
    kwargs.setdefault("encoding", dm.Encoding.HEX)
    return dm.IngestEventsRequest(events=events, **kwargs)


def status_of(
    client: dm.IngestionServiceClient, request_id: str
) -> dm.RetrieveRequestStatusResponse:
    return client.retrieve_request_status(
        request=dm.RetrieveRequestStatusRequest(request_id=request_id)
    )


def rejection(
    client: dm.IngestionServiceClient, request: dm.IngestEventsRequest
) -> exceptions.BadRequest:
    with pytest.raises(exceptions.BadRequest) as info:
        client.ingest_events(request=request)
    return info.value


def test_valid_batch_is_accepted(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    phone = dm.UserIdentifier(phone_number=PHONE_HASH)
    with_phone = email_event("t3")
    with_phone.user_data.user_identifiers.append(phone)
    response = client.ingest_events(request=ingest([event("t1"), email_event("t2"), with_phone]))

    assert response.request_id
    assert emulator.requests == 1
    assert [a["transaction_id"] for a in emulator.accepted] == ["t1", "t2", "t3"]
    first = emulator.accepted[0]
    assert first["destination_id"] == "555000"
    assert first["operating_account_id"] == "1234567890"
    assert first["gclid"] == "Cj0KCQ_abc-123"
    assert (first["conversion_value"], first["currency"], first["event_source"]) == (
        10.0,
        "EUR",
        "OTHER",
    )
    assert set(emulator.conversions) == {("555000", "t1"), ("555000", "t2"), ("555000", "t3")}
    assert emulator.adjustments == 0
    # Only hashes travel: no '@' and no '+<digits>' in anything the API received.
    assert all("@" not in body and "+49" not in body for body in emulator.received_bodies)


def test_one_bad_event_rejects_the_whole_batch(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    events = [event(f"t{i}") for i in range(5)]
    events[3].ad_identifiers.gclid = "not a gclid!"

    error = rejection(client, ingest(events))

    assert "events[3].ad_identifiers.gclid" in error.message
    assert (error.code, error.grpc_status_code) == (400, grpc.StatusCode.INVALID_ARGUMENT)
    assert error.reason == "INVALID_FORMAT"
    assert error.domain == "datamanager.googleapis.com"
    assert violations(error) == [
        {
            "field": "events[3].ad_identifiers.gclid",
            "description": "Allowed characters are [A-Za-z0-9_-].",
            "reason": "INVALID_FORMAT",
        }
    ]
    assert emulator.accepted == []
    assert emulator.conversions == {}
    assert emulator.rejected_requests == 1


def test_2001_events_are_rejected_and_2000_are_not(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    events = [event(f"t{i}") for i in range(2001)]

    error = rejection(client, ingest(events))
    assert error.reason == "TOO_MANY_EVENTS"
    assert "events: At most 2000 events per request, got 2001." in error.message

    client.ingest_events(request=ingest(events[:2000], validate_only=True))
    assert emulator.validated_requests == 1


def _no_destinations(r: dm.IngestEventsRequest) -> None:
    del r.destinations[:]


def _two_unreferenced_destinations(r: dm.IngestEventsRequest) -> None:
    r.destinations.append(destination("555001"))


def _duplicate_references(r: dm.IngestEventsRequest) -> None:
    r.destinations[0].reference = "a"
    r.destinations.append(destination("555001", reference="a"))


def _set_event(**fields: object) -> Callable[[dm.IngestEventsRequest], None]:
    def mutate(r: dm.IngestEventsRequest) -> None:
        for name, value in fields.items():
            setattr(r.events[0], name, value)

    return mutate


def _set(target: str, name: str, value: object) -> Callable[[dm.IngestEventsRequest], None]:
    def mutate(r: dm.IngestEventsRequest) -> None:
        obj: object = r
        for part in target.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)  # type: ignore[index]
        setattr(obj, name, value)

    return mutate


def _hashed_email(
    value: str, encoding: int = dm.Encoding.HEX
) -> Callable[[dm.IngestEventsRequest], None]:
    def mutate(r: dm.IngestEventsRequest) -> None:
        r.encoding = dm.Encoding(encoding)
        r.events[0].user_data = dm.UserData(
            user_identifiers=[dm.UserIdentifier(email_address=value)]
        )

    return mutate


def _no_encoding(r: dm.IngestEventsRequest) -> None:
    _hashed_email(EMAIL_HASH)(r)
    r.encoding = dm.Encoding(dm.Encoding.ENCODING_UNSPECIFIED)


EMAIL_0 = "events[0].user_data.user_identifiers[0].email_address"

RULES = [
    (_no_destinations, "destinations", "REQUIRED_FIELD_MISSING"),
    (_set("destinations.0.operating_account", "account_id", "123-456-7890"),
     "destinations[0].operating_account.account_id", "INVALID_FORMAT"),
    (_set("destinations.0.operating_account", "account_type", 0),
     "destinations[0].operating_account.account_type", "INVALID_ENUM_VALUE"),
    (_set("destinations.0", "product_destination_id", ""),
     "destinations[0].product_destination_id", "REQUIRED_FIELD_MISSING"),
    (_two_unreferenced_destinations, "destinations[0].reference", "REQUIRED_FIELD_MISSING"),
    (_duplicate_references, "destinations[1].reference", "DUPLICATE_DESTINATION_REFERENCE"),
    (_set_event(destination_references=["nope"]),
     "events[0].destination_references[0]", "INVALID_DESTINATION"),
    (_set_event(event_timestamp=None), "events[0].event_timestamp", "REQUIRED_FIELD_MISSING"),
    (_set_event(event_timestamp=datetime.now(UTC) + timedelta(hours=1)),
     "events[0].event_timestamp", "EVENT_TIME_INVALID"),
    (_set_event(event_source=0), "events[0].event_source", "REQUIRED_FIELD_MISSING"),
    (_set_event(transaction_id=""), "events[0].transaction_id", "REQUIRED_FIELD_MISSING"),
    (_set("events.0.ad_identifiers", "gbraid", "gb_123"),
     "events[0].ad_identifiers", "INVALID_ARGUMENT"),
    (_set_event(conversion_value=-1.0), "events[0].conversion_value", "INVALID_NUMBER_FORMAT"),
    (_set_event(conversion_value=math.nan), "events[0].conversion_value", "INVALID_NUMBER_FORMAT"),
    (_set_event(conversion_value=math.inf), "events[0].conversion_value", "INVALID_NUMBER_FORMAT"),
    (_set_event(currency="XYZ"), "events[0].currency", "INVALID_CURRENCY_CODE"),
    (_set_event(currency="eur"), "events[0].currency", "INVALID_CURRENCY_CODE"),
    (_no_encoding, "encoding", "REQUIRED_FIELD_MISSING"),
    (_hashed_email("jane.doe@example.com"), EMAIL_0, "INVALID_SHA256_FORMAT"),
    (_hashed_email(EMAIL_HASH.upper()), EMAIL_0, "INVALID_HEX_ENCODING"),
    (_hashed_email(EMAIL_HASH[:63]), EMAIL_0, "INVALID_HEX_ENCODING"),
    (_hashed_email(EMAIL_HASH, dm.Encoding.BASE64), EMAIL_0, "INVALID_BASE64_ENCODING"),
    (_set_event(consent=dm.Consent(ad_user_data=7)),
     "events[0].consent.ad_user_data", "INVALID_ENUM_VALUE"),
    (_set("consent", "ad_personalization", 9), "consent.ad_personalization", "INVALID_ENUM_VALUE"),
    (_set("events.0.ad_identifiers", "gclid", ""), "events[0]", "NO_IDENTIFIERS_PROVIDED"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "field", "reason"), RULES)
def test_each_documented_rule(
    emulator: DataManagerEmulator,
    client: dm.IngestionServiceClient,
    mutate: Callable[[dm.IngestEventsRequest], None],
    field: str,
    reason: str,
) -> None:
    request = ingest([event("t1")])
    mutate(request)

    error = rejection(client, request)

    assert f"invalid argument. {field}: " in error.message
    assert error.reason == reason
    assert emulator.accepted == []


@pytest.mark.parametrize("currency", ["HUF", "AED", "ISK"])
def test_every_iso_currency_is_accepted(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient, currency: str
) -> None:
    request = ingest([event("t1")])
    request.events[0].currency = currency
    assert client.ingest_events(request=request).request_id
    assert emulator.accepted


def test_clear_text_phone_is_rejected_without_echoing_it(client: dm.IngestionServiceClient) -> None:
    request = ingest([event("t1")])
    request.events[0].user_data = dm.UserData(
        user_identifiers=[dm.UserIdentifier(phone_number="+4962153399982")]
    )

    error = rejection(client, request)

    assert "events[0].user_data.user_identifiers[0].phone_number" in error.message
    assert "4962153399982" not in str(error.details)
    assert error.reason == "INVALID_SHA256_FORMAT"


def test_base64_hashes_pass_with_base64_encoding(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    digest = base64.b64encode(hashlib.sha256(b"jane.doe@example.com").digest()).decode()
    client.ingest_events(request=ingest([email_event("t1", digest)], encoding=dm.Encoding.BASE64))
    assert emulator.accepted[0]["user_identifiers"] == [{"email_address": digest}]


def test_validate_only_records_nothing(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    response = client.ingest_events(request=ingest([event("t1")], validate_only=True))

    assert response.request_id == ""
    assert emulator.validated_requests == 1
    assert emulator.accepted == []
    assert emulator.conversions == {}
    assert emulator.requests == 1


def test_repeated_transaction_id_is_an_adjustment(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    client.ingest_events(request=ingest([event("t1", value=10.0)]))
    client.ingest_events(request=ingest([event("t1", value=25.0)]))
    # The same transaction id for another conversion action is a conversion of its own.
    client.ingest_events(request=ingest([event("t1")], destinations=[destination("777000")]))

    assert emulator.adjustments == 1
    assert set(emulator.conversions) == {("555000", "t1"), ("777000", "t1")}
    assert emulator.conversions["555000", "t1"]["conversion_value"] == 25.0
    assert [a["is_adjustment"] for a in emulator.accepted] == [False, True, False]


def test_request_status_counts_records_per_destination(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    qualified, won = destination("555000", "qualified"), destination("555001", "won")
    only_won = event("t2")
    only_won.destination_references = ["won"]
    response = client.ingest_events(
        request=ingest([event("t1"), only_won], destinations=[qualified, won])
    )

    first = status_of(client, response.request_id)
    status = status_of(client, response.request_id)

    assert {s.request_status for s in first.request_status_per_destination} == {PROCESSING}
    per_destination = status.request_status_per_destination
    assert [s.destination.reference for s in per_destination] == ["qualified", "won"]
    assert [s.events_ingestion_status.record_count for s in per_destination] == [1, 2]
    assert {s.request_status for s in per_destination} == {SUCCESS}
    assert sorted(emulator.conversions) == [("555000", "t1"), ("555001", "t1"), ("555001", "t2")]


def test_unknown_request_id_is_rejected(client: dm.IngestionServiceClient) -> None:
    with pytest.raises(exceptions.BadRequest) as info:
        client.retrieve_request_status(request=dm.RetrieveRequestStatusRequest(request_id="nope"))
    assert info.value.reason == "INVALID_REQUEST_ID"


def test_resource_exhausted_carries_its_retry_delay(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    emulator.faults.push(resource_exhausted_fault(retry_after_seconds=7))

    with pytest.raises(exceptions.ResourceExhausted) as info:
        client.ingest_events(request=ingest([event("t1")]))

    assert info.value.reason == "RESOURCE_EXHAUSTED"
    assert retry_delay(info.value) == 7
    assert emulator.accepted == []
    client.ingest_events(request=ingest([event("t1")]))
    assert emulator.requests == 2
    assert len(emulator.accepted) == 1


def test_503_raises_service_unavailable_without_the_default_retry(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    emulator.faults.push(unavailable_fault())
    with pytest.raises(exceptions.ServiceUnavailable):
        client.ingest_events(request=ingest([event("t1")]), retry=None)
    assert emulator.accepted == []


def test_slow_answer_times_out(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    emulator.faults.push(slow_fault(1.0))
    with pytest.raises(exceptions.DeadlineExceeded):
        client.ingest_events(request=ingest([event("t1")]), retry=None, timeout=0.2)
    assert emulator.accepted == []


def test_a_reset_connection_is_unavailable_and_nothing_is_ingested(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    emulator.faults.push(Fault(reset=True, path_contains=INGEST_PATH))
    with pytest.raises(exceptions.ServiceUnavailable):
        client.ingest_events(request=ingest([event("t1")]), retry=None)
    assert emulator.accepted == [] and emulator.requests == 1


def test_latency_delays_every_call_and_each_is_counted(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    emulator.latency = 0.2
    try:
        started = time.monotonic()
        request_id = client.ingest_events(request=ingest([event("t1")])).request_id
        status_of(client, request_id)
        elapsed = time.monotonic() - started
    finally:
        emulator.latency = 0.0
    assert elapsed >= 0.4
    assert emulator.requests == 1 and len(emulator.accepted) == 1


def test_reject_switch_names_the_event_for_bisection(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    emulator.reject(transaction_ids={"t2"}, gclids={"gclid_bad"})
    events = [event("t0"), event("t1"), event("t2"), event("t3", gclid="gclid_bad")]

    error = rejection(client, ingest(events))
    assert "events[2].transaction_id" in error.message
    fields = [v["field"] for v in violations(error)]
    assert fields == ["events[2].transaction_id", "events[3].ad_identifiers.gclid"]

    client.ingest_events(request=ingest(events[:2]))
    assert [a["transaction_id"] for a in emulator.accepted] == ["t0", "t1"]
    emulator.clear_rejections()
    client.ingest_events(request=ingest(events[2:]))
    assert len(emulator.accepted) == 4


def test_undecodable_bytes_are_rejected(emulator: DataManagerEmulator) -> None:
    with grpc.secure_channel(emulator.endpoint, roots()) as channel:
        ingest_bytes = channel.unary_unary(INGEST_PATH)
        with pytest.raises(grpc.RpcError) as info:
            ingest_bytes(b"\xff\xff", timeout=5)
    call: grpc.Call = info.value  # type: ignore[assignment]
    assert call.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Invalid request payload" in str(call.details())
    assert emulator.accepted == [] and emulator.rejected_requests == 1


def test_concurrent_ingests_are_all_recorded(emulator: DataManagerEmulator) -> None:
    def worker(n: int) -> None:
        own_client = make_client(emulator)
        for i in range(5):
            own_client.ingest_events(request=ingest([event(f"w{n}-{i}")]))
        own_client.transport.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert emulator.requests == 30
    assert len(emulator.conversions) == 30


# --------------------------------------------------------------------------- after acceptance


def unmatched_email_hash() -> str:
    """A digest the emulator's default rule does not match (its own SHA-256 starts >= 0x80)."""
    for i in range(100):
        digest = hashlib.sha256(f"nobody{i}@example.com".encode()).hexdigest()
        if hashlib.sha256(digest.encode()).digest()[0] >= 0x80:
            return digest
    raise AssertionError("no unmatched digest found")


def error_counts(status: dm.RetrieveRequestStatusResponse) -> list[dict[str, int]]:
    return [
        {dm.ProcessingErrorReason(e.reason).name: e.record_count for e in s.error_info.error_counts}
        for s in status.request_status_per_destination
    ]


def test_processing_errors_come_with_the_final_status_only(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    stranger = unmatched_email_hash()
    emulator.unknown_clicks(["gclid_unknown"])
    events = [event("t1"), event("t2", gclid="gclid_unknown"), email_event("t3", stranger)]
    request_id = client.ingest_events(request=ingest(events)).request_id

    processing = status_of(client, request_id).request_status_per_destination[0]
    assert processing.request_status == PROCESSING
    assert not processing.error_info.error_counts

    done = status_of(client, request_id)
    assert done.request_status_per_destination[0].request_status == STATUS.PARTIAL_SUCCESS
    assert done.request_status_per_destination[0].events_ingestion_status.record_count == 3
    assert error_counts(done) == [{"PROCESSING_ERROR_REASON_CLICK_NOT_FOUND": 2}]
    assert emulator.conversions["555000", "t2"]["processing_error"].endswith("CLICK_NOT_FOUND")


def test_a_known_user_matches_and_a_request_of_failures_is_failed(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    stranger = unmatched_email_hash()
    first = client.ingest_events(request=ingest([email_event("t1", stranger)])).request_id
    emulator.know_users([stranger])
    second = client.ingest_events(request=ingest([email_event("t2", stranger)])).request_id

    for request_id in (first, second):
        status_of(client, request_id)
    failed, matched = status_of(client, first), status_of(client, second)
    assert failed.request_status_per_destination[0].request_status == STATUS.FAILED
    assert matched.request_status_per_destination[0].request_status == SUCCESS
    assert error_counts(matched) == [{}]


def test_click_times_give_too_recent_and_precedes(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    now = datetime.now(UTC)
    emulator.clicks(
        {"gclid_fresh": now - timedelta(hours=1), "gclid_late": now - timedelta(hours=1)}
    )
    emulator.clicks({"gclid_old": now - timedelta(days=3)})
    fresh = event("t1", gclid="gclid_fresh")
    fresh.event_timestamp = now - timedelta(minutes=5)
    late = event("t2", gclid="gclid_late")  # two hours ago: before its click
    request_id = client.ingest_events(
        request=ingest([fresh, late, event("t3", gclid="gclid_old")])
    ).request_id

    status_of(client, request_id)
    assert error_counts(status_of(client, request_id)) == [
        {
            "PROCESSING_ERROR_REASON_TOO_RECENT_CLICK": 1,
            "PROCESSING_ERROR_REASON_CONVERSION_PRECEDES_CLICK": 1,
        }
    ]


def test_adjustments_keep_one_conversion_with_its_history(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    client.ingest_events(request=ingest([event("t1", value=10.0)]))
    restated = event("t1", value=25.0)
    restated.last_updated_timestamp = datetime.now(UTC)
    client.ingest_events(request=ingest([restated]))
    client.ingest_events(request=ingest([event("t1", value=0.0)]))  # a retraction

    (conversion,) = emulator.conversions.values()
    assert (conversion["original_value"], conversion["conversion_value"]) == (10.0, 0.0)
    assert [a["conversion_value"] for a in conversion["adjustments"]] == [25.0, 0.0]
    assert conversion["adjustments"][0]["last_updated"] is not None
    assert emulator.adjustments == 2


def test_an_exact_resend_is_a_duplicate_not_an_adjustment(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    original = event("t1", value=10.0)
    client.ingest_events(request=ingest([original]))
    request_id = client.ingest_events(request=ingest([original])).request_id

    status_of(client, request_id)
    assert error_counts(status_of(client, request_id)) == [
        {"PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID": 1}
    ]
    assert emulator.adjustments == 0
    assert len(emulator.accepted) == 1


def test_quota_answers_resource_exhausted_with_a_retry_delay(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    emulator.set_quota(2)
    request_id = client.ingest_events(request=ingest([event("t1")])).request_id
    status_of(client, request_id)  # status calls count against the quota too

    with pytest.raises(exceptions.ResourceExhausted) as info:
        client.ingest_events(request=ingest([event("t2")]), retry=None)

    assert info.value.reason == "RESOURCE_EXHAUSTED"
    assert 1 <= retry_delay(info.value) <= 60
    emulator.set_quota(None)
    client.ingest_events(request=ingest([event("t2")]))
    assert len(emulator.accepted) == 2


def test_status_faults_can_be_injected(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    request_id = client.ingest_events(request=ingest([event("t1")])).request_id
    emulator.faults.push(unavailable_fault(path=STATUS_PATH))
    with pytest.raises(exceptions.ServiceUnavailable):
        client.retrieve_request_status(
            request=dm.RetrieveRequestStatusRequest(request_id=request_id), retry=None
        )
    assert status_of(client, request_id).request_status_per_destination[0].request_status


def test_already_exists_fault_raises_already_exists(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    emulator.faults.push(already_exists_fault())
    with pytest.raises(exceptions.AlreadyExists) as info:
        client.ingest_events(request=ingest([event("t1")]))
    assert info.value.reason == "ALREADY_EXISTS"


# --------------------------------------------------------------------------- GA4 destinations


def ga4_destination(reference: str = "") -> dm.Destination:
    account = dm.ProductAccount(
        account_id="123456789", account_type=dm.ProductAccount.AccountType.GOOGLE_ANALYTICS_PROPERTY
    )
    return dm.Destination(
        reference=reference, operating_account=account, product_destination_id="G-TEST000001"
    )


def ga4_event(name: str = "qualify_lead", client_id: str = "123.1700000000") -> dm.Event:
    return dm.Event(
        event_name=name,
        client_id=client_id,
        event_timestamp=datetime.now(UTC) - timedelta(hours=1),
        additional_event_parameters=[dm.EventParameter(parameter_name="lead_id", value="00Q1")],
    )


def ga4_event_with(name: str, value: str) -> dm.Event:
    event = ga4_event()
    event.additional_event_parameters = [dm.EventParameter(parameter_name=name, value=value)]
    return event


def ga4_ingest(events: list[dm.Event], **kwargs: object) -> dm.IngestEventsRequest:
    kwargs.setdefault("destinations", [ga4_destination()])
    return dm.IngestEventsRequest(events=events, **kwargs)


def test_a_ga4_event_needs_no_transaction_or_click_id(
    emulator: DataManagerEmulator, client: dm.IngestionServiceClient
) -> None:
    response = client.ingest_events(request=ga4_ingest([ga4_event()]))
    assert response.request_id and not response.field_warnings
    (stored,) = emulator.ga4_events
    assert (stored["event_name"], stored["property_id"]) == ("qualify_lead", "123456789")
    assert emulator.accepted == []  # not a Google Ads conversion


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (
            ga4_ingest([ga4_event()], destinations=[ga4_destination("a"), ga4_destination("b")]),
            "MULTIPLE_DESTINATIONS_FOR_GOOGLE_ANALYTICS_EVENT",
        ),
        (
            ga4_ingest([dm.Event(ga4_event(), app_instance_id="app-1")]),
            "BOTH_CLIENT_ID_AND_APP_INSTANCE_ID_NOT_ALLOWED",
        ),
        (ga4_ingest([ga4_event(client_id="")]), "REQUIRED_FIELD_MISSING"),
        (ga4_ingest([ga4_event("session_start")]), "RESERVED_NAME_USED"),
        (ga4_ingest([ga4_event("google_lead")]), "RESERVED_NAME_USED"),
        (ga4_ingest([ga4_event("9lives")]), "INVALID_EVENT_NAME"),
        (ga4_ingest([ga4_event("app_update")]), "RESERVED_NAME_USED"),  # GA4's whole list
        (ga4_ingest([ga4_event_with("note", "x" * 101)]), "INVALID_ARGUMENT"),  # over 100
    ],
)
def test_ga4_rules_reject_the_request(
    client: dm.IngestionServiceClient, request_: dm.IngestEventsRequest, reason: str
) -> None:
    assert rejection(client, request_).reason == reason


def test_a_cookie_form_client_id_is_accepted_with_a_field_warning(
    client: dm.IngestionServiceClient,
) -> None:
    events = [ga4_event(), ga4_event(client_id="GA1.1.123.1700000000")]
    response = client.ingest_events(request=ga4_ingest(events))
    (warning,) = response.field_warnings
    assert warning.reason == dm.WarningReason.WARNING_REASON_INVALID_CLIENT_ID
    assert warning.field == "events[1].client_id"
