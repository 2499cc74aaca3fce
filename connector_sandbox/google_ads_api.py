"""A local Google Ads API (v26) over gRPC with TLS, for the legacy upload path.

`GoogleAdsClient(endpoint="127.0.0.1:PORT")` reaches it unchanged (API-NOTES
§1, §6): google-ads ships no servicer classes, so the services are generic
handlers using the library's own message types for (de)serialisation.

- ConversionUploadService.UploadClickConversions: at most 2,000 rows,
  `partial_failure` required; each bad row comes back in
  `partial_failure_error` (one GoogleAdsFailure whose errors point at
  `conversions[i]`) and as an empty result.
- ConversionAdjustmentUploadService.UploadConversionAdjustments: RESTATEMENT
  and RETRACTION of earlier uploads by `order_id` or gclid/time pair, with
  Google's rules: the conversion must exist (CONVERSION_NOT_FOUND), the
  adjustment time must follow it, a restatement must be newer than the last
  one, one order's adjustments in a request need distinct times.
- Switches: click ids answered CLICK_NOT_FOUND or TOO_RECENT_EVENT (or every
  click not registered, `known_clicks_only`), order ids whose adjustments get
  TOO_RECENT_CONVERSION.
- GoogleAdsService.Search / SearchStream: GAQL over `conversion_action` and
  `customer`, only the selected fields returned; and over `campaign` (cost and
  clicks per `segments.date`) and `click_view` (a gclid's campaign, one day per
  query, the last 90 days only) from `add_campaign` / `add_click`
  (`google_ads_reporting`).

Request-level errors abort the call with a serialised GoogleAdsFailure in the
trailing metadata, which the client's interceptor turns into GoogleAdsException.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import grpc
from google.ads.googleads.v26.errors.types.errors import (
    ErrorCode,
    ErrorDetails,
    ErrorLocation,
    GoogleAdsError,
    GoogleAdsFailure,
    QuotaErrorDetails,
)
from google.ads.googleads.v26.resources.types.conversion_action import ConversionAction
from google.ads.googleads.v26.resources.types.customer import ConversionTrackingSetting, Customer
from google.ads.googleads.v26.services.types.conversion_adjustment_upload_service import (
    ConversionAdjustmentResult,
    UploadConversionAdjustmentsRequest,
    UploadConversionAdjustmentsResponse,
)
from google.ads.googleads.v26.services.types.conversion_upload_service import (
    ClickConversionResult,
    UploadClickConversionsRequest,
    UploadClickConversionsResponse,
)
from google.ads.googleads.v26.services.types.google_ads_service import (
    GoogleAdsRow,
    SearchGoogleAdsRequest,
    SearchGoogleAdsResponse,
    SearchGoogleAdsStreamRequest,
    SearchGoogleAdsStreamResponse,
)
from google.protobuf import any_pb2, duration_pb2, field_mask_pb2
from google.rpc import status_pb2  # type: ignore[import-untyped]

from connector_sandbox import gaql
from connector_sandbox.google_ads_reporting import REPORTING_RESOURCES, AdsReporting
from connector_sandbox.grpc_server import GrpcServer, ServedGrpcEmulator

VERSION = "v26"
SERVICES = f"google.ads.googleads.{VERSION}.services."
FAILURE_KEY = f"google.ads.googleads.{VERSION}.errors.googleadsfailure-bin"
FAILURE_TYPE_URL = f"type.googleapis.com/google.ads.googleads.{VERSION}.errors.GoogleAdsFailure"
REQUEST_ID_KEY = "request-id"
# Developer tokens were sunset (API-NOTES §0): the header is optional and ignored. A client
# configured with one still sends it; the emulator records it and lets the call through.
DEVELOPER_TOKEN = "emulator-developer-token"  # noqa: S105  (a leftover token, ignored)

MAX_ROWS = 2_000
MAX_USER_IDENTIFIERS = 5
CLICK_LOOKBACK = timedelta(days=90)  # an upload-clicks action's default window
TOO_RECENT = timedelta(hours=6)  # clicks younger than this cannot be imported yet
FUTURE_TOLERANCE = timedelta(minutes=10)

UPLOAD = "conversion_upload_error"
ADJUST = "conversion_adjustment_upload_error"
# Action types that take RESTATEMENT / RETRACTION (ConversionAdjustmentUploadError docs).
ADJUSTABLE_TYPES = frozenset({"UPLOAD_CLICKS", "WEBPAGE", "SALESFORCE"})
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
_CLICK_ID = re.compile(r"[A-Za-z0-9_-]{8,}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_ACTION_NAME = re.compile(r"customers/(\d+)/conversionActions/(\d+)")
_CLICK_KINDS = ("gclid", "gbraid", "wbraid")

Path = Sequence[tuple[str, int | None]]  # an error location: (field name, index)


@dataclass(frozen=True)
class EmulatedAction:
    """A conversion action of the emulated account."""

    id: int
    name: str
    type: str = "UPLOAD_CLICKS"
    status: str = "ENABLED"


@dataclass(frozen=True)
class EmulatedCustomer:
    id: str
    time_zone: str = "Europe/Berlin"
    currency_code: str = "EUR"
    accepted_customer_data_terms: bool = True
    enhanced_conversions: bool = True  # conversion_tracking_setting.enablement_setting ON


@dataclass(frozen=True)
class StoredAdjustment:
    kind: str  # RESTATEMENT or RETRACTION
    adjustment_date_time: str
    value: float | None = None
    currency: str = ""


@dataclass
class StoredConversion:
    """One accepted click conversion and what adjustments did to it."""

    conversion_action: str
    order_id: str
    click: str  # "gclid:..."; "" for identifier-only uploads (enhanced conversions for leads)
    conversion_date_time: str
    value: float | None
    currency: str
    hashed_identifiers: list[str]
    retracted: bool = False
    restated_at: datetime | None = None
    adjustments: list[str] = field(default_factory=list)  # kinds, in the order applied
    history: list[StoredAdjustment] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """One broken rule of a row: "kind.CODE", the offending field ("" = the row), a message."""

    code: str
    field: str
    message: str


@dataclass(frozen=True)
class GrpcFault:
    """An injected failure of the next matching call (method "" matches any)."""

    code: grpc.StatusCode
    method: str = ""
    failure: str = ""  # "kind.CODE" for the failure metadata; "" = none, as a proxy would send
    retry_delay_seconds: int | None = None
    delay_seconds: float = 0.0


def resource_exhausted_fault(retry_delay_seconds: int | None = None) -> GrpcFault:
    return GrpcFault(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        failure="quota_error.RESOURCE_EXHAUSTED",
        retry_delay_seconds=retry_delay_seconds,
    )


def internal_fault() -> GrpcFault:
    return GrpcFault(grpc.StatusCode.INTERNAL, failure="internal_error.INTERNAL_ERROR")


def unavailable_fault() -> GrpcFault:
    return GrpcFault(grpc.StatusCode.UNAVAILABLE)


def transient_error_fault() -> GrpcFault:
    """InternalError.TRANSIENT_ERROR: reaches the client as a GoogleAdsException."""
    return GrpcFault(grpc.StatusCode.UNAVAILABLE, failure="internal_error.TRANSIENT_ERROR")


class _Abort(Exception):
    """Ends a call with a status and a GoogleAdsFailure in the trailing metadata."""

    def __init__(self, code: grpc.StatusCode, errors: list[Any], message: str = "") -> None:
        super().__init__(message or "; ".join(e.message for e in errors))
        self.code = code
        self.errors = errors


def _fail(status: grpc.StatusCode, code: str, message: str, field_name: str = "") -> NoReturn:
    raise _Abort(status, [ads_error(code, message, [(field_name, None)] if field_name else [])])


# --------------------------------------------------------------------------- errors


def ads_error(code: str, message: str, path: Path = (), details: Any = None) -> Any:
    """A GoogleAdsError; `code` is "kind.NAME", e.g. "conversion_upload_error.CLICK_NOT_FOUND"."""
    kind, name = code.split(".")
    elements = [
        ErrorLocation.FieldPathElement(field_name=n, **({} if i is None else {"index": i}))
        for n, i in path
    ]
    error = GoogleAdsError(
        error_code=ErrorCode(**{kind: name}),
        message=message,
        location=ErrorLocation(field_path_elements=elements),
    )
    if details is not None:
        error.details = details
    return error


def _row_error(rows: str, index: int, problem: Problem) -> Any:
    path: list[tuple[str, int | None]] = [(rows, index)]
    path += [(name, None) for name in problem.field.split(".") if name]
    return ads_error(problem.code, problem.message, path)


def _failure_bytes(errors: list[Any], request_id: str) -> bytes:
    return bytes(GoogleAdsFailure.serialize(GoogleAdsFailure(errors=errors, request_id=request_id)))


def _partial_failure(errors: list[Any], request_id: str) -> Any:
    detail = any_pb2.Any(type_url=FAILURE_TYPE_URL, value=_failure_bytes(errors, request_id))
    message = "; ".join(f"{e.message}, at {_path_text(e)}" for e in errors)
    code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    return status_pb2.Status(code=code, message=message, details=[detail])


def _path_text(error: Any) -> str:
    return ".".join(
        e.field_name + (f"[{e.index}]" if "index" in e else "")
        for e in error.location.field_path_elements
    )


def _fault_errors(fault: GrpcFault) -> list[Any]:
    if not fault.failure:
        return []
    details = None
    if fault.retry_delay_seconds is not None:
        delay = duration_pb2.Duration(seconds=fault.retry_delay_seconds)
        quota = QuotaErrorDetails(rate_scope="DEVELOPER", retry_delay=delay)
        details = ErrorDetails(quota_error_details=quota)
    return [ads_error(fault.failure, f"Injected {fault.code.name}.", details=details)]


def _parse_date_time(value: str) -> datetime | None:
    """`yyyy-mm-dd hh:mm:ss+hh:mm`, the only form the upload services take."""
    if not _DATE_TIME.fullmatch(value):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S%z")
    except ValueError:
        return None


# --------------------------------------------------------------------------- emulator


class GoogleAdsApiEmulator(ServedGrpcEmulator):
    """A thread-safe in-memory Google Ads API on 127.0.0.1:<port>, served over test-CA TLS."""

    def __init__(
        self,
        customers: Iterable[EmulatedCustomer],
        actions: Iterable[EmulatedAction] = (),
        *,
        allowlisted: bool = True,
        production_access: bool = True,
        known_clicks_only: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.customers = {c.id: c for c in customers}
        self.actions = {a.id: a for a in actions}
        self.reporting = AdsReporting()  # campaigns and clicks: `campaign`, `click_view`
        # False: the Cloud project is not allowlisted for offline click imports (uploads fail).
        self.allowlisted = allowlisted
        # False: a Test-access Cloud project calling a production account (every call fails).
        self.production_access = production_access
        # True: a click id never registered is CLICK_NOT_FOUND, as for a lead no ad brought.
        self.known_clicks_only = known_clicks_only
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._faults: deque[GrpcFault] = deque()
        self._reset_state()
        self._server = GrpcServer(self._handlers())

    def _reset_state(self) -> None:
        self._raw: list[tuple[str, bytes]] = []
        self._metadata: list[dict[str, str]] = []
        self._queries: list[str] = []
        self._by_order: dict[tuple[str, str], StoredConversion] = {}
        self._by_click: dict[tuple[str, str, str], StoredConversion] = {}
        self._not_found: set[str] = set()
        self._too_recent: set[str] = set()
        self._too_recent_orders: set[str] = set()
        self._clicks: dict[str, datetime] = {}
        self._last_job = 0

    def reset(self) -> None:
        """Forget what was received, the click switches and pending faults."""
        with self._lock:
            self._faults.clear()
            self._reset_state()

    # -- lifecycle

    @property
    def endpoint(self) -> str:
        """What GoogleAdsClient takes as `endpoint` (the test certificate covers 127.0.0.1)."""
        return self._server.endpoint

    # -- switches

    def mark_clicks(self, *, not_found: Iterable[str] = (), too_recent: Iterable[str] = ()) -> None:
        """Click ids to answer with CLICK_NOT_FOUND / TOO_RECENT_EVENT."""
        with self._lock:
            self._not_found.update(not_found)
            self._too_recent.update(too_recent)

    def mark_orders(self, *, too_recent: Iterable[str] = ()) -> None:
        """Order ids whose adjustments are answered TOO_RECENT_CONVERSION."""
        with self._lock:
            self._too_recent_orders.update(too_recent)

    def register_click(self, click_id: str, at: datetime) -> None:
        """A click with a known time, for CONVERSION_PRECEDES_EVENT / EXPIRED_EVENT / TOO_RECENT."""
        with self._lock:
            self._clicks[click_id] = at

    def push_fault(self, fault: GrpcFault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend(fault for _ in range(times))

    # -- what arrived (copies, so readers never race the server threads)

    @property
    def conversions(self) -> list[StoredConversion]:
        with self._lock:
            stored = {id(c): c for c in [*self._by_order.values(), *self._by_click.values()]}
            return list(stored.values())

    @property
    def upload_requests(self) -> list[Any]:
        """Every UploadClickConversionsRequest received, including failed ones."""
        with self._lock:
            raw = [body for method, body in self._raw if method == "UploadClickConversions"]
        return [UploadClickConversionsRequest.deserialize(body) for body in raw]

    @property
    def adjustment_requests(self) -> list[Any]:
        """Every UploadConversionAdjustmentsRequest received, including failed ones."""
        with self._lock:
            raw = [body for method, body in self._raw if method == "UploadConversionAdjustments"]
        return [UploadConversionAdjustmentsRequest.deserialize(body) for body in raw]

    def conversion(self, order_id: str) -> StoredConversion | None:
        """The stored conversion with this order id (any action), as adjustments left it."""
        return next((c for c in self.conversions if c.order_id == order_id), None)

    @property
    def received_bytes(self) -> list[bytes]:
        """Raw bodies of every call, to prove no clear-text PII ever arrived."""
        with self._lock:
            return [body for _, body in self._raw]

    @property
    def calls(self) -> list[str]:
        with self._lock:
            return [method for method, _ in self._raw]

    @property
    def queries(self) -> list[str]:
        with self._lock:
            return list(self._queries)

    @property
    def metadata(self) -> list[dict[str, str]]:
        """Request headers per call (without authorization)."""
        with self._lock:
            return [dict(m) for m in self._metadata]

    # -- gRPC plumbing

    def _handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        def service(name: str, methods: dict[str, grpc.RpcMethodHandler]) -> Any:
            return grpc.method_handlers_generic_handler(SERVICES + name, methods)

        stream = grpc.unary_stream_rpc_method_handler(
            self._stream("SearchStream", self._search_stream),
            request_deserializer=self._recording("SearchStream", SearchGoogleAdsStreamRequest),
            response_serializer=SearchGoogleAdsStreamResponse.serialize,
        )
        return (
            service(
                "ConversionUploadService",
                {
                    "UploadClickConversions": self._unary(
                        "UploadClickConversions",
                        self._upload_clicks,
                        UploadClickConversionsRequest,
                        UploadClickConversionsResponse,
                    )
                },
            ),
            service(
                "ConversionAdjustmentUploadService",
                {
                    "UploadConversionAdjustments": self._unary(
                        "UploadConversionAdjustments",
                        self._upload_adjustments,
                        UploadConversionAdjustmentsRequest,
                        UploadConversionAdjustmentsResponse,
                    )
                },
            ),
            service(
                "GoogleAdsService",
                {
                    "Search": self._unary(
                        "Search", self._search, SearchGoogleAdsRequest, SearchGoogleAdsResponse
                    ),
                    "SearchStream": stream,
                },
            ),
        )

    def _recording(self, method: str, request_type: Any) -> Callable[[bytes], Any]:
        def deserialize(raw: bytes) -> Any:
            with self._lock:
                self._raw.append((method, raw))
            return request_type.deserialize(raw)

        return deserialize

    def _unary(
        self, method: str, handle: Callable[[Any, str], Any], request_type: Any, response_type: Any
    ) -> grpc.RpcMethodHandler:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            request_id = uuid.uuid4().hex[:22]
            try:
                self._admit(method, context)
                response = handle(request, request_id)
            except _Abort as abort:
                _abort(context, abort, request_id)
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            return response

        return grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=self._recording(method, request_type),
            response_serializer=response_type.serialize,
        )

    def _stream(
        self, method: str, handle: Callable[[Any, str], list[Any]]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            request_id = uuid.uuid4().hex[:22]
            try:
                self._admit(method, context)
                responses = handle(request, request_id)
            except _Abort as abort:
                _abort(context, abort, request_id)
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            yield from responses

        return behaviour

    def _admit(self, method: str, context: grpc.ServicerContext) -> None:
        """Injected faults first, then the Cloud project's access level (no developer token)."""
        fault = self._take_fault(method)
        if fault is not None:
            if fault.delay_seconds:
                time.sleep(fault.delay_seconds)
            raise _Abort(fault.code, _fault_errors(fault), f"Injected {fault.code.name}.")
        headers = {k: str(v) for k, v in context.invocation_metadata() if k != "authorization"}
        with self._lock:
            self._metadata.append(headers)
        if not self.production_access:
            _fail(
                grpc.StatusCode.PERMISSION_DENIED,
                "authorization_error.CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION",
                "The Google Cloud project is approved for test accounts only.",
            )

    def _take_fault(self, method: str) -> GrpcFault | None:
        with self._lock:
            fault = next((f for f in self._faults if f.method in ("", method)), None)
            if fault is not None:
                self._faults.remove(fault)
            return fault

    def _customer(self, customer_id: str) -> EmulatedCustomer:
        customer = self.customers.get(customer_id)
        if customer is None:
            _fail(
                grpc.StatusCode.PERMISSION_DENIED,
                "authorization_error.USER_PERMISSION_DENIED",
                "User doesn't have permission to access customer.",
            )
        return customer

    def _job_id(self, requested: int) -> int:
        if requested:
            return requested
        self._last_job += 1
        return self._last_job

    # -- ConversionUploadService

    def _upload_clicks(self, request: Any, request_id: str) -> Any:
        customer = self._customer(request.customer_id)
        _check_request(request, request.conversions, UPLOAD, "CONVERSIONS")
        if not self.allowlisted:
            _fail(
                grpc.StatusCode.PERMISSION_DENIED,
                "not_allowlisted_error.CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE",
                "Customer is not allowlisted for accessing this feature.",
            )
        errors, results = [], []
        with self._lock:
            seen: set[object] = set()
            for index, conversion in enumerate(request.conversions):
                problem = _check_click(conversion, customer, self.actions)
                problem = (
                    problem or self._duplicate(conversion, seen) or self._click_fact(conversion)
                )
                if problem:
                    errors.append(_row_error("conversions", index, problem))
                    results.append(ClickConversionResult())  # failed rows come back empty
                    continue
                if not request.validate_only:
                    self._store(customer, conversion)
                results.append(_click_result(conversion))
            job_id = self._job_id(request.job_id)
        response = UploadClickConversionsResponse(results=results, job_id=job_id)
        if errors:
            response.partial_failure_error = _partial_failure(errors, request_id)
        return response

    def _duplicate(self, conversion: Any, seen: set[object]) -> Problem | None:
        """In the same request first (our batching bug), then already stored (a resend)."""
        order_id, click_key = conversion.order_id, _click_key(conversion)
        order_key = (conversion.conversion_action, order_id)
        if order_id and order_key in seen:
            return Problem(f"{UPLOAD}.DUPLICATE_ORDER_ID", "order_id", "Duplicate order id.")
        if click_key[1] and click_key in seen:
            return Problem(f"{UPLOAD}.DUPLICATE_CLICK_CONVERSION_IN_REQUEST", "", "Duplicate.")
        seen.update((order_key, click_key))
        if order_id and order_key in self._by_order:
            return Problem(f"{UPLOAD}.ORDER_ID_ALREADY_IN_USE", "order_id", "Order id in use.")
        if click_key[1] and click_key in self._by_click:
            return Problem(f"{UPLOAD}.CLICK_CONVERSION_ALREADY_EXISTS", "", "Already exists.")
        return None

    def _click_fact(self, conversion: Any) -> Problem | None:
        """What Google knows about the click itself (and the time it is now)."""
        now = self._clock()
        converted_at = _parse_date_time(conversion.conversion_date_time)
        if converted_at is not None and converted_at > now + FUTURE_TOLERANCE:
            return Problem("date_error.LATER_THAN_MAXIMUM_DATE", "conversion_date_time", "Future.")
        kind, click = _click(conversion)
        if not click:
            return None
        if click in self._not_found or (self.known_clicks_only and click not in self._clicks):
            return Problem(f"{UPLOAD}.CLICK_NOT_FOUND", kind, "The click was not found.")
        if click in self._too_recent:
            return Problem(f"{UPLOAD}.TOO_RECENT_EVENT", kind, "The click is too recent.")
        clicked_at = self._clicks.get(click)
        if clicked_at is None or converted_at is None:
            return None
        return _click_time_problem(kind, clicked_at, converted_at, now)

    def _store(self, customer: EmulatedCustomer, conversion: Any) -> None:
        _, click = _click(conversion)
        key = _click_key(conversion)
        stored = StoredConversion(
            conversion_action=conversion.conversion_action,
            order_id=conversion.order_id,
            click=key[1],
            conversion_date_time=conversion.conversion_date_time,
            value=conversion.conversion_value if "conversion_value" in conversion else None,
            currency=conversion.currency_code or customer.currency_code,
            hashed_identifiers=[_identifier(u)[1] for u in conversion.user_identifiers],
        )
        if stored.order_id:
            self._by_order[(stored.conversion_action, stored.order_id)] = stored
        if click:
            self._by_click[key] = stored

    # -- ConversionAdjustmentUploadService

    def _upload_adjustments(self, request: Any, request_id: str) -> Any:
        self._customer(request.customer_id)
        _check_request(request, request.conversion_adjustments, ADJUST, "ADJUSTMENTS")
        errors, results = [], []
        with self._lock:
            seen: set[tuple[str, str, str]] = set()
            for index, adjustment in enumerate(request.conversion_adjustments):
                problem = _duplicate_adjustment(adjustment, seen) or self._adjust(
                    adjustment, request.validate_only
                )
                if problem:
                    errors.append(_row_error("conversion_adjustments", index, problem))
                    results.append(ConversionAdjustmentResult())
                else:
                    results.append(_adjustment_result(adjustment))
            job_id = self._job_id(request.job_id)
        response = UploadConversionAdjustmentsResponse(results=results, job_id=job_id)
        if errors:
            response.partial_failure_error = _partial_failure(errors, request_id)
        return response

    def _adjust(self, adjustment: Any, validate_only: bool) -> Problem | None:
        """Check one adjustment against its conversion, then apply it. Caller holds the lock."""
        target = self._adjustment_target(adjustment)
        if isinstance(target, Problem):
            return target
        at = _parse_date_time(adjustment.adjustment_date_time)
        if at is None:
            return _date_time_problem(adjustment.adjustment_date_time, "adjustment_date_time")
        problem = _adjustment_problem(target, adjustment.adjustment_type.name, at)
        if problem is None and target.order_id in self._too_recent_orders:
            code = f"{ADJUST}.TOO_RECENT_CONVERSION"
            problem = Problem(code, "", "The conversion is too recent to adjust.")
        if problem is None and not validate_only:
            _apply_adjustment(target, adjustment, at)
        return problem

    def _adjustment_target(self, adjustment: Any) -> StoredConversion | Problem:
        action = adjustment.conversion_action
        pair = adjustment.gclid_date_time_pair if "gclid_date_time_pair" in adjustment else None
        if adjustment.order_id and pair is not None:
            code = "GCLID_DATE_TIME_PAIR_AND_ORDER_ID_BOTH_SET"
            return Problem(f"{ADJUST}.{code}", "order_id", "Use order_id or the gclid pair.")
        problem = _adjusted_action_problem(action, self.customers, self.actions)
        if problem is not None:
            return problem
        found = None
        if adjustment.order_id:
            found = self._by_order.get((action, adjustment.order_id))
        elif pair is not None:
            found = self._by_click.get((action, f"gclid:{pair.gclid}", pair.conversion_date_time))
        return found or Problem(f"{ADJUST}.CONVERSION_NOT_FOUND", "", "Conversion not found.")

    # -- GoogleAdsService

    def _search(self, request: Any, request_id: str) -> Any:
        rows, mask = self._query(request.customer_id, request.query)
        return SearchGoogleAdsResponse(results=rows, field_mask=mask, total_results_count=len(rows))

    def _search_stream(self, request: Any, request_id: str) -> list[Any]:
        rows, mask = self._query(request.customer_id, request.query)
        return [SearchGoogleAdsStreamResponse(results=rows, field_mask=mask, request_id=request_id)]

    def _query(self, customer_id: str, text: str) -> tuple[list[Any], field_mask_pb2.FieldMask]:
        customer = self._customer(customer_id)
        with self._lock:
            self._queries.append(text)
        try:
            query = gaql.parse(text)
            rows = gaql.run(query, self._resources(customer, query.resource, query))
        except gaql.GaqlError as exc:
            _fail(grpc.StatusCode.INVALID_ARGUMENT, f"query_error.{exc.code}", str(exc), "query")
        return [GoogleAdsRow.wrap(r) for r in rows], field_mask_pb2.FieldMask(paths=query.fields)

    def _resources(
        self, customer: EmulatedCustomer, resource: str, query: gaql.Query | None = None
    ) -> list[Any]:
        """Full GoogleAdsRow protobufs of the FROM resource (`query` may narrow them: `gaql`
        still filters them all)."""
        if resource == "customer":
            return [GoogleAdsRow.pb(GoogleAdsRow(customer=_customer_resource(customer)))]
        if resource == "conversion_action":
            return [
                GoogleAdsRow.pb(GoogleAdsRow(conversion_action=_action_resource(customer, a)))
                for a in self.actions.values()
            ]
        if resource in REPORTING_RESOURCES:
            day = _single_day(query) if query else None
            return self.reporting.rows(customer.id, resource, self._clock().date(), day)
        if resource in GoogleAdsRow.pb().DESCRIPTOR.fields_by_name:
            message = f"the emulator serves customer and conversion_action, not {resource}"
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED, [], message)
        raise gaql.GaqlError("BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", f"unknown resource {resource}")


