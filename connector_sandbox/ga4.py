"""A local GA4 Measurement Protocol endpoint (API-NOTES §3).

- `POST /mp/collect?measurement_id=G-...&api_secret=...` always answers 204,
  like Google's, even for an invalid payload or a wrong secret: the only way
  to see what happened is this emulator's `accepted` / `dropped` lists.
- `POST /debug/mp/collect` answers `{"validationMessages": [...]}` and records
  nothing; like Google's, it does not check the api_secret.

The EU host (`region1.google-analytics.com`) is the same API: point either
base URL at this server. The rules live in `validate_mp_body`, a pure function.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connector_sandbox.faults import Fault, FaultQueue
from connector_sandbox.server import EmulatorServer, Request, Response, ServedEmulator

COLLECT_PATH = "/mp/collect"
DEBUG_PATH = "/debug/mp/collect"

MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_USER_PROPERTIES = 25
MAX_NAME_LENGTH = 40
MAX_PARAM_VALUE_LENGTH = 100
# User properties have tighter limits than event params (GA4 collection limits).
MAX_USER_PROPERTY_NAME_LENGTH = 24
MAX_USER_PROPERTY_VALUE_LENGTH = 36
MAX_USER_ID_LENGTH = 256
MAX_BODY_BYTES = 130_000  # "under 130 kB"; the conservative reading
MAX_BACKDATE = timedelta(hours=72)
MAX_AHEAD = timedelta(minutes=5)

RESERVED_EVENT_NAMES = frozenset(
    {
        "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
        "adunit_exposure", "app_background", "app_clear_data", "app_exception", "app_remove",
        "app_store_refund", "app_store_subscription_cancel", "app_store_subscription_convert",
        "app_store_subscription_renew", "app_uninstall", "app_update", "app_upgrade",
        "dynamic_link_app_open", "dynamic_link_app_update", "dynamic_link_first_open", "error",
        "firebase_campaign", "firebase_in_app_message_action", "firebase_in_app_message_dismiss",
        "firebase_in_app_message_impression", "first_open", "first_visit", "in_app_purchase",
        "notification_dismiss", "notification_foreground", "notification_open",
        "notification_receive", "os_update", "page_view", "session_start",
        "session_start_with_rollout", "user_engagement",
    }
)  # fmt: skip
RESERVED_PARAM_NAMES = frozenset({"firebase_conversion"})
RESERVED_USER_PROPERTY_NAMES = frozenset(
    {"first_open_time", "first_visit_time", "last_deep_link_referrer", "user_id"}
    | {"first_open_after_install"}
)
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
CONSENT_KEYS = frozenset({"ad_user_data", "ad_personalization"})
CONSENT_VALUES = frozenset({"GRANTED", "DENIED"})

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_CURRENCY = re.compile(r"[A-Z]{3}")
# The `_ga` cookie value: accepted since 2026-02, but not the form Google recommends.
_COOKIE_CLIENT_ID = re.compile(r"GA\d\.\d+\.\d+\.\d+")
COOKIE_FORM_WARNING = "client_id in _ga cookie form; the recommended form is <random>.<timestamp>"


@dataclass(frozen=True)
class ValidationMessage:
    """One entry of `validationMessages`; `event_index` None means the whole request."""

    field_path: str
    description: str
    validation_code: str
    event_index: int | None = None

    def to_json(self) -> dict[str, str]:
        return {
            "fieldPath": self.field_path,
            "description": self.description,
            "validationCode": self.validation_code,
        }


@dataclass(frozen=True)
class MPValidation:
    """The parsed payload (None if it is not a JSON object) and what is wrong with it."""

    payload: dict[str, Any] | None
    messages: list[ValidationMessage] = field(default_factory=list)

    @property
    def request_messages(self) -> list[ValidationMessage]:
        return [m for m in self.messages if m.event_index is None]

    def event_messages(self, index: int) -> list[ValidationMessage]:
        return [m for m in self.messages if m.event_index == index]


class _JsonObject(dict[str, Any]):
    """A JSON object that remembers keys it saw twice (json.loads keeps only the last)."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    keys = [key for key, _ in pairs]
    obj.duplicates = tuple(sorted({k for k in keys if keys.count(k) > 1}))
    return obj


