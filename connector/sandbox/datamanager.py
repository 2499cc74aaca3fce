"""A local Data Manager API (IngestionService) speaking the REST wire format.

The real `google.ads.datamanager_v1.IngestionServiceClient(transport="rest")`
talks to it unchanged over TLS (API-NOTES §1, §6):

- `POST /v1/events:ingest`: the body is the JSON form of `IngestEventsRequest`
  (proto3 JSON, integer enums). It is parsed with the library's own message
  type, so an unknown field or a wrong type fails here as it would at Google.
- `GET /v1/requestStatus:retrieve?requestId=...`: a `RetrieveRequestStatusResponse`.

The API fails fast: one invalid event rejects the whole request with HTTP 400,
a `google.rpc.Status` body whose message names the first offending field
(`events[3].ad_identifiers.gclid`) and a `google.rpc.BadRequest` detail listing
every violation. Reasons are `google.ads.datamanager_v1.ErrorReason` names.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.ads.datamanager_v1 import (
    ConsentStatus,
    Encoding,
    EventSource,
    IngestEventsRequest,
    ProductAccount,
    RequestStatusPerDestination,
    RetrieveRequestStatusResponse,
)
from google.protobuf import json_format

from connector.sandbox.faults import Fault, FaultQueue
from connector.sandbox.server import EmulatorServer, Request, Response, ServedEmulator

INGEST_PATH = "/v1/events:ingest"
STATUS_PATH = "/v1/requestStatus:retrieve"
ERROR_DOMAIN = "datamanager.googleapis.com"

# Documented request limits (developers.google.com/data-manager/api/limits).
MAX_EVENTS = 2_000
MAX_DESTINATIONS = 10
MAX_USER_IDENTIFIERS = 10
# "Not in the future" with a little room for clock skew between hosts.
FUTURE_TOLERANCE = timedelta(minutes=1)

# A deliberately small ISO 4217 set: enough for the connector's markets, and
# 'XYZ'-style typos must fail as INVALID_CURRENCY_CODE.
KNOWN_CURRENCIES = frozenset(
    {"AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "INR", "JPY"}
    | {"MXN", "NOK", "NZD", "PLN", "SEK", "SGD", "USD", "ZAR"}
)

_DIGITS = re.compile(r"[0-9]+")
_CLICK_ID = re.compile(r"[A-Za-z0-9_-]+")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_REGION = re.compile(r"[A-Z]{2}")
# A '+' followed by digits is an E.164 phone number that was never hashed.
_CLEAR_PHONE = re.compile(r"\+\s*\d")

_CONSENT_VALUES = frozenset(int(v) for v in ConsentStatus.__members__.values())
# EVENT_SOURCE_UNSPECIFIED (0) is what an unset field reads as: not a valid source.
_EVENT_SOURCES = frozenset(int(v) for v in EventSource.__members__.values() if int(v) != 0)
_GOOGLE_ADS = int(ProductAccount.AccountType.GOOGLE_ADS)


@dataclass(frozen=True)
class Violation:
    """One broken rule: a proto field path, why, and an `ErrorReason` name."""

    field: str
    description: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "description": self.description, "reason": self.reason}


# --------------------------------------------------------------------------- error bodies


def status_body(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A `google.rpc.Status` as Google's REST front end renders it."""
    return {"error": {"code": code, "message": message, "status": status, "details": details or []}}


def _error_info(reason: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"@type": "type.googleapis.com/google.rpc.ErrorInfo"}
    info.update(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {})
    return info


def _request_info(request_id: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}


def invalid_argument_body(violations: list[Violation], request_id: str) -> dict[str, Any]:
    first = violations[0]
    message = f"Request contains an invalid argument. {first.field}: {first.description}"
    if len(violations) > 1:
        message += f" (and {len(violations) - 1} more violation(s))"
    details = [
        _error_info(first.reason, {"field": first.field}),
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [v.to_json() for v in violations],
        },
        _request_info(request_id),
    ]
    return status_body(400, "INVALID_ARGUMENT", message, details)


def resource_exhausted_fault(retry_after_seconds: int | None = None) -> Fault:
    """HTTP 429 as the quota layer sends it (the REST client raises TooManyRequests)."""
    headers = {} if retry_after_seconds is None else {"Retry-After": str(retry_after_seconds)}
    message = "Quota exceeded for quota metric 'Requests' of service 'datamanager.googleapis.com'."
    body = status_body(429, "RESOURCE_EXHAUSTED", message, [_error_info("RESOURCE_EXHAUSTED")])
    return Fault(status=429, body=body, headers=headers, path_contains=INGEST_PATH)


