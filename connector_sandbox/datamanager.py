"""A local Data Manager API (IngestionService) speaking gRPC over TLS.

The real `google.ads.datamanager_v1.IngestionServiceClient` (gRPC transport, its
default) talks to it unchanged (API-NOTES §1, §6): google-ads-datamanager ships
no servicer classes, so the service is a generic handler, and requests are parsed
with the library's own message types, as bytes on the wire would be at Google.

- `IngestEvents`: an `IngestEventsRequest`, answered with an `IngestEventsResponse`;
- `RetrieveRequestStatus`: a `RetrieveRequestStatusResponse`.

The API fails fast: one invalid event rejects the whole request with
INVALID_ARGUMENT, a message naming the first offending field
(`events[3].ad_identifiers.gclid`), and in the `grpc-status-details-bin` trailer a
`google.rpc.Status` with an ErrorInfo (the reason) and a `google.rpc.BadRequest`
detail listing every violation, which google-api-core decodes (grpcio-status).
Reasons are `google.ads.datamanager_v1.ErrorReason` names.
Clear-text emails and phones, non-hex digests under HEX encoding and unknown
consent values are such violations.

What happens after a request is accepted is only visible through the request
status, as at Google: the first retrieval answers PROCESSING (`processing_polls`
of them), later ones SUCCESS, PARTIAL_SUCCESS or FAILED per destination, with
the record count and `ProcessingErrorReason` counts. The emulator's rules,
deterministic so that tests can assert on them:

- an event matches when it carries a click id, or a user identifier the
  emulator knows (`know_users`, or any digest whose SHA-256 starts below 0x80:
  about half, like a real CRM list); otherwise CLICK_NOT_FOUND;
- a gclid marked with `unknown_clicks` is CLICK_NOT_FOUND; one registered with
  `clicks` is TOO_RECENT_CLICK when under 6 hours old at upload and
  CONVERSION_PRECEDES_CLICK when the event is older than the click;
- an event with a transaction id already seen for the conversion action is an
  adjustment of that conversion (restated value, kept in its `adjustments`);
  an exact resend (same value, currency and time) is DUPLICATE_TRANSACTION_ID.

Data Manager has no synchronous TOO_RECENT or CLICK_NOT_FOUND error: both are
processing errors, counted per destination, never named per event.

GA4 destinations (`GOOGLE_ANALYTICS_PROPERTY`, the property id, the measurement
id as `product_destination_id`; API-NOTES §0) take events with the documented
rules: one Google Analytics destination per event, an `event_name` that is
valid and not reserved, a `client_id` or an `app_instance_id` but not both,
no transaction id or click id needed. A client id in `_ga` cookie form
(`GA1.1.123.456`) is accepted with an INVALID_CLIENT_ID field warning, the
form Google recommends against. Accepted GA4 events are kept in `ga4_events`.

Quota: with `requests_per_minute` set, calls beyond it within a minute get
RESOURCE_EXHAUSTED with a RetryInfo delay (like `resource_exhausted_fault`).

Errors and injected faults (`faults`, the `Fault`s every emulator takes) are
described as Google documents its errors: an HTTP status and the JSON form of a
`google.rpc.Status` (`status_body`). They are sent in their gRPC form (`_rpc_status`):
the canonical code of the Status's name (else of the HTTP status), its message
and details, and a Retry-After header as a RetryInfo detail. A connection reset
fault is answered UNAVAILABLE, what a gRPC client makes of a reset connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import grpc
from babel.numbers import list_currencies
from google.ads.datamanager_v1 import (
    ConsentStatus,
    Encoding,
    EventSource,
    IngestEventsRequest,
    IngestEventsResponse,
    ProcessingErrorReason,
    ProductAccount,
    RequestStatusPerDestination,
    RetrieveRequestStatusRequest,
    RetrieveRequestStatusResponse,
)
from google.protobuf import any_pb2, duration_pb2, json_format, text_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from connector_sandbox.faults import Fault, FaultQueue

# GA4's own naming rules, for the events Data Manager takes for a GA4 property.
from connector_sandbox.ga4 import MAX_PARAM_VALUE_LENGTH, RESERVED_EVENT_NAMES, RESERVED_PREFIXES
from connector_sandbox.grpc_server import GrpcServer, ServedGrpcEmulator
from connector_sandbox.server import RESET, Response

SERVICE = "google.ads.datamanager.v1.IngestionService"
# The gRPC method paths, which a Fault's `path_contains` matches.
INGEST_PATH = f"/{SERVICE}/IngestEvents"
STATUS_PATH = f"/{SERVICE}/RetrieveRequestStatus"
ERROR_DOMAIN = "datamanager.googleapis.com"

# Documented request limits (developers.google.com/data-manager/api/limits).
MAX_EVENTS = 2_000
MAX_DESTINATIONS = 10
MAX_USER_IDENTIFIERS = 10
# "Not in the future" with a little room for clock skew between hosts.
FUTURE_TOLERANCE = timedelta(minutes=1)

# ISO 4217 as CLDR lists it (Babel): every real code passes, an 'XYZ'-style typo fails as
# INVALID_CURRENCY_CODE.
KNOWN_CURRENCIES = frozenset(list_currencies())

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
_ANALYTICS = int(ProductAccount.AccountType.GOOGLE_ANALYTICS_PROPERTY)
_MEASUREMENT_ID = re.compile(r"G-[A-Z0-9]+")
_EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
# The `_ga` cookie value ("GA1.1.<random>.<time>"), not the client id it holds.
_COOKIE_CLIENT_ID = re.compile(r"GA\d\.\d\.\d+\.\d+")


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
    """A `google.rpc.Status` in the JSON form Google documents; `_rpc_status` sends it over gRPC."""
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


def resource_exhausted_fault(
    retry_after_seconds: int | None = None, path: str = INGEST_PATH
) -> Fault:
    """RESOURCE_EXHAUSTED as the quota layer sends it, with its delay as RetryInfo."""
    headers = {} if retry_after_seconds is None else {"Retry-After": str(retry_after_seconds)}
    return Fault(status=429, body=_quota_body(), headers=headers, path_contains=path)


def refusal_fault(status: int, name: str, message: str, reason: str = "") -> Fault:
    """A refusal of the request itself (e.g. 403 PERMISSION_DENIED with the ErrorInfo
    reason CUSTOMER_NOT_ALLOWLISTED), which no event of it can cure."""
    details = [_error_info(reason)] if reason else []
    body = status_body(status, name, message, details)
    return Fault(status=status, body=body, path_contains=INGEST_PATH)


def already_exists_fault() -> Fault:
    """ALREADY_EXISTS: what an already-ingested resend would get, were it refused."""
    body = status_body(
        409,
        "ALREADY_EXISTS",
        "The event already exists.",
        [_error_info("ALREADY_EXISTS")],
    )
    return Fault(status=409, body=body, path_contains=INGEST_PATH)


def unavailable_fault(path: str = INGEST_PATH) -> Fault:
    """UNAVAILABLE: note the GAPIC default retry retries it (5 s initial backoff)."""
    body = status_body(503, "UNAVAILABLE", "The service is currently unavailable.")
    return Fault(status=503, body=body, path_contains=path)


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
        path = f"events[{index}]"
        targets = [request.destinations[i] for i in _target_indexes(event, request.destinations)]
        if any(_is_analytics(d) for d in targets):
            found += _check_analytics_event(path, event, request.encoding, targets, now)
        else:
            found += _check_event(path, event, request.encoding, references, now)
    return found


def _check_analytics_event(
    path: str, event: Any, encoding: int, targets: list[Any], now: datetime
) -> Iterator[Violation]:
    """A GA4 event: no transaction or click id needed; a name and a client (API-NOTES §0)."""
    if len(targets) > 1:
        yield Violation(
            path,
            "An event for Google Analytics goes to exactly one destination.",
            "MULTIPLE_DESTINATIONS_FOR_GOOGLE_ANALYTICS_EVENT",
        )
    yield from _check_timestamp(path, event, now)
    yield from _check_event_name(f"{path}.event_name", event.event_name)
    if event.client_id and event.app_instance_id:
        yield Violation(
            path,
            "Set client_id or app_instance_id, not both.",
            "BOTH_CLIENT_ID_AND_APP_INSTANCE_ID_NOT_ALLOWED",
        )
    elif not event.client_id and not event.app_instance_id:
        yield Violation(f"{path}.client_id", "Required for web streams.", "REQUIRED_FIELD_MISSING")
    for j, parameter in enumerate(event.additional_event_parameters):
        name = parameter.parameter_name
        field = f"{path}.additional_event_parameters[{j}].parameter_name"
        if not _EVENT_NAME.fullmatch(name):
            yield Violation(field, "Invalid parameter name.", "INVALID_ARGUMENT")
        elif name.startswith(RESERVED_PREFIXES):
            yield Violation(field, "Reserved parameter name.", "RESERVED_NAME_USED")
        if len(parameter.value) > MAX_PARAM_VALUE_LENGTH:
            value_field = f"{path}.additional_event_parameters[{j}].value"
            yield Violation(value_field, "Parameter value too long.", "INVALID_ARGUMENT")
    yield from _check_value(path, event)
    yield from _check_user_data(f"{path}.user_data", event.user_data, encoding)
    yield from _check_consent(f"{path}.consent", event.consent)


def _check_event_name(path: str, name: str) -> Iterator[Violation]:
    if not name:
        yield Violation(path, "Required for Google Analytics events.", "REQUIRED_FIELD_MISSING")
    elif not _EVENT_NAME.fullmatch(name):
        yield Violation(path, "Invalid event name.", "INVALID_EVENT_NAME")
    elif name.startswith(RESERVED_PREFIXES) or name in RESERVED_EVENT_NAMES:
        yield Violation(path, "Reserved event name.", "RESERVED_NAME_USED")


def field_warnings(request: Any, warn: set[str] = frozenset()) -> list[dict[str, str]]:  # type: ignore[assignment]
    """Warnings for accepted events (proto3 JSON of `FieldWarning`): a cookie value sent as
    the client id, or a client id the emulator was told to warn about."""
    return [
        {
            "reason": "WARNING_REASON_INVALID_CLIENT_ID",
            "field": f"events[{index}].client_id",
            "description": "A cookie value, not a client id: send the client id it holds.",
        }
        for index, event in enumerate(request.events)
        if _COOKIE_CLIENT_ID.fullmatch(event.client_id) or (event.client_id in warn)
    ]


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
        yield from _check_product_destination(
            path, destination.product_destination_id, _is_analytics(destination)
        )
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
    if account.account_type not in (_GOOGLE_ADS, _ANALYTICS):
        yield Violation(
            f"{path}.account_type",
            "Must be GOOGLE_ADS or GOOGLE_ANALYTICS_PROPERTY.",
            "INVALID_ENUM_VALUE",
        )


def _is_analytics(destination: Any) -> bool:
    return bool(destination.operating_account.account_type == _ANALYTICS)


def _check_product_destination(path: str, value: str, analytics: bool) -> Iterator[Violation]:
    field = f"{path}.product_destination_id"
    if analytics:
        if not _MEASUREMENT_ID.fullmatch(value):
            yield Violation(field, "Must be a web stream's measurement id.", "INVALID_ARGUMENT")
        return
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

TOO_RECENT = timedelta(hours=6)  # Google Ads cannot import a click younger than this
QUOTA_WINDOW = timedelta(minutes=1)
DUPLICATE = "PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID"
CLICK_NOT_FOUND = "PROCESSING_ERROR_REASON_CLICK_NOT_FOUND"
TOO_RECENT_CLICK = "PROCESSING_ERROR_REASON_TOO_RECENT_CLICK"
CONVERSION_PRECEDES_CLICK = "PROCESSING_ERROR_REASON_CONVERSION_PRECEDES_CLICK"
_STATUS = RequestStatusPerDestination.RequestStatus


@dataclass
class _StatusEntry:
    """What one accepted request did to one of its destinations."""

    destination: Any  # a Destination pb
    record_count: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # ProcessingErrorReason name -> events

    @property
    def final_status(self) -> int:
        failed = sum(self.errors.values())
        if not failed:
            return int(_STATUS.SUCCESS)
        return int(_STATUS.FAILED if failed == self.record_count else _STATUS.PARTIAL_SUCCESS)


@dataclass
class _RequestState:
    entries: list[_StatusEntry]
    retrievals: int = 0


class DataManagerEmulator(ServedGrpcEmulator):
    """A thread-safe in-memory IngestionService on 127.0.0.1:<port>, gRPC over test-CA TLS."""

    def __init__(
        self,
        *,
        faults: FaultQueue | None = None,
        max_events: int = MAX_EVENTS,
        clock: Callable[[], datetime] | None = None,
        port: int = 0,
        requests_per_minute: int | None = None,
        processing_polls: int = 1,
    ) -> None:
        self.faults = faults if faults is not None else FaultQueue()
        self.max_events = max_events
        self.processing_polls = processing_polls  # retrievals answered PROCESSING
        self._default_quota = requests_per_minute
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._reset_state()
        self._server = GrpcServer(self._handlers(), port=port)

    def _reset_state(self) -> None:
        self._requests = 0
        self._rejected_requests = 0
        self._validated_requests = 0
        self._adjustments = 0
        self._accepted: list[dict[str, Any]] = []
        self._ga4_events: list[dict[str, Any]] = []
        self._conversions: dict[tuple[str, str], dict[str, Any]] = {}
        self._bodies: list[bytes] = []
        self._statuses: dict[str, _RequestState] = {}
        self._reject_transaction_ids: set[str] = set()
        self._reject_gclids: set[str] = set()
        self._known_users: set[str] = set()
        self._unknown_clicks: set[str] = set()
        self._click_times: dict[str, datetime] = {}
        # Client ids Google would accept with a warning (as if it did not know them yet).
        self.warn_client_ids: set[str] = set()
        self._quota = self._default_quota
        self._calls: deque[datetime] = deque()

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

    def know_users(self, digests: Iterable[str]) -> None:
        """User identifiers (digests as sent) that match a Google user."""
        with self._lock:
            self._known_users.update(digests)

    def unknown_clicks(self, gclids: Iterable[str]) -> None:
        """Click ids Google has no record of: CLICK_NOT_FOUND once processed."""
        with self._lock:
            self._unknown_clicks.update(gclids)

    def clicks(self, times: Mapping[str, datetime]) -> None:
        """Clicks with a known time: TOO_RECENT_CLICK and CONVERSION_PRECEDES_CLICK apply."""
        with self._lock:
            self._click_times.update(times)

    def set_quota(self, requests_per_minute: int | None) -> None:
        """Answer 429 to calls beyond this many per minute (None: no quota)."""
        with self._lock:
            self._quota = requests_per_minute
            self._calls.clear()

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
    def ga4_events(self) -> list[dict[str, Any]]:
        """GA4 events ingested, in arrival order, as received (proto field names)."""
        with self._lock:
            return list(self._ga4_events)

    @property
    def conversions(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Current state per (product_destination_id, transaction_id).

        Each holds its latest event's fields, the current `conversion_value`, the
        `original_value`, the `adjustments` made to it (value, currency, time,
        request) and the `processing_error` that kept it out of Google Ads, if any.
        """
        with self._lock:
            return dict(self._conversions)

    @property
    def received_bodies(self) -> list[str]:
        """Every IngestEvents request as it arrived, in protobuf text format: each string
        field (a hash, a click id, a leaked email) shows in it verbatim."""
        with self._lock:
            bodies = list(self._bodies)
        return [_as_text(body) for body in bodies]

    # -- gRPC

    def _handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        methods = {
            "IngestEvents": self._unary(INGEST_PATH, self._ingest),
            "RetrieveRequestStatus": self._unary(STATUS_PATH, self._retrieve_status),
        }
        return (grpc.method_handlers_generic_handler(SERVICE, methods),)

    def _unary(self, path: str, handle: Callable[[bytes], Any]) -> grpc.RpcMethodHandler:
        """A method taking the request's bytes (parsed by `handle`, which records them first):
        faults and the quota come before it, a refusal ends the call with its Status."""

        def behaviour(raw: bytes, context: grpc.ServicerContext) -> Any:
            try:
                return handle(raw)
            except _Refused as refused:
                context.abort_with_status(rpc_status.to_status(refused.status))
                raise AssertionError("grpc's abort_with_status always raises") from None

        return grpc.unary_unary_rpc_method_handler(behaviour, response_serializer=_serialize)

    def _admit(self, path: str) -> None:
        """Raise the injected fault for this call, or the quota's refusal, if any."""
        injected = self.faults.take(path) or self._over_quota()
        if injected is not None:
            raise _Refused(_response_status(injected))

    def _ingest(self, raw: bytes) -> Any:
        with self._lock:
            self._requests += 1
            self._bodies.append(raw)
        self._admit(INGEST_PATH)
        request_id = uuid.uuid4().hex
        parsed = _parse_ingest_request(raw)
        if isinstance(parsed, Violation):
            self._reject([parsed], request_id)
        violations = validate_ingest_request(parsed, now=self._clock(), max_events=self.max_events)
        violations += self._switched_off(parsed)
        if violations:
            self._reject(violations, request_id)
        response = IngestEventsResponse.pb()()
        for warning in field_warnings(parsed, self.warn_client_ids):
            response.field_warnings.add(**warning)
        if parsed.validate_only:
            with self._lock:
                self._validated_requests += 1
            return response  # validated only: no request id, nothing to ask the status of
        self._record(parsed, request_id)
        response.request_id = request_id
        return response

    def _over_quota(self) -> Response | None:
        """429 once this minute's calls reached the quota; else count this call."""
        now = self._clock()
        with self._lock:
            while self._calls and now - self._calls[0] >= QUOTA_WINDOW:
                self._calls.popleft()
            if self._quota is None or len(self._calls) < self._quota:
                self._calls.append(now)
                return None
            wait = QUOTA_WINDOW - (now - self._calls[0])
        headers = {"Retry-After": str(max(1, math.ceil(wait.total_seconds())))}
        return Response(429, _quota_body(), headers=headers)

    def _reject(self, violations: list[Violation], request_id: str) -> NoReturn:
        with self._lock:
            self._rejected_requests += 1
        raise _Refused(_rpc_status(400, invalid_argument_body(violations, request_id)))

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
        now = self._clock()
        entries = [_StatusEntry(d) for d in request.destinations]
        with self._lock:
            for event in request.events:
                for index in _target_indexes(event, request.destinations):
                    entries[index].record_count += 1
                    destination = request.destinations[index]
                    if _is_analytics(destination):
                        self._ga4_events.append(_ga4_record(request, event, request_id))
                    elif error := self._record_one(request, event, destination, request_id, now):
                        entries[index].errors[error] += 1
            self._statuses[request_id] = _RequestState(entries)

    def _record_one(
        self, request: Any, event: Any, destination: Any, request_id: str, now: datetime
    ) -> str | None:
        """Store one event for one conversion action; returns its processing error, if any."""
        # Same transaction id + conversion action = an adjustment, never a second conversion.
        key = (destination.product_destination_id, event.transaction_id)
        current = self._conversions.get(key)
        if current is not None and current["processing_error"]:
            current = None  # it never became a conversion: this one is the first
        entry = _event_record(request, event, destination, request_id, current is not None)
        if current is not None and _same_event(current, entry):
            return DUPLICATE
        entry["processing_error"] = self._processing_error(event, now)
        self._accepted.append(entry)
        if current is None:
            self._conversions[key] = {
                **entry,
                "original_value": entry["conversion_value"],
                "adjustments": [],
            }
        else:
            self._adjustments += 1
            self._conversions[key] = _adjusted(current, entry)
        error: str | None = entry["processing_error"]
        return error

    def _processing_error(self, event: Any, now: datetime) -> str | None:
        """What Google's asynchronous processing would find wrong (module docstring rules)."""
        gclid = event.ad_identifiers.gclid
        if gclid and gclid in self._unknown_clicks:
            return CLICK_NOT_FOUND
        clicked = self._click_times.get(gclid) if gclid else None
        if clicked is not None:
            if event.event_timestamp.ToDatetime(tzinfo=UTC) < clicked:
                return CONVERSION_PRECEDES_CLICK
            if now - clicked < TOO_RECENT:
                return TOO_RECENT_CLICK
        if _click_ids(event.ad_identifiers):
            return None
        digests = [
            getattr(u, kind)
            for u in event.user_data.user_identifiers
            if (kind := u.WhichOneof("identifier")) in ("email_address", "phone_number")
        ]
        return None if any(self._knows(d) for d in digests) else CLICK_NOT_FOUND

    def _knows(self, digest: str) -> bool:
        return digest in self._known_users or hashlib.sha256(digest.encode()).digest()[0] < 0x80

    def _retrieve_status(self, raw: bytes) -> Any:
        self._admit(STATUS_PATH)
        request_id = RetrieveRequestStatusRequest.pb().FromString(raw).request_id
        with self._lock:
            state = self._statuses.get(request_id)
            if state is not None:
                state.retrievals += 1
                processing = state.retrievals <= self.processing_polls
        if state is None:
            violation = Violation("request_id", "Unknown request id.", "INVALID_REQUEST_ID")
            body = invalid_argument_body([violation], uuid.uuid4().hex)
            raise _Refused(_rpc_status(400, body))
        return _status_response(state.entries, processing=processing)