def _single_day(query: gaql.Query) -> str | None:
    """The day of `segments.date = '...'`: a click_view query reads one day of clicks."""
    for c in query.conditions:
        if c.field == "segments.date" and c.operator == "=" and len(c.values) == 1:
            return str(c.values[0])
    return None


def _abort(context: grpc.ServicerContext, abort: _Abort, request_id: str) -> NoReturn:
    metadata: list[tuple[str, str | bytes]] = [(REQUEST_ID_KEY, request_id)]
    if abort.errors:
        metadata.append((FAILURE_KEY, _failure_bytes(abort.errors, request_id)))
    context.set_trailing_metadata(tuple(metadata))
    context.abort(abort.code, str(abort))
    raise AssertionError("grpc's context.abort always raises")


def _check_request(request: Any, rows: Sequence[Any], kind: str, noun: str) -> None:
    """Request-level rules of both upload services: partial failure on, at most 2,000 rows."""
    if not request.partial_failure:
        _fail(
            grpc.StatusCode.INVALID_ARGUMENT,
            "partial_failure_error.PARTIAL_FAILURE_MODE_REQUIRED",
            "The partial failure field must be set to true.",
            "partial_failure",
        )
    if len(rows) > MAX_ROWS:
        code = f"{kind}.TOO_MANY_{noun}_IN_REQUEST"
        _fail(grpc.StatusCode.INVALID_ARGUMENT, code, f"At most {MAX_ROWS} rows per request.")