def unavailable_fault() -> Fault:
    """HTTP 503: note the GAPIC default retry retries it (5 s initial backoff)."""
    body = status_body(503, "UNAVAILABLE", "The service is currently unavailable.")
    return Fault(status=503, body=body, path_contains=INGEST_PATH)


def internal_fault() -> Fault:
    body = status_body(
        500, "INTERNAL", "Internal error encountered.", [_error_info("INTERNAL_ERROR")]
    )
    return Fault(status=500, body=body, path_contains=INGEST_PATH)


def slow_fault(delay_seconds: float) -> Fault:
    """Answer only after `delay_seconds`: a client timeout shorter than that sees a timeout."""
    body = status_body(504, "DEADLINE_EXCEEDED", "Deadline exceeded.")
    return Fault(status=504, body=body, delay_seconds=delay_seconds, path_contains=INGEST_PATH)


# --------------------------------------------------------------------------- validation


def validate_ingest_request(
    request: Any, *, now: datetime, max_events: int = MAX_EVENTS
) -> list[Violation]:
    """Every documented rule `request` (an `IngestEventsRequest.pb()` message) breaks."""
    found = list(_check_destinations(request.destinations))
    found += _check_request_level(request, max_events)
    references = {d.reference for d in request.destinations if d.reference}
    for index, event in enumerate(request.events):
        found += _check_event(f"events[{index}]", event, request.encoding, references, now)
    return found


def _check_destinations(destinations: Any) -> Iterator[Violation]:
    if not destinations:
        yield Violation(
            "destinations", "At least one destination is required.", "REQUIRED_FIELD_MISSING"
        )
    if len(destinations) > MAX_DESTINATIONS:
        yield Violation(
            "destinations", f"At most {MAX_DESTINATIONS} destinations.", "TOO_MANY_DESTINATIONS"
        )
    seen: set[str] = set()
    for index, destination in enumerate(destinations):
        path = f"destinations[{index}]"
        yield from _check_account(f"{path}.operating_account", destination, "operating_account")
        if destination.HasField("login_account"):
            yield from _check_account(f"{path}.login_account", destination, "login_account")
        yield from _check_product_destination(path, destination.product_destination_id)
        yield from _check_reference(path, destination.reference, len(destinations), seen)


def _check_account(path: str, destination: Any, name: str) -> Iterator[Violation]:
    if not destination.HasField(name):
        yield Violation(path, "The account is required.", "REQUIRED_FIELD_MISSING")
        return
    account = getattr(destination, name)
    if not _DIGITS.fullmatch(account.account_id):
        yield Violation(
            f"{path}.account_id", "Must be the customer id, digits only.", "INVALID_FORMAT"
        )
    if account.account_type != _GOOGLE_ADS:
        yield Violation(f"{path}.account_type", "Must be GOOGLE_ADS.", "INVALID_ENUM_VALUE")


def _check_product_destination(path: str, value: str) -> Iterator[Violation]:
    field = f"{path}.product_destination_id"
    if not value:
        yield Violation(field, "The conversion action id is required.", "REQUIRED_FIELD_MISSING")
    elif not _DIGITS.fullmatch(value):
        yield Violation(
            field, "Conversion action id must be digits.", "INVALID_CONVERSION_ACTION_ID"
        )


def _check_reference(path: str, reference: str, count: int, seen: set[str]) -> Iterator[Violation]:
    # A reference only matters (and is then required) when events must choose.
    if count > 1 and not reference:
        yield Violation(
            f"{path}.reference", "Required with several destinations.", "REQUIRED_FIELD_MISSING"
        )
    elif reference and reference in seen:
        yield Violation(
            f"{path}.reference", "Duplicate reference.", "DUPLICATE_DESTINATION_REFERENCE"
        )
    seen.add(reference)


def _check_request_level(request: Any, max_events: int) -> Iterator[Violation]:
    if not request.events:
        yield Violation("events", "At least one event is required.", "REQUIRED_FIELD_MISSING")
    if len(request.events) > max_events:
        yield Violation(
            "events",
            f"At most {max_events} events per request, got {len(request.events)}.",
            "TOO_MANY_EVENTS",
        )
    has_user_data = any(e.user_data.user_identifiers for e in request.events)
    if has_user_data and request.encoding == int(Encoding.ENCODING_UNSPECIFIED):
        yield Violation("encoding", "Required when user data is present.", "REQUIRED_FIELD_MISSING")
    yield from _check_consent("consent", request.consent)