class _Refused(Exception):
    """Ends a call with this `google.rpc.Status` (code, message, details)."""

    def __init__(self, status: Any) -> None:
        super().__init__(status.message)
        self.status = status


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


def _quota_body() -> dict[str, Any]:
    message = "Quota exceeded for quota metric 'Requests' of service 'datamanager.googleapis.com'."
    return status_body(429, "RESOURCE_EXHAUSTED", message, [_error_info("RESOURCE_EXHAUSTED")])


# Google's HTTP mapping of the canonical codes (google/rpc/code.proto), for a Fault that
# names only an HTTP status.
_HTTP_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    409: code_pb2.ALREADY_EXISTS,
    429: code_pb2.RESOURCE_EXHAUSTED,
    499: code_pb2.CANCELLED,
    500: code_pb2.INTERNAL,
    501: code_pb2.UNIMPLEMENTED,
    503: code_pb2.UNAVAILABLE,
    504: code_pb2.DEADLINE_EXCEEDED,
}


def _response_status(response: Response) -> Any:
    """An injected fault's answer (`FaultQueue.take`) as the Status a gRPC call ends with."""
    if response.status == RESET:
        # A gRPC client sees a reset connection as UNAVAILABLE: the call was never answered.
        return status_pb2.Status(code=code_pb2.UNAVAILABLE, message="Connection reset by peer.")
    body = json.loads(response.payload or b"{}")
    return _rpc_status(response.status, body, response.headers.get("Retry-After"))