# --------------------------------------------------------------------------- click rows


def _click(conversion: Any) -> tuple[str, str]:
    for kind in _CLICK_KINDS:
        if value := getattr(conversion, kind):
            return kind, str(value)
    return "", ""


def _click_key(conversion: Any) -> tuple[str, str, str]:
    """(action, "kind:click id", time): Google's identity of a click conversion."""
    kind, click = _click(conversion)
    click_text = f"{kind}:{click}" if click else ""
    return conversion.conversion_action, click_text, conversion.conversion_date_time


def _check_click(
    conversion: Any, customer: EmulatedCustomer, actions: dict[int, EmulatedAction]
) -> Problem | None:
    """The rules one row must meet on its own; the first broken one is reported."""
    return (
        _click_id_problem(conversion, customer)
        or _action_problem(conversion.conversion_action, customer, actions)
        or _date_time_problem(conversion.conversion_date_time)
        or _value_problem(conversion)
        or _identifier_problem(conversion.user_identifiers)
        or _consent_problem(conversion)
    )


def _click_id_problem(c: Any, customer: EmulatedCustomer) -> Problem | None:
    present = [k for k in _CLICK_KINDS if getattr(c, k)]
    if {"gbraid", "wbraid"} <= set(present):
        return Problem(f"{UPLOAD}.GBRAID_WBRAID_BOTH_SET", "wbraid", "Both braids are set.")
    if len(present) > 1:
        return Problem("field_error.VALUE_MUST_BE_UNSET", present[1], "One click id only.")
    if not present:
        return _identifier_only_problem(c, customer)
    kind = present[0]
    if not _CLICK_ID.fullmatch(getattr(c, kind)):
        return Problem(f"{UPLOAD}.UNPARSEABLE_{kind.upper()}", kind, f"Cannot decode the {kind}.")
    return None