# --------------------------------------------------------------------------- validation


def validate_mp_body(body: bytes, *, now: datetime) -> MPValidation:
    """Parse and validate one Measurement Protocol request body."""
    try:
        payload = json.loads(body or b"null", object_pairs_hook=_object_pairs)
    except ValueError:
        message = ValidationMessage(
            "", "Unable to parse the request body as JSON.", "VALUE_INVALID"
        )
        return MPValidation(None, [message])
    if not isinstance(payload, dict):
        message = ValidationMessage("", "The request body must be a JSON object.", "VALUE_INVALID")
        return MPValidation(None, [message])
    messages = list(validate_mp_payload(payload, now=now, body_size=len(body)))
    return MPValidation(payload, messages)


def validate_mp_payload(
    payload: dict[str, Any], *, now: datetime, body_size: int = 0
) -> Iterator[ValidationMessage]:
    """Every rule of API-NOTES §3 the payload breaks."""
    if body_size >= MAX_BODY_BYTES:
        yield _msg("", f"Body must be under {MAX_BODY_BYTES} bytes.", "VALUE_OUT_OF_BOUNDS")
    yield from _check_client(payload)
    yield from _check_timestamp("timestamp_micros", payload.get("timestamp_micros"), now, None)
    yield from _check_consent(payload.get("consent"))
    yield from _check_user_data(payload.get("user_data"))
    yield from _check_user_properties(payload.get("user_properties"))
    yield from _check_events(payload.get("events"), now)


def _msg(path: str, description: str, code: str, index: int | None = None) -> ValidationMessage:
    return ValidationMessage(path, description, code, index)


def _check_client(payload: dict[str, Any]) -> Iterator[ValidationMessage]:
    client_id = payload.get("client_id")
    if client_id is None or client_id == "":
        yield _msg("client_id", "client_id is required.", "VALUE_REQUIRED")
    elif not isinstance(client_id, str):
        yield _msg("client_id", "client_id must be a string.", "VALUE_INVALID")
    user_id = payload.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        yield _msg("user_id", "user_id must be a string.", "VALUE_INVALID")
    elif isinstance(user_id, str) and len(user_id) > MAX_USER_ID_LENGTH:
        yield _msg("user_id", f"user_id longer than {MAX_USER_ID_LENGTH}.", "VALUE_OUT_OF_BOUNDS")


def _check_timestamp(
    path: str, value: Any, now: datetime, index: int | None
) -> Iterator[ValidationMessage]:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        yield _msg(
            path, "timestamp_micros must be an integer (microseconds).", "VALUE_INVALID", index
        )
        return
    moment = datetime.fromtimestamp(int(value) / 1_000_000, tz=UTC)
    if moment < now - MAX_BACKDATE:
        yield _msg(
            path, "timestamp_micros is more than 72 hours old.", "VALUE_OUT_OF_BOUNDS", index
        )
    elif moment > now + MAX_AHEAD:
        yield _msg(path, "timestamp_micros is in the future.", "VALUE_OUT_OF_BOUNDS", index)


def _check_consent(consent: Any) -> Iterator[ValidationMessage]:
    if consent is None:
        return
    if not isinstance(consent, dict):
        yield _msg("consent", "consent must be an object.", "VALUE_INVALID")
        return
    for key, value in consent.items():
        if key not in CONSENT_KEYS:
            yield _msg(f"consent.{key}", "Unknown consent field.", "NAME_INVALID")
        elif value not in CONSENT_VALUES:
            yield _msg(f"consent.{key}", "Consent must be GRANTED or DENIED.", "VALUE_INVALID")