def _rpc_status(http_status: int, body: Any, retry_after: str | None = None) -> Any:
    """`status_body`'s JSON Status in its gRPC form; a Retry-After becomes a RetryInfo."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    name = str(error.get("status", ""))
    known = code_pb2.Code.DESCRIPTOR.values_by_name.get(name)
    code = known.number if known is not None else _HTTP_CODES.get(http_status, code_pb2.UNKNOWN)
    status = status_pb2.Status(code=code, message=str(error.get("message") or name or code))
    for detail in error.get("details", ()):
        status.details.append(json_format.ParseDict(detail, any_pb2.Any()))
    if retry_after is not None:
        delay = duration_pb2.Duration(seconds=int(retry_after))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def _as_text(body: bytes) -> str:
    parsed = _parse_ingest_request(body)
    if isinstance(parsed, Violation):
        return body.decode("utf-8", errors="replace")  # as undecodable as it came
    return str(text_format.MessageToString(parsed, as_utf8=True))


def _parse_ingest_request(body: bytes) -> Any:
    """The request as the library's protobuf type, or a Violation for undecodable bytes."""
    try:
        return IngestEventsRequest.pb().FromString(body)
    except DecodeError as exc:
        return Violation("", f"Invalid request payload received. {exc}", "INVALID_ARGUMENT")


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
        "last_updated": (
            event.last_updated_timestamp.ToDatetime(tzinfo=UTC)
            if event.HasField("last_updated_timestamp")
            else None
        ),
        "gclid": event.ad_identifiers.gclid,
        "gbraid": event.ad_identifiers.gbraid,
        "wbraid": event.ad_identifiers.wbraid,
        "conversion_value": (
            event.conversion_value if event.HasField("conversion_value") else None
        ),
        "currency": event.currency,
        "event_source": EventSource(event.event_source).name,
        "consent": {
            "ad_user_data": ConsentStatus(consent.ad_user_data).name,
            "ad_personalization": ConsentStatus(consent.ad_personalization).name,
        },
        "user_identifiers": [_identifier(u) for u in event.user_data.user_identifiers],
        "custom_variables": {v.variable: v.value for v in event.custom_variables},
        "is_adjustment": is_adjustment,
    }