def _identifier_only_problem(c: Any, customer: EmulatedCustomer) -> Problem | None:
    """No click id: enhanced conversions for leads, which need identifiers and consent terms."""
    if not c.user_identifiers:
        return Problem("field_error.REQUIRED", "gclid", "A click id or user identifiers needed.")
    if not customer.accepted_customer_data_terms:
        code = f"{UPLOAD}.CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"
        return Problem(code, "", "Customer data terms not accepted.")
    if not customer.enhanced_conversions:
        code = f"{UPLOAD}.CUSTOMER_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS"
        return Problem(code, "", "Enhanced conversions for leads are off.")
    return None


def _action_problem(
    resource_name: str, customer: EmulatedCustomer, actions: dict[int, EmulatedAction]
) -> Problem | None:
    match = _ACTION_NAME.fullmatch(resource_name)
    if match is None:
        code = "request_error.RESOURCE_NAME_MALFORMED"
        return Problem(code, "conversion_action", "Malformed resource name.")
    action = actions.get(int(match.group(2)))
    if match.group(1) != customer.id or action is None or action.status == "REMOVED":
        code = f"{UPLOAD}.NO_CONVERSION_ACTION_FOUND"
        return Problem(code, "conversion_action", "The conversion action was not found.")
    if action.type != "UPLOAD_CLICKS":
        code = f"{UPLOAD}.INVALID_CONVERSION_ACTION_TYPE"
        return Problem(code, "conversion_action", "Not an upload-clicks conversion action.")
    return None