def _check_user_data(user_data: Any) -> Iterator[ValidationMessage]:
    """User-provided data goes hashed (API-NOTES §2): a `sha256_*` value that is not 64 hex
    characters is clear text, or hashed wrongly."""
    if user_data is None:
        return
    if not isinstance(user_data, dict):
        yield _msg("user_data", "user_data must be an object.", "VALUE_INVALID")
        return
    for key, values in user_data.items():
        path = f"user_data.{key}"
        if key == "address":
            continue  # hashed name and street parts, not sent by the connector
        if not key.startswith("sha256_"):
            yield _msg(path, "Unknown user_data field.", "NAME_INVALID")
        elif not isinstance(values, list) or not all(
            isinstance(v, str) and _SHA256_HEX.fullmatch(v) for v in values
        ):
            yield _msg(path, "Values must be SHA-256 digests in hex.", "VALUE_INVALID")


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _check_user_properties(props: Any) -> Iterator[ValidationMessage]:
    if props is None:
        return
    if not isinstance(props, dict):
        yield _msg("user_properties", "user_properties must be an object.", "VALUE_INVALID")
        return
    if len(props) > MAX_USER_PROPERTIES:
        yield _msg("user_properties", f"More than {MAX_USER_PROPERTIES}.", "EXCEEDED_MAX_ENTITIES")
    yield from _duplicates("user_properties", props, None)
    for name, wrapper in props.items():
        path = f"user_properties.{name}"
        yield from _check_name(
            path, name, MAX_USER_PROPERTY_NAME_LENGTH, RESERVED_USER_PROPERTY_NAMES, None
        )
        if not isinstance(wrapper, dict):
            yield _msg(path, 'A user property must be {"value": ...}.', "VALUE_INVALID")
        elif len(str(wrapper.get("value", ""))) > MAX_USER_PROPERTY_VALUE_LENGTH:
            yield _msg(f"{path}.value", "User property value too long.", "VALUE_OUT_OF_BOUNDS")


def _duplicates(path: str, obj: dict[str, Any], index: int | None) -> Iterator[ValidationMessage]:
    for name in getattr(obj, "duplicates", ()):
        yield _msg(f"{path}.{name}", f"Name [{name}] is duplicated.", "NAME_DUPLICATED", index)


def _check_name(
    path: str, name: str, max_length: int, reserved: frozenset[str], index: int | None
) -> Iterator[ValidationMessage]:
    # Order matters: a leading '_' is NAME_INVALID at Google, not NAME_RESERVED.
    if len(name) > max_length:
        yield _msg(
            path,
            f"Name [{name}] longer than {max_length} characters.",
            "VALUE_OUT_OF_BOUNDS",
            index,
        )
    elif not _NAME.fullmatch(name):
        description = f"Name [{name}] must start with a letter and use only [A-Za-z0-9_]."
        yield _msg(path, description, "NAME_INVALID", index)
    elif name in reserved or name.startswith(RESERVED_PREFIXES):
        yield _msg(path, f"Name [{name}] is reserved.", "NAME_RESERVED", index)


def _check_events(events: Any, now: datetime) -> Iterator[ValidationMessage]:
    if not events:
        yield _msg("events", "At least one event is required.", "VALUE_REQUIRED")
        return
    if not isinstance(events, list):
        yield _msg("events", "events must be an array.", "VALUE_INVALID")
        return
    if len(events) > MAX_EVENTS:
        yield _msg("events", f"More than {MAX_EVENTS} events.", "EXCEEDED_MAX_ENTITIES")
    for index, event in enumerate(events):
        yield from _check_event(index, event, now)


def _check_event(index: int, event: Any, now: datetime) -> Iterator[ValidationMessage]:
    path = f"events[{index}]"
    if not isinstance(event, dict):
        yield _msg(path, f"Event at index: [{index}] must be an object.", "VALUE_INVALID", index)
        return
    name = event.get("name")
    if not isinstance(name, str) or not name:
        yield _msg(
            f"{path}.name", f"Event at index: [{index}] has no name.", "VALUE_REQUIRED", index
        )
    else:
        yield from _check_name(f"{path}.name", name, MAX_NAME_LENGTH, RESERVED_EVENT_NAMES, index)
    yield from _check_timestamp(
        f"{path}.timestamp_micros", event.get("timestamp_micros"), now, index
    )
    yield from _check_params(f"{path}.params", event.get("params"), index)