def _identifier(identifier: Any) -> dict[str, Any]:
    """A user identifier as MessageToDict gives it; a digest read as it is, without the
    generic walk (a twentieth of the emulator's CPU, two identifiers an event)."""
    kind = identifier.WhichOneof("identifier")
    if kind in ("email_address", "phone_number"):
        return {kind: getattr(identifier, kind)}
    found: dict[str, Any] = json_format.MessageToDict(identifier, preserving_proto_field_name=True)
    return found


def _ga4_record(request: Any, event: Any, request_id: str) -> dict[str, Any]:
    record: dict[str, Any] = json_format.MessageToDict(
        event, preserving_proto_field_name=True, use_integers_for_enums=False
    )
    destination = request.destinations[0]
    record["request_id"] = request_id
    record["property_id"] = destination.operating_account.account_id
    record["measurement_id"] = destination.product_destination_id
    return record


_SAME_EVENT_KEYS = ("conversion_value", "currency", "event_timestamp", "gclid", "gbraid", "wbraid")


def _same_event(current: dict[str, Any], entry: dict[str, Any]) -> bool:
    """An exact resend: nothing for Google to adjust."""
    return all(current[k] == entry[k] for k in _SAME_EVENT_KEYS)


def _adjusted(current: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The conversion after an adjustment; an event without a value keeps the old one."""
    value = entry["conversion_value"]
    change = {
        "request_id": entry["request_id"],
        "conversion_value": value,
        "currency": entry["currency"],
        "event_timestamp": entry["event_timestamp"],
        "last_updated": entry["last_updated"],
    }
    return {
        **entry,
        "conversion_value": current["conversion_value"] if value is None else value,
        "currency": entry["currency"] or current["currency"],
        "original_value": current["original_value"],
        "adjustments": [*current["adjustments"], change],
    }


def _status_response(entries: list[_StatusEntry], *, processing: bool) -> Any:
    response = RetrieveRequestStatusResponse.pb()()
    for entry in entries:
        item = response.request_status_per_destination.add()
        item.destination.CopyFrom(entry.destination)
        item.events_ingestion_status.record_count = entry.record_count
        # While PROCESSING Google gives no outcome yet: no status counts, no errors.
        item.request_status = int(_STATUS.PROCESSING) if processing else entry.final_status
        if processing:
            continue
        for reason, count in sorted(entry.errors.items()):
            error = item.error_info.error_counts.add()
            error.reason = int(getattr(ProcessingErrorReason, reason))
            error.record_count = count
    return response