def _date_time_problem(value: str, field_name: str = "conversion_date_time") -> Problem | None:
    if _parse_date_time(value) is None:
        code = "date_error.INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET"
        return Problem(code, field_name, "Expected yyyy-mm-dd hh:mm:ss+|-hh:mm.")
    return None


def _value_problem(c: Any) -> Problem | None:
    if "conversion_value" in c and not c.conversion_value >= 0:
        return Problem("field_error.INVALID_VALUE", "conversion_value", "Value must be >= 0.")
    if c.currency_code and not _CURRENCY.fullmatch(c.currency_code):
        return Problem("currency_code_error.UNSUPPORTED", "currency_code", "Unsupported currency.")
    return None


def _identifier_problem(identifiers: Sequence[Any]) -> Problem | None:
    """Hashed email / phone only: anything else, or a value that is not a digest, fails."""
    if len(identifiers) > MAX_USER_IDENTIFIERS:
        return Problem("collection_size_error.TOO_MANY", "user_identifiers", "At most 5.")
    for identifier in identifiers:
        which, value = _identifier(identifier)
        if which not in ("hashed_email", "hashed_phone_number"):
            code = f"{UPLOAD}.UNSUPPORTED_USER_IDENTIFIER"
            return Problem(code, "user_identifiers", "Only hashed email and phone.")
        if not _SHA256_HEX.fullmatch(value):
            code = f"{UPLOAD}.INVALID_USER_IDENTIFIER"
            return Problem(code, "user_identifiers", "Not a SHA-256 hex digest.")
    return None