def _check_consent(path: str, consent: Any) -> Iterator[Violation]:
    for name in ("ad_user_data", "ad_personalization"):
        if getattr(consent, name) not in _CONSENT_VALUES:
            yield Violation(f"{path}.{name}", "Unknown consent status.", "INVALID_ENUM_VALUE")


def _check_event(
    path: str, event: Any, encoding: int, references: set[str], now: datetime
) -> Iterator[Violation]:
    yield from _check_timestamp(path, event, now)
    if not event.transaction_id:
        yield Violation(
            f"{path}.transaction_id", "Required for conversions.", "REQUIRED_FIELD_MISSING"
        )
    if event.event_source not in _EVENT_SOURCES:
        yield Violation(
            f"{path}.event_source", "A known event source is required.", "REQUIRED_FIELD_MISSING"
        )
    yield from _check_ad_identifiers(f"{path}.ad_identifiers", event.ad_identifiers)
    yield from _check_value(path, event)
    yield from _check_user_data(f"{path}.user_data", event.user_data, encoding)
    yield from _check_consent(f"{path}.consent", event.consent)
    for j, reference in enumerate(event.destination_references):
        if reference not in references:
            field = f"{path}.destination_references[{j}]"
            yield Violation(field, "Names no destination of this request.", "INVALID_DESTINATION")
    if not _click_ids(event.ad_identifiers) and not event.user_data.user_identifiers:
        yield Violation(path, "Needs a click id or user identifiers.", "NO_IDENTIFIERS_PROVIDED")


def _check_timestamp(path: str, event: Any, now: datetime) -> Iterator[Violation]:
    if not event.HasField("event_timestamp"):
        yield Violation(f"{path}.event_timestamp", "Required.", "REQUIRED_FIELD_MISSING")
    elif event.event_timestamp.ToDatetime(tzinfo=UTC) > now + FUTURE_TOLERANCE:
        yield Violation(
            f"{path}.event_timestamp", "Must not be in the future.", "EVENT_TIME_INVALID"
        )


def _click_ids(ids: Any) -> list[str]:
    return [name for name in ("gclid", "gbraid", "wbraid") if getattr(ids, name)]


def _check_ad_identifiers(path: str, ids: Any) -> Iterator[Violation]:
    present = _click_ids(ids)
    if len(present) > 1:
        yield Violation(
            path, f"At most one of gclid, gbraid, wbraid; got {present}.", "INVALID_ARGUMENT"
        )
    for name in present:
        if not _CLICK_ID.fullmatch(getattr(ids, name)):
            yield Violation(
                f"{path}.{name}", "Allowed characters are [A-Za-z0-9_-].", "INVALID_FORMAT"
            )


def _check_value(path: str, event: Any) -> Iterator[Violation]:
    value = event.conversion_value
    if not math.isfinite(value) or value < 0:
        yield Violation(
            f"{path}.conversion_value", "Must be finite and >= 0.", "INVALID_NUMBER_FORMAT"
        )
    currency = event.currency
    if currency and not (_CURRENCY.fullmatch(currency) and currency in KNOWN_CURRENCIES):
        yield Violation(f"{path}.currency", "Unsupported currency code.", "INVALID_CURRENCY_CODE")


def _check_user_data(path: str, user_data: Any, encoding: int) -> Iterator[Violation]:
    identifiers = user_data.user_identifiers
    if len(identifiers) > MAX_USER_IDENTIFIERS:
        yield Violation(
            path, f"At most {MAX_USER_IDENTIFIERS} identifiers.", "TOO_MANY_USER_IDENTIFIERS"
        )
    for j, identifier in enumerate(identifiers):
        yield from _check_identifier(f"{path}.user_identifiers[{j}]", identifier, encoding)


def _check_identifier(path: str, identifier: Any, encoding: int) -> Iterator[Violation]:
    kind = identifier.WhichOneof("identifier")
    if kind in ("email_address", "phone_number"):
        yield from _check_hashed(f"{path}.{kind}", getattr(identifier, kind), encoding)
    elif kind == "address":
        yield from _check_address(f"{path}.address", identifier.address, encoding)
    else:
        yield Violation(path, "An identifier needs a value.", "REQUIRED_FIELD_MISSING")


def _check_address(path: str, address: Any, encoding: int) -> Iterator[Violation]:
    for name in ("given_name", "family_name"):
        yield from _check_hashed(f"{path}.{name}", getattr(address, name), encoding)
    if not _REGION.fullmatch(address.region_code):
        yield Violation(f"{path}.region_code", "Two-letter region code required.", "INVALID_FORMAT")
    if not address.postal_code:
        yield Violation(f"{path}.postal_code", "Required.", "REQUIRED_FIELD_MISSING")