def _check_params(path: str, params: Any, index: int) -> Iterator[ValidationMessage]:
    if params is None:
        return
    if not isinstance(params, dict):
        yield _msg(path, "params must be an object.", "VALUE_INVALID", index)
        return
    if len(params) > MAX_PARAMS:
        yield _msg(path, f"More than {MAX_PARAMS} params.", "EXCEEDED_MAX_ENTITIES", index)
    yield from _duplicates(path, params, index)
    for name, value in params.items():
        yield from _check_name(f"{path}.{name}", name, MAX_NAME_LENGTH, RESERVED_PARAM_NAMES, index)
        yield from _check_param_value(f"{path}.{name}", name, value, index)
    yield from _check_value_currency(path, params, index)


def _check_param_value(path: str, name: str, value: Any, index: int) -> Iterator[ValidationMessage]:
    if name == "items" and isinstance(value, list):
        return  # the one documented array parameter
    if isinstance(value, str):
        if len(value) > MAX_PARAM_VALUE_LENGTH:
            yield _msg(
                path, f"Value longer than {MAX_PARAM_VALUE_LENGTH}.", "VALUE_OUT_OF_BOUNDS", index
            )
    elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        yield _msg(
            path, "A param value must be a string or a finite number.", "VALUE_INVALID", index
        )


def _check_value_currency(
    path: str, params: dict[str, Any], index: int
) -> Iterator[ValidationMessage]:
    currency = params.get("currency")
    if "value" in params and currency is None:
        yield _msg(
            f"{path}.currency", "currency is required when value is set.", "VALUE_REQUIRED", index
        )
    if currency is not None and not (isinstance(currency, str) and _CURRENCY.fullmatch(currency)):
        yield _msg(f"{path}.currency", "currency must be an ISO 4217 code.", "VALUE_INVALID", index)
    value = params.get("value")
    if isinstance(value, str):
        yield _msg(f"{path}.value", "value must be a number.", "VALUE_INVALID", index)


# --------------------------------------------------------------------------- faults


def server_error_fault(status: int = 503) -> Fault:
    return Fault(status=status, body={"error": {"code": status}}, path_contains=COLLECT_PATH)


def rate_limited_fault(retry_after_seconds: int | None = None) -> Fault:
    headers = {} if retry_after_seconds is None else {"Retry-After": str(retry_after_seconds)}
    return Fault(
        status=429, body={"error": {"code": 429}}, headers=headers, path_contains=COLLECT_PATH
    )


def slow_fault(delay_seconds: float) -> Fault:
    """Answer 503 after `delay_seconds`: a shorter client timeout sees a timeout, and the
    event is not recorded either way (a 204 cannot carry the FaultQueue's JSON body)."""
    body = {"error": {"code": 503}}
    return Fault(status=503, body=body, delay_seconds=delay_seconds, path_contains=COLLECT_PATH)


# --------------------------------------------------------------------------- the emulator