def _consent_problem(c: Any) -> Problem | None:
    if "consent" in c and c.consent.ad_personalization:
        field_name = "consent.ad_personalization"
        return Problem("field_error.VALUE_MUST_BE_UNSET", field_name, "Not accepted here.")
    return None


def _click_time_problem(
    kind: str, clicked_at: datetime, converted_at: datetime, now: datetime
) -> Problem | None:
    if now - clicked_at < TOO_RECENT:
        return Problem(f"{UPLOAD}.TOO_RECENT_EVENT", kind, "The click is too recent.")
    if converted_at < clicked_at:
        return Problem(f"{UPLOAD}.CONVERSION_PRECEDES_EVENT", kind, "Conversion before click.")
    if converted_at - clicked_at > CLICK_LOOKBACK:
        return Problem(f"{UPLOAD}.EXPIRED_EVENT", kind, "Click older than the lookback window.")
    return None


def _identifier(identifier: Any) -> tuple[str, str]:
    which = type(identifier).pb(identifier).WhichOneof("identifier") or ""
    return which, str(getattr(identifier, which)) if which else ""


def _click_result(conversion: Any) -> Any:
    result = ClickConversionResult(
        conversion_action=conversion.conversion_action,
        conversion_date_time=conversion.conversion_date_time,
        user_identifiers=list(conversion.user_identifiers),
    )
    kind, click = _click(conversion)
    if click:
        setattr(result, kind, click)
    return result


