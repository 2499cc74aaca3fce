"""The GA4 Measurement Protocol emulator driven by a real httpx client over TLS (no mocks)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connector_sandbox.ga4 import (
    COOKIE_FORM_WARNING,
    GA4Emulator,
    rate_limited_fault,
    server_error_fault,
    slow_fault,
    validate_mp_body,
)
from connector_sandbox.tls import sandbox_ca as _test_ca

MEASUREMENT_ID = "G-TEST000001"
SECRET = "s3cret"
Payload = dict[str, Any]


@pytest.fixture(scope="module")
def _shared_emulator() -> Iterator[GA4Emulator]:
    # One server per module: stopping one waits out serve_forever's 0.5 s poll.
    with GA4Emulator(measurement_id=MEASUREMENT_ID, api_secret=SECRET) as emu:
        yield emu


@pytest.fixture
def emulator(_shared_emulator: GA4Emulator) -> GA4Emulator:
    _shared_emulator.reset()
    return _shared_emulator


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(verify=_test_ca().client_context(), timeout=5) as client:
        yield client


def micros(delta: timedelta = timedelta()) -> int:
    return int((datetime.now(UTC) + delta).timestamp() * 1_000_000)


def payload(**overrides: Any) -> Payload:
    body: Payload = {
        "client_id": "123.456",
        "user_id": "00Q5g000001abcDEAF",
        "timestamp_micros": micros(-timedelta(hours=1)),
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
        "events": [{"name": "qualify_lead", "params": {"currency": "EUR", "value": 50.0}}],
    }
    body.update(overrides)
    return body


def collect(
    http: httpx.Client, emulator: GA4Emulator, body: Payload | bytes, secret: str = SECRET
) -> httpx.Response:
    params = {"measurement_id": MEASUREMENT_ID, "api_secret": secret}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(f"{emulator.url}/mp/collect", params=params, content=content)


def debug(http: httpx.Client, emulator: GA4Emulator, body: Payload | bytes) -> list[dict[str, str]]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = http.post(
        f"{emulator.url}/debug/mp/collect",
        params={"measurement_id": MEASUREMENT_ID},
        content=content,
    )
    assert response.status_code == 200
    messages: list[dict[str, str]] = response.json()["validationMessages"]
    return messages


def test_valid_events_are_accepted(http: httpx.Client, emulator: GA4Emulator) -> None:
    body = payload()
    body["events"].append({"name": "working_lead", "params": {"lead_status": "Working"}})

    response = collect(http, emulator, body)

    assert response.status_code == 204
    assert emulator.requests == 1
    assert emulator.dropped == []
    first, second = emulator.accepted
    assert first == {
        "measurement_id": MEASUREMENT_ID,
        "client_id": "123.456",
        "user_id": "00Q5g000001abcDEAF",
        "name": "qualify_lead",
        "params": {"currency": "EUR", "value": 50.0},
        "timestamp_micros": body["timestamp_micros"],
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
        "user_properties": None,
    }
    assert second["name"] == "working_lead"


def test_an_invalid_event_is_dropped_silently(http: httpx.Client, emulator: GA4Emulator) -> None:
    body = payload()
    body["events"].append({"name": "close_convert_lead", "params": {"value": 99.0}})

    assert collect(http, emulator, body).status_code == 204

    assert [a["name"] for a in emulator.accepted] == ["qualify_lead"]
    (dropped,) = emulator.dropped
    assert dropped["name"] == "close_convert_lead"
    assert dropped["validation_codes"] == ["VALUE_REQUIRED"]
    assert "currency is required" in dropped["reason"]


def test_a_request_level_error_drops_every_event(http: httpx.Client, emulator: GA4Emulator) -> None:
    body = payload()
    del body["client_id"]

    assert collect(http, emulator, body).status_code == 204

    assert emulator.accepted == []
    assert [d["validation_codes"] for d in emulator.dropped] == [["VALUE_REQUIRED"]]


def test_stale_events_are_dropped_not_backdated(http: httpx.Client, emulator: GA4Emulator) -> None:
    collect(http, emulator, payload(timestamp_micros=micros(-timedelta(hours=73))))
    assert emulator.accepted == []
    assert "72 hours" in emulator.dropped[0]["reason"]


def test_unparseable_body_answers_204_and_is_dropped(
    http: httpx.Client, emulator: GA4Emulator
) -> None:
    assert collect(http, emulator, b"{not json").status_code == 204
    assert emulator.accepted == []
    assert emulator.dropped[0]["reason"] == "Unable to parse the request body as JSON."


def test_wrong_secret_answers_204_and_records_nothing(
    http: httpx.Client, emulator: GA4Emulator
) -> None:
    assert collect(http, emulator, payload(), secret="wrong").status_code == 204
    wrong_id = http.post(
        f"{emulator.url}/mp/collect",
        params={"measurement_id": "G-OTHER", "api_secret": SECRET},
        content=json.dumps(payload()).encode(),
    )
    assert wrong_id.status_code == 204

    assert emulator.wrong_secret == 2
    assert emulator.requests == 2
    assert emulator.accepted == []
    assert emulator.dropped == []


def _events(n: int) -> Callable[[Payload], None]:
    def mutate(body: Payload) -> None:
        body["events"] = [{"name": f"lead_{i}"} for i in range(n)]

    return mutate


def _params(params: dict[str, Any]) -> Callable[[Payload], None]:
    def mutate(body: Payload) -> None:
        body["events"][0]["params"] = params

    return mutate


def _event_name(name: str) -> Callable[[Payload], None]:
    def mutate(body: Payload) -> None:
        body["events"][0]["name"] = name

    return mutate


def _top(key: str, value: Any) -> Callable[[Payload], None]:
    def mutate(body: Payload) -> None:
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value

    return mutate


def _event_timestamp(delta: timedelta) -> Callable[[Payload], None]:
    def mutate(body: Payload) -> None:
        body["events"][0]["timestamp_micros"] = micros(delta)

    return mutate


TS = "timestamp_micros"
TWENTY_SIX = {f"p{i}": i for i in range(26)}
USER_PROPS = {f"prop_{i}": {"value": "x"} for i in range(26)}

RULES = [
    (_top("client_id", None), "client_id", "VALUE_REQUIRED"),
    (_top("client_id", 42), "client_id", "VALUE_INVALID"),
    (_top("events", []), "events", "VALUE_REQUIRED"),
    (_events(26), "events", "EXCEEDED_MAX_ENTITIES"),
    (_params(TWENTY_SIX), "events[0].params", "EXCEEDED_MAX_ENTITIES"),
    (_top("user_properties", USER_PROPS), "user_properties", "EXCEEDED_MAX_ENTITIES"),
    (_top("user_properties", {"user_id": {"value": "x"}}),
     "user_properties.user_id", "NAME_RESERVED"),
    (_top("user_properties", {"lead_tier": {"value": "x" * 37}}),
     "user_properties.lead_tier.value", "VALUE_OUT_OF_BOUNDS"),
    (_event_name("x" * 41), "events[0].name", "VALUE_OUT_OF_BOUNDS"),
    (_event_name("lead-stage"), "events[0].name", "NAME_INVALID"),
    (_event_name("_private"), "events[0].name", "NAME_INVALID"),
    (_event_name("1st_lead"), "events[0].name", "NAME_INVALID"),
    (_event_name("session_start"), "events[0].name", "NAME_RESERVED"),
    (_event_name("page_view"), "events[0].name", "NAME_RESERVED"),
    (_event_name("google_lead"), "events[0].name", "NAME_RESERVED"),
    (_event_name(""), "events[0].name", "VALUE_REQUIRED"),
    (_params({"ga_source": "x"}), "events[0].params.ga_source", "NAME_RESERVED"),
    (_params({"firebase_conversion": 1}), "events[0].params.firebase_conversion", "NAME_RESERVED"),
    (_params({"lead.source": "x"}), "events[0].params.lead.source", "NAME_INVALID"),
    (_params({"lead_source": "x" * 101}), "events[0].params.lead_source", "VALUE_OUT_OF_BOUNDS"),
    (_params({"lead_source": {"a": 1}}), "events[0].params.lead_source", "VALUE_INVALID"),
    (_params({"value": 10}), "events[0].params.currency", "VALUE_REQUIRED"),
    (_params({"value": 10, "currency": "euro"}), "events[0].params.currency", "VALUE_INVALID"),
    (_params({"value": "10", "currency": "EUR"}), "events[0].params.value", "VALUE_INVALID"),
    (_top(TS, micros(-timedelta(hours=73))), TS, "VALUE_OUT_OF_BOUNDS"),
    (_top(TS, micros(timedelta(hours=1))), TS, "VALUE_OUT_OF_BOUNDS"),
    (_top(TS, "soon"), TS, "VALUE_INVALID"),
    (_event_timestamp(-timedelta(days=4)), "events[0].timestamp_micros", "VALUE_OUT_OF_BOUNDS"),
    (_top("consent", {"ad_user_data": "YES"}), "consent.ad_user_data", "VALUE_INVALID"),
    (_top("consent", {"analytics": "GRANTED"}), "consent.analytics", "NAME_INVALID"),
    (_top("padding", "x" * 130_000), "", "VALUE_OUT_OF_BOUNDS"),
    (_top("user_id", "u" * 257), "user_id", "VALUE_OUT_OF_BOUNDS"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "field_path", "code"), RULES)
def test_debug_endpoint_reports_each_rule(
    http: httpx.Client,
    emulator: GA4Emulator,
    mutate: Callable[[Payload], None],
    field_path: str,
    code: str,
) -> None:
    body = payload()
    mutate(body)

    messages = debug(http, emulator, body)

    assert [(m["fieldPath"], m["validationCode"]) for m in messages] == [(field_path, code)]
    assert messages[0]["description"]
    assert emulator.debug_requests == 1
    assert (emulator.requests, emulator.accepted, emulator.dropped) == (0, [], [])


def test_debug_reports_duplicated_names(http: httpx.Client, emulator: GA4Emulator) -> None:
    raw = (
        b'{"client_id": "1.2", "events": [{"name": "qualify_lead",'
        b' "params": {"lead_source": "web", "lead_source": "phone"}}]}'
    )
    messages = debug(http, emulator, raw)
    assert messages == [
        {
            "fieldPath": "events[0].params.lead_source",
            "description": "Name [lead_source] is duplicated.",
            "validationCode": "NAME_DUPLICATED",
        }
    ]


def test_debug_accepts_a_valid_payload_without_checking_the_secret(
    http: httpx.Client, emulator: GA4Emulator
) -> None:
    assert debug(http, emulator, payload()) == []
    assert emulator.wrong_secret == 0
    assert emulator.accepted == []


def test_pure_validation_attributes_messages_to_events() -> None:
    body = payload(events=[{"name": "qualify_lead"}, {"name": "_bad"}, {"name": "ok_event"}])
    result = validate_mp_body(json.dumps(body).encode(), now=datetime.now(UTC))

    assert result.request_messages == []
    assert [m.event_index for m in result.messages] == [1]
    assert result.event_messages(1)[0].validation_code == "NAME_INVALID"


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_injected(http: httpx.Client, emulator: GA4Emulator, status: int) -> None:
    emulator.faults.push(server_error_fault(status))

    assert collect(http, emulator, payload()).status_code == status
    assert emulator.accepted == []
    assert collect(http, emulator, payload()).status_code == 204
    assert len(emulator.accepted) == 1
    assert emulator.requests == 2


def test_rate_limit_is_injected(http: httpx.Client, emulator: GA4Emulator) -> None:
    emulator.faults.push(rate_limited_fault(retry_after_seconds=3))
    response = collect(http, emulator, payload())
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")
    assert emulator.accepted == []


def test_slow_answer_times_out(emulator: GA4Emulator) -> None:
    emulator.faults.push(slow_fault(1.0))
    with (
        httpx.Client(verify=_test_ca().client_context(), timeout=0.2) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        collect(impatient, emulator, payload())
    assert emulator.accepted == []


def test_eu_region_path_is_the_same(http: httpx.Client, emulator: GA4Emulator) -> None:
    # region1.google-analytics.com differs only by host: the same base URL serves both.
    assert collect(http, emulator, payload()).status_code == 204
    assert len(emulator.accepted) == 1


def test_a_cookie_form_client_id_is_accepted_with_a_warning(
    http: httpx.Client, emulator: GA4Emulator
) -> None:
    collect(http, emulator, payload(client_id="GA1.1.123456789.1700000000"))
    collect(http, emulator, payload(client_id="123456789.1700000000"))
    cookie, plain = emulator.accepted
    assert cookie["warnings"] == [COOKIE_FORM_WARNING] and "warnings" not in plain


@pytest.mark.parametrize(
    ("user_data", "field"),
    [
        ({"sha256_email_address": ["jane.doe@example.com"]}, "user_data.sha256_email_address"),
        ({"sha256_phone_number": ["A" * 64]}, "user_data.sha256_phone_number"),  # not lower hex
        ({"email": ["a" * 64]}, "user_data.email"),
    ],
    ids=["clear-email", "upper-hex", "unknown-field"],
)
def test_user_data_must_be_hashed(
    http: httpx.Client, emulator: GA4Emulator, user_data: Payload, field: str
) -> None:
    assert [m["fieldPath"] for m in debug(http, emulator, payload(user_data=user_data))] == [field]
    hashed = {"sha256_email_address": ["a" * 64], "sha256_phone_number": ["b" * 64]}
    assert debug(http, emulator, payload(user_data=hashed)) == []