class GA4Emulator(ServedEmulator):
    """A thread-safe in-memory Measurement Protocol endpoint on https://127.0.0.1:<port>."""

    def __init__(
        self,
        *,
        measurement_id: str = "G-TEST000001",
        api_secret: str = "test-api-secret",  # noqa: S107 - a sandbox value, not a credential
        faults: FaultQueue | None = None,
        clock: Callable[[], datetime] | None = None,
        port: int = 0,
    ) -> None:
        self.measurement_id = measurement_id
        self.api_secret = api_secret
        self.faults = faults if faults is not None else FaultQueue()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._reset_state()
        self._server = EmulatorServer(self._handle, port=port)

    def _reset_state(self) -> None:
        self._requests = 0
        self._debug_requests = 0
        self._wrong_secret = 0
        self._accepted: list[dict[str, Any]] = []
        self._dropped: list[dict[str, Any]] = []
        self._bodies: list[str] = []

    def reset(self) -> None:
        """Forget everything received and pending faults.

        Cheaper than a new emulator: stopping a server waits out its 0.5 s poll.
        """
        self.faults.clear()
        with self._lock:
            self._reset_state()

    # -- what arrived (copies, so readers never race the server threads)

    @property
    def requests(self) -> int:
        """Calls to /mp/collect, including faulted and wrong-secret ones."""
        with self._lock:
            return self._requests

    @property
    def debug_requests(self) -> int:
        with self._lock:
            return self._debug_requests

    @property
    def wrong_secret(self) -> int:
        """/mp/collect calls with a wrong api_secret or measurement_id (answered 204, ignored)."""
        with self._lock:
            return self._wrong_secret

    @property
    def accepted(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._accepted)

    @property
    def dropped(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._dropped)

    @property
    def received_bodies(self) -> list[str]:
        """Every body received at either endpoint, in arrival order."""
        with self._lock:
            return list(self._bodies)

    # -- HTTP

    def _handle(self, request: Request) -> Response:
        if request.method == "POST" and request.path == COLLECT_PATH:
            return self._collect(request)
        if request.method == "POST" and request.path == DEBUG_PATH:
            return self._debug(request)
        return Response(404, raw=b"Not Found", content_type="text/plain")

    def _debug(self, request: Request) -> Response:
        with self._lock:
            self._debug_requests += 1
            self._bodies.append(request.body.decode("utf-8", errors="replace"))
        injected = self.faults.take(request.path)
        if injected is not None:
            return injected
        result = validate_mp_body(request.body, now=self._clock())
        return Response(200, {"validationMessages": [m.to_json() for m in result.messages]})

    def _collect(self, request: Request) -> Response:
        with self._lock:
            self._requests += 1
            self._bodies.append(request.body.decode("utf-8", errors="replace"))
        injected = self.faults.take(request.path)
        if injected is not None:
            return injected
        if not self._credentials_ok(request):
            with self._lock:
                self._wrong_secret += 1
        else:
            self._store(validate_mp_body(request.body, now=self._clock()))
        return Response(204, raw=b"", content_type="text/plain")

    def _credentials_ok(self, request: Request) -> bool:
        query = request.query
        return (
            query.get("measurement_id") == self.measurement_id
            and query.get("api_secret") == self.api_secret
        )

    def _store(self, result: MPValidation) -> None:
        arrival = int(self._clock().timestamp() * 1_000_000)
        payload = result.payload
        if payload is None:
            reason = "; ".join(m.description for m in result.messages)
            with self._lock:
                self._dropped.append({"measurement_id": self.measurement_id, "reason": reason})
            return
        events = payload.get("events")
        records = [
            self._event_record(payload, i, event, result, arrival)
            for i, event in enumerate(events if isinstance(events, list) else [])
        ]
        with self._lock:
            for record, ok in records:
                (self._accepted if ok else self._dropped).append(record)

    def _event_record(
        self, payload: dict[str, Any], index: int, event: Any, result: MPValidation, arrival: int
    ) -> tuple[dict[str, Any], bool]:
        # A request-level problem drops every event; an event-level one only that event.
        problems = result.request_messages + result.event_messages(index)
        event = event if isinstance(event, dict) else {}
        timestamp = event.get("timestamp_micros", payload.get("timestamp_micros", arrival))
        record = {
            "measurement_id": self.measurement_id,
            "client_id": payload.get("client_id"),
            "user_id": payload.get("user_id"),
            "name": event.get("name"),
            "params": dict(event.get("params") or {}),
            "timestamp_micros": int(timestamp) if str(timestamp).isdigit() else timestamp,
            "consent": payload.get("consent"),
            "user_properties": payload.get("user_properties"),
        }
        client_id = payload.get("client_id")
        if isinstance(client_id, str) and _COOKIE_CLIENT_ID.fullmatch(client_id):
            record["warnings"] = [COOKIE_FORM_WARNING]  # kept, as GA4 does: a warning only
        if problems:
            record["reason"] = "; ".join(f"{m.validation_code}: {m.description}" for m in problems)
            record["validation_codes"] = [m.validation_code for m in problems]
        return record, not problems