# --------------------------------------------------------------------------- adjustments


def _adjusted_action_problem(
    resource_name: str, customers: dict[str, EmulatedCustomer], actions: dict[int, EmulatedAction]
) -> Problem | None:
    match = _ACTION_NAME.fullmatch(resource_name)
    action = actions.get(int(match.group(2))) if match else None
    if match is None or match.group(1) not in customers or action is None:
        code = f"{ADJUST}.NO_CONVERSION_ACTION_FOUND"
        return Problem(code, "conversion_action", "The conversion action was not found.")
    if action.status == "REMOVED":
        code = f"{ADJUST}.NO_CONVERSION_ACTION_FOUND"
        return Problem(code, "conversion_action", "The conversion action was removed.")
    if action.type not in ADJUSTABLE_TYPES:
        code = f"{ADJUST}.INVALID_CONVERSION_ACTION_TYPE"
        return Problem(code, "conversion_action", "This action type takes no adjustments.")
    return None


def _duplicate_adjustment(adjustment: Any, seen: set[tuple[str, str, str]]) -> Problem | None:
    """Two adjustments of one conversion with one adjustment time in the same request."""
    key = (adjustment.conversion_action, adjustment.order_id, adjustment.adjustment_date_time)
    if adjustment.order_id and key in seen:
        code = f"{ADJUST}.DUPLICATE_ADJUSTMENT_IN_REQUEST"
        return Problem(code, "adjustment_date_time", "Duplicate adjustment time in request.")
    seen.add(key)
    return None