def _check_hashed(path: str, value: str, encoding: int) -> Iterator[Violation]:
    # Descriptions never echo the value: it may be the clear-text PII itself.
    if "@" in value or _CLEAR_PHONE.search(value):
        yield Violation(
            path, "Looks like clear text; send the SHA-256 hash.", "INVALID_SHA256_FORMAT"
        )
    elif encoding == int(Encoding.HEX) and not _HEX_SHA256.fullmatch(value):
        yield Violation(path, "Must be 64 lowercase hex characters.", "INVALID_HEX_ENCODING")
    elif encoding == int(Encoding.BASE64) and not _is_base64_sha256(value):
        yield Violation(path, "Must be base64 of a 32-byte SHA-256.", "INVALID_BASE64_ENCODING")


def _is_base64_sha256(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


# --------------------------------------------------------------------------- the emulator


@dataclass
class _StatusEntry:
    destination: Any  # a Destination pb
    record_count: int


class DataManagerEmulator(ServedEmulator):
    """A thread-safe in-memory IngestionService on https://127.0.0.1:<port>."""

    def __init__(
        self,
        *,
        faults: FaultQueue | None = None,
        max_events: int = MAX_EVENTS,
        clock: Callable[[], datetime] | None = None,
        port: int = 0,
    ) -> None:
        self.faults = faults if faults is not None else FaultQueue()
        self.max_events = max_events
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._reset_state()
        self._server = EmulatorServer(self._handle, port=port)

    def _reset_state(self) -> None:
        self._requests = 0
        self._rejected_requests = 0
        self._validated_requests = 0
        self._adjustments = 0
        self._accepted: list[dict[str, Any]] = []
        self._conversions: dict[tuple[str, str], dict[str, Any]] = {}
        self._bodies: list[str] = []
        self._statuses: dict[str, list[_StatusEntry]] = {}
        self._reject_transaction_ids: set[str] = set()
        self._reject_gclids: set[str] = set()

    def reset(self) -> None:
        """Forget everything received, the switches and pending faults.

        Cheaper than a new emulator: stopping a server waits out its 0.5 s poll.
        """
        self.faults.clear()
        with self._lock:
            self._reset_state()

    # -- switches

    def reject(self, *, transaction_ids: Iterable[str] = (), gclids: Iterable[str] = ()) -> None:
        """Make any request carrying these ids fail validation (to test batch bisection)."""
        with self._lock:
            self._reject_transaction_ids.update(transaction_ids)
            self._reject_gclids.update(gclids)

    def clear_rejections(self) -> None:
        with self._lock:
            self._reject_transaction_ids.clear()
            self._reject_gclids.clear()

    # -- what arrived (copies, so readers never race the server threads)

    @property
    def requests(self) -> int:
        """Ingest calls received, including faulted and rejected ones."""
        with self._lock:
            return self._requests

    @property
    def rejected_requests(self) -> int:
        with self._lock:
            return self._rejected_requests

    @property
    def validated_requests(self) -> int:
        with self._lock:
            return self._validated_requests

    @property
    def adjustments(self) -> int:
        with self._lock:
            return self._adjustments

    @property
    def accepted(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._accepted)

    @property
    def conversions(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Latest state per (product_destination_id, transaction_id)."""
        with self._lock:
            return dict(self._conversions)

    @property
    def received_bodies(self) -> list[str]:
        with self._lock:
            return list(self._bodies)

    # -- HTTP

    def _handle(self, request: Request) -> Response:
        if request.method == "POST" and request.path == INGEST_PATH:
            return self._ingest(request)
        if request.method == "GET" and request.path == STATUS_PATH:
            return self._retrieve_status(request)
        message = f"No route for {request.method} {request.path}."
        return Response(404, status_body(404, "NOT_FOUND", message))

    def _ingest(self, request: Request) -> Response:
        with self._lock:
            self._requests += 1
            self._bodies.append(request.body.decode("utf-8", errors="replace"))
        injected = self.faults.take(request.path)
        if injected is not None:
            return injected
        request_id = uuid.uuid4().hex
        parsed = _parse_ingest_body(request.body)
        if isinstance(parsed, Violation):
            return self._reject([parsed], request_id)
        violations = validate_ingest_request(parsed, now=self._clock(), max_events=self.max_events)
        violations += self._switched_off(parsed)
        if violations:
            return self._reject(violations, request_id)
        if parsed.validate_only:
            with self._lock:
                self._validated_requests += 1
            return Response(200, {})
        self._record(parsed, request_id)
        return Response(200, {"requestId": request_id})

    def _reject(self, violations: list[Violation], request_id: str) -> Response:
        with self._lock:
            self._rejected_requests += 1
        return Response(400, invalid_argument_body(violations, request_id))

    def _switched_off(self, request: Any) -> list[Violation]:
        with self._lock:
            bad_ids, bad_gclids = set(self._reject_transaction_ids), set(self._reject_gclids)
        found = []
        for index, event in enumerate(request.events):
            if event.transaction_id in bad_ids:
                field = f"events[{index}].transaction_id"
                found.append(Violation(field, "Rejected by the emulator switch.", "INVALID_EVENT"))
            if event.ad_identifiers.gclid in bad_gclids:
                field = f"events[{index}].ad_identifiers.gclid"
                found.append(Violation(field, "The gclid could not be decoded.", "INVALID_FORMAT"))
        return found

    def _record(self, request: Any, request_id: str) -> None:
        counts = [0] * len(request.destinations)
        with self._lock:
            for event in request.events:
                for d_index in _target_indexes(event, request.destinations):
                    counts[d_index] += 1
                    self._record_one(request, event, request.destinations[d_index], request_id)
            self._statuses[request_id] = [
                _StatusEntry(d, n) for d, n in zip(request.destinations, counts, strict=True)
            ]

    def _record_one(self, request: Any, event: Any, destination: Any, request_id: str) -> None:
        # Same transaction id + conversion action = an adjustment, never a second conversion.
        key = (destination.product_destination_id, event.transaction_id)
        is_adjustment = key in self._conversions
        self._adjustments += is_adjustment
        entry = _event_record(request, event, destination, request_id, is_adjustment)
        self._conversions[key] = entry
        self._accepted.append(entry)

    def _retrieve_status(self, request: Request) -> Response:
        request_id = request.query.get("requestId", "")
        with self._lock:
            entries = self._statuses.get(request_id)
        if entries is None:
            violation = Violation("request_id", "Unknown request id.", "INVALID_REQUEST_ID")
            return Response(400, invalid_argument_body([violation], uuid.uuid4().hex))
        return Response(200, _status_response(entries))


def _parse_ingest_body(body: bytes) -> Any:
    """The request as the library's protobuf type, or a Violation for a malformed body."""
    message = IngestEventsRequest.pb()()
    try:
        json_format.Parse(body or b"{}", message)
    except json_format.ParseError as exc:
        return Violation("", f"Invalid JSON payload received. {exc}", "INVALID_ARGUMENT")
    return message


def _target_indexes(event: Any, destinations: Any) -> list[int]:
    """Empty destination_references means every destination of the request."""
    wanted = set(event.destination_references)
    return [i for i, d in enumerate(destinations) if not wanted or d.reference in wanted]


def _event_record(
    request: Any, event: Any, destination: Any, request_id: str, is_adjustment: bool
) -> dict[str, Any]:
    consent = event.consent if event.HasField("consent") else request.consent
    return {
        "request_id": request_id,
        "destination_id": destination.product_destination_id,
        "destination_reference": destination.reference,
        "operating_account_id": destination.operating_account.account_id,
        "login_account_id": destination.login_account.account_id,
        "transaction_id": event.transaction_id,
        "event_timestamp": event.event_timestamp.ToDatetime(tzinfo=UTC),
        "gclid": event.ad_identifiers.gclid,
        "gbraid": event.ad_identifiers.gbraid,
        "wbraid": event.ad_identifiers.wbraid,
        "conversion_value": event.conversion_value,
        "currency": event.currency,
        "event_source": EventSource(event.event_source).name,
        "consent": {
            "ad_user_data": ConsentStatus(consent.ad_user_data).name,
            "ad_personalization": ConsentStatus(consent.ad_personalization).name,
        },
        "user_identifiers": [
            json_format.MessageToDict(u, preserving_proto_field_name=True)
            for u in event.user_data.user_identifiers
        ],
        "custom_variables": {v.variable: v.value for v in event.custom_variables},
        "is_adjustment": is_adjustment,
    }


def _status_response(entries: list[_StatusEntry]) -> dict[str, Any]:
    response = RetrieveRequestStatusResponse.pb()()
    for entry in entries:
        item = response.request_status_per_destination.add()
        item.destination.CopyFrom(entry.destination)
        item.request_status = int(RequestStatusPerDestination.RequestStatus.SUCCESS)
        item.events_ingestion_status.record_count = entry.record_count
    result: dict[str, Any] = json_format.MessageToDict(response)
    return result