def _adjustment_problem(target: StoredConversion, kind: str, at: datetime) -> Problem | None:
    def problem(code: str) -> Problem:
        return Problem(f"{ADJUST}.{code}", "", code.replace("_", " ").capitalize() + ".")

    converted_at = _parse_date_time(target.conversion_date_time)
    if kind not in ("RETRACTION", "RESTATEMENT"):
        return problem("CONVERSION_ACTION_NOT_ELIGIBLE_FOR_ENHANCEMENT")
    if target.retracted:
        return problem("CONVERSION_ALREADY_RETRACTED")
    if converted_at is not None and at <= converted_at:  # Google: strictly after it
        return problem("ADJUSTMENT_PRECEDES_CONVERSION")
    if kind == "RESTATEMENT" and target.restated_at is not None:
        # A later restatement must carry a later adjustment time.
        if at == target.restated_at:
            return problem("RESTATEMENT_ALREADY_EXISTS")
        if at < target.restated_at:
            return problem("MORE_RECENT_RESTATEMENT_FOUND")
    return None


def _apply_adjustment(target: StoredConversion, adjustment: Any, at: datetime) -> None:
    kind = adjustment.adjustment_type.name
    target.adjustments.append(kind)
    if kind == "RETRACTION":
        target.retracted = True
        target.history.append(StoredAdjustment(kind, adjustment.adjustment_date_time))
        return
    target.restated_at = at
    target.value = adjustment.restatement_value.adjusted_value
    target.currency = adjustment.restatement_value.currency_code or target.currency
    target.history.append(
        StoredAdjustment(kind, adjustment.adjustment_date_time, target.value, target.currency)
    )


def _adjustment_result(adjustment: Any) -> Any:
    result = ConversionAdjustmentResult(
        conversion_action=adjustment.conversion_action,
        adjustment_date_time=adjustment.adjustment_date_time,
        adjustment_type=adjustment.adjustment_type,
    )
    if adjustment.order_id:
        result.order_id = adjustment.order_id
    return result


# --------------------------------------------------------------------------- resources


def _customer_resource(customer: EmulatedCustomer) -> Any:
    enablement = "ON" if customer.enhanced_conversions else "OFF"
    return Customer(
        resource_name=f"customers/{customer.id}",
        id=int(customer.id),
        time_zone=customer.time_zone,
        currency_code=customer.currency_code,
        conversion_tracking_setting=ConversionTrackingSetting(
            accepted_customer_data_terms=customer.accepted_customer_data_terms,
            enablement_setting=enablement,
            effective_enablement_setting=enablement,
        ),
    )


def _action_resource(customer: EmulatedCustomer, action: EmulatedAction) -> Any:
    return ConversionAction(
        resource_name=f"customers/{customer.id}/conversionActions/{action.id}",
        id=action.id,
        name=action.name,
        type_=action.type,
        status=action.status,
    )
