"""A local Google Ads API (v26) over gRPC with TLS, for the legacy upload path.

`GoogleAdsClient(endpoint="127.0.0.1:PORT")` reaches it unchanged (API-NOTES
§1, §6): google-ads ships no servicer classes, so the services are generic
handlers using the library's own message types for (de)serialisation.

- ConversionUploadService.UploadClickConversions: at most 2,000 rows,
  `partial_failure` required; each bad row comes back in
  `partial_failure_error` (one GoogleAdsFailure whose errors point at
  `conversions[i]`) and as an empty result.
- ConversionAdjustmentUploadService.UploadConversionAdjustments: RESTATEMENT
  and RETRACTION of earlier uploads by `order_id` or gclid/time pair.
- GoogleAdsService.Search / SearchStream: GAQL over `conversion_action` and
  `customer`, with only the selected fields returned.

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
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
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
from google.ads.googleads.v26.resources.types.customer import (
    ConversionTrackingSetting,
    Customer,
)
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
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import status_pb2

from connector.sandbox import gaql
from connector.sandbox.tls import test_ca

VERSION = "v26"
SERVICES = f"google.ads.googleads.{VERSION}.services."
FAILURE_KEY = f"google.ads.googleads.{VERSION}.errors.googleadsfailure-bin"
FAILURE_TYPE_URL = f"type.googleapis.com/google.ads.googleads.{VERSION}.errors.GoogleAdsFailure"
REQUEST_ID_KEY = "request-id"
DEVELOPER_TOKEN = "emulator-developer-token"  # noqa: S105  (unlocks the emulator only)

MAX_CONVERSIONS = 2_000
MAX_USER_IDENTIFIERS = 5
CLICK_LOOKBACK = timedelta(days=90)  # an upload-clicks action's default window
TOO_RECENT = timedelta(hours=6)  # clicks younger than this are not yet importable
FUTURE_TOLERANCE = timedelta(minutes=10)

_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
_CLICK_ID = re.compile(r"[A-Za-z0-9_-]{8,}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_ACTION_NAME = re.compile(r"customers/(\d+)/conversionActions/(\d+)")
_CLICK_KINDS = ("gclid", "gbraid", "wbraid")

Path = Sequence[tuple[str, int | None]]  # error location: (field name, index)


@dataclass(frozen=True)
class EmulatedAction:
    """A conversion action the emulated account owns."""

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


@dataclass
class StoredConversion:
    """One accepted click conversion and its adjustments."""

    customer_id: str
    conversion_action: str
    order_id: str
    click: str  # "gclid:..." or "" for identifier-only (enhanced conversions for leads)
    conversion_date_time: str
    value: float | None
    currency: str
    hashed_identifiers: list[str]
    retracted: bool = False
    restated_at: datetime | None = None
    adjustments: list[str] = field(default_factory=list)  # adjustment types, in order


@dataclass(frozen=True)
class GrpcFault:
    """An injected failure for the next matching call (method "" matches any)."""

    code: grpc.StatusCode
    method: str = ""
    failure: str = ""  # "kind.CODE" put into the failure metadata; "" = none (as a proxy sends)
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
    """InternalError.TRANSIENT_ERROR as a GoogleAdsException (status UNAVAILABLE)."""
    return GrpcFault(grpc.StatusCode.UNAVAILABLE, failure="internal_error.TRANSIENT_ERROR")


class _Abort(Exception):
    """Ends a call with a status and a GoogleAdsFailure in the trailing metadata."""

    def __init__(self, code: grpc.StatusCode, errors: list[Any], message: str = "") -> None:
        super().__init__(message or "; ".join(e.message for e in errors))
        self.code = code
        self.errors = errors


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


def _failure_bytes(errors: list[Any], request_id: str) -> bytes:
    failure = GoogleAdsFailure(errors=errors, request_id=request_id)
    return bytes(GoogleAdsFailure.serialize(failure))


def _partial_failure(errors: list[Any], request_id: str) -> status_pb2.Status:
    detail = any_pb2.Any(type_url=FAILURE_TYPE_URL, value=_failure_bytes(errors, request_id))
    message = "; ".join(f"{e.message}, at {_path_text(e)}" for e in errors)
    return status_pb2.Status(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=message, details=[detail]
    )


def _path_text(error: Any) -> str:
    parts = []
    for element in error.location.field_path_elements:
        index = f"[{element.index}]" if "index" in element else ""
        parts.append(f"{element.field_name}{index}")
    return ".".join(parts)


def _fault_errors(fault: GrpcFault) -> list[Any]:
    if not fault.failure:
        return []
    details = None
    if fault.retry_delay_seconds is not None:
        delay = duration_pb2.Duration(seconds=fault.retry_delay_seconds)
        details = ErrorDetails(
            quota_error_details=QuotaErrorDetails(rate_scope="DEVELOPER", retry_delay=delay)
        )
    return [ads_error(fault.failure, f"Injected {fault.code.name}.", details=details)]


def _parse_date_time(value: str) -> datetime | None:
    if not _DATE_TIME.fullmatch(value):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S%z")
    except ValueError:
        return None


# --------------------------------------------------------------------------- emulator


class GoogleAdsApiEmulator:
    """A thread-safe in-memory Google Ads API on 127.0.0.1:<port>, served over test-CA TLS."""

    def __init__(
        self,
        customers: Iterable[EmulatedCustomer],
        actions: Iterable[EmulatedAction] = (),
        *,
        developer_token: str | None = DEVELOPER_TOKEN,
        allowlisted: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.customers = {c.id: c for c in customers}
        self.actions = {a.id: a for a in actions}
        self.developer_token = developer_token
        self.allowlisted = allowlisted
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._faults: deque[GrpcFault] = deque()
        self._reset_state()
        self._server = self._build_server()

    def _reset_state(self) -> None:
        self._raw: list[tuple[str, bytes]] = []
        self._metadata: list[dict[str, str]] = []
        self._queries: list[str] = []
        self._by_order: dict[tuple[str, str], StoredConversion] = {}
        self._by_click: dict[tuple[str, str, str], StoredConversion] = {}
        self._not_found: set[str] = set()
        self._too_recent: set[str] = set()
        self._clicks: dict[str, datetime] = {}
        self._next_job = 1

    def reset(self) -> None:
        """Forget what was received, the click switches and pending faults."""
        with self._lock:
            self._faults.clear()
            self._reset_state()

    # -- lifecycle

    def _build_server(self) -> grpc.Server:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers(self._handlers())
        credentials = grpc.ssl_server_credentials(
            [(test_ca().private_key_pem(), test_ca().cert_chain_pem())]
        )
        self.port = int(server.add_secure_port("127.0.0.1:0", credentials))
        return server

    @property
    def endpoint(self) -> str:
        """What GoogleAdsClient takes as `endpoint` (the test cert covers 127.0.0.1)."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> GoogleAdsApiEmulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> GoogleAdsApiEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- switches

    def mark_clicks(self, *, not_found: Iterable[str] = (), too_recent: Iterable[str] = ()) -> None:
        """Click ids answered with CLICK_NOT_FOUND / TOO_RECENT_EVENT."""
        with self._lock:
            self._not_found.update(not_found)
            self._too_recent.update(too_recent)

    def register_click(self, click_id: str, at: datetime) -> None:
        """A click with a known time: enables CONVERSION_PRECEDES_EVENT, EXPIRED_EVENT checks."""
        with self._lock:
            self._clicks[click_id] = at

    def push_fault(self, fault: GrpcFault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend(fault for _ in range(times))

    # -- what arrived (copies, so readers never race the server threads)

    @property
    def conversions(self) -> list[StoredConversion]:
        with self._lock:
            return list(self._by_order.values()) + [
                c for c in self._by_click.values() if not c.order_id
            ]

    @property
    def upload_requests(self) -> list[Any]:
        """Every UploadClickConversionsRequest received, parsed, including failed ones."""
        with self._lock:
            raw = [body for method, body in self._raw if method == "UploadClickConversions"]
        return [UploadClickConversionsRequest.deserialize(body) for body in raw]

    @property
    def received_bytes(self) -> list[bytes]:
        """Raw request bodies of every call, to check no clear-text PII ever arrived."""
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
        with self._lock:
            return [dict(m) for m in self._metadata]

    # -- gRPC plumbing

    def _handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        upload = {
            "UploadClickConversions": self._unary(
                "UploadClickConversions",
                self._upload_clicks,
                UploadClickConversionsRequest,
                UploadClickConversionsResponse,
            )
        }
        adjust = {
            "UploadConversionAdjustments": self._unary(
                "UploadConversionAdjustments",
                self._upload_adjustments,
                UploadConversionAdjustmentsRequest,
                UploadConversionAdjustmentsResponse,
            )
        }
        search = {
            "Search": self._unary(
                "Search", self._search, SearchGoogleAdsRequest, SearchGoogleAdsResponse
            ),
            "SearchStream": grpc.unary_stream_rpc_method_handler(
                self._guarded_stream("SearchStream", self._search_stream),
                request_deserializer=self._recording("SearchStream", SearchGoogleAdsStreamRequest),
                response_serializer=SearchGoogleAdsStreamResponse.serialize,
            ),
        }
        return (
            grpc.method_handlers_generic_handler(SERVICES + "ConversionUploadService", upload),
            grpc.method_handlers_generic_handler(
                SERVICES + "ConversionAdjustmentUploadService", adjust
            ),
            grpc.method_handlers_generic_handler(SERVICES + "GoogleAdsService", search),
        )

    def _recording(self, method: str, request_type: Any) -> Callable[[bytes], Any]:
        def deserialize(raw: bytes) -> Any:
            with self._lock:
                self._raw.append((method, raw))
            return request_type.deserialize(raw)

        return deserialize

    def _unary(
        self,
        method: str,
        handle: Callable[[Any, str], Any],
        request_type: Any,
        response_type: Any,
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

    def _guarded_stream(
        self, method: str, handle: Callable[[Any, str], Iterator[Any]]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            request_id = uuid.uuid4().hex[:22]
            try:
                self._admit(method, context)
                responses = list(handle(request, request_id))
            except _Abort as abort:
                _abort(context, abort, request_id)
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            yield from responses

        return behaviour

    def _admit(self, method: str, context: grpc.ServicerContext) -> None:
        """Injected faults first, then the headers every Google Ads API call needs."""
        fault = self._take_fault(method)
        if fault is not None:
            if fault.delay_seconds:
                time.sleep(fault.delay_seconds)
            raise _Abort(fault.code, _fault_errors(fault), f"Injected {fault.code.name}.")
        headers = {k: str(v) for k, v in context.invocation_metadata() if k != "authorization"}
        with self._lock:
            self._metadata.append(headers)
        if self.developer_token and headers.get("developer-token") != self.developer_token:
            error = ads_error(
                "authentication_error.DEVELOPER_TOKEN_INVALID", "The developer token is invalid."
            )
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, [error])

    def _take_fault(self, method: str) -> GrpcFault | None:
        with self._lock:
            fault = next((f for f in self._faults if f.method in ("", method)), None)
            if fault is not None:
                self._faults.remove(fault)
            return fault

    def _customer(self, customer_id: str) -> EmulatedCustomer:
        customer = self.customers.get(customer_id)
        if customer is None:
            error = ads_error(
                "authorization_error.USER_PERMISSION_DENIED",
                "User doesn't have permission to access customer.",
            )
            raise _Abort(grpc.StatusCode.PERMISSION_DENIED, [error])
        return customer

    # -- ConversionUploadService

    def _upload_clicks(self, request: Any, request_id: str) -> Any:
        customer = self._customer(request.customer_id)
        _check_request(request, request.conversions, "conversion_upload_error")
        if not self.allowlisted:
            error = ads_error(
                "not_allowlisted_error.CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE",
                "Customer is not allowlisted for accessing this feature.",
            )
            raise _Abort(grpc.StatusCode.PERMISSION_DENIED, [error])
        with self._lock:
            errors, accepted = self._apply_clicks(customer, request)
            job_id = self._job_id(request.job_id)
        results = [
            _click_result(c) if i in accepted else ClickConversionResult()
            for i, c in enumerate(request.conversions)
        ]
        response = UploadClickConversionsResponse(results=results, job_id=job_id)
        if errors:
            response.partial_failure_error = _partial_failure(errors, request_id)
        return response

    def _job_id(self, requested: int) -> int:
        if requested:
            return requested
        self._next_job += 1
        return self._next_job

    def _apply_clicks(self, customer: EmulatedCustomer, request: Any) -> tuple[list[Any], set[int]]:
        """Validate every row; store the good ones unless validate_only. Caller holds the lock."""
        errors: list[Any] = []
        accepted: set[int] = set()
        seen_orders: set[str] = set()
        seen_clicks: set[tuple[str, str, str]] = set()
        for index, conversion in enumerate(request.conversions):
            row_errors = _check_click(index, conversion, customer, self.actions)
            if not row_errors:
                row_errors = self._check_against_state(index, conversion, seen_orders, seen_clicks)
            if row_errors:
                errors.extend(row_errors)
                continue
            accepted.add(index)
            if not request.validate_only:
                self._store(customer, conversion)
        return errors, accepted

    def _check_against_state(
        self,
        index: int,
        conversion: Any,
        seen_orders: set[str],
        seen_clicks: set[tuple[str, str, str]],
    ) -> list[Any]:
        """Duplicates (in the request, then already stored) and what is known of the click."""
        order_id, click_key = conversion.order_id, _click_key(conversion)
        here: Path = [("conversions", index)]
        if order_id and (order_id in seen_orders):
            return [
                ads_error(
                    "conversion_upload_error.DUPLICATE_ORDER_ID",
                    "Duplicate order id.",
                    [*here, ("order_id", None)],
                )
            ]
        if click_key[1] and click_key in seen_clicks:
            return [
                ads_error(
                    "conversion_upload_error.DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
                    "Duplicate conversion in request.",
                    here,
                )
            ]
        seen_orders.add(order_id)
        seen_clicks.add(click_key)
        if order_id and (conversion.conversion_action, order_id) in self._by_order:
            return [
                ads_error(
                    "conversion_upload_error.ORDER_ID_ALREADY_IN_USE",
                    "Order id already in use.",
                    [*here, ("order_id", None)],
                )
            ]
        if click_key[1] and click_key in self._by_click:
            return [
                ads_error(
                    "conversion_upload_error.CLICK_CONVERSION_ALREADY_EXISTS",
                    "This conversion already exists.",
                    here,
                )
            ]
        return self._check_click_facts(index, conversion)

    def _check_click_facts(self, index: int, conversion: Any) -> list[Any]:
        kind, click = _click(conversion)
        if not click:
            return []
        path: Path = [("conversions", index), (kind, None)]
        if click in self._not_found:
            return [
                ads_error(
                    "conversion_upload_error.CLICK_NOT_FOUND", "The click was not found.", path
                )
            ]
        if click in self._too_recent:
            return [
                ads_error(
                    "conversion_upload_error.TOO_RECENT_EVENT", "The click is too recent.", path
                )
            ]
        return _check_click_time(path, self._clicks.get(click), conversion, self._clock())

    def _store(self, customer: EmulatedCustomer, conversion: Any) -> None:
        kind, click = _click(conversion)
        stored = StoredConversion(
            customer_id=customer.id,
            conversion_action=conversion.conversion_action,
            order_id=conversion.order_id,
            click=f"{kind}:{click}" if click else "",
            conversion_date_time=conversion.conversion_date_time,
            value=conversion.conversion_value if "conversion_value" in conversion else None,
            currency=conversion.currency_code or customer.currency_code,
            hashed_identifiers=[_identifier_value(u) for u in conversion.user_identifiers],
        )
        if stored.order_id:
            self._by_order[(stored.conversion_action, stored.order_id)] = stored
        key = _click_key(conversion)
        if key[1]:
            self._by_click[key] = stored

    # -- ConversionAdjustmentUploadService

    def _upload_adjustments(self, request: Any, request_id: str) -> Any:
        self._customer(request.customer_id)
        _check_request(
            request, request.conversion_adjustments, "conversion_adjustment_upload_error"
        )
        errors: list[Any] = []
        results = []
        with self._lock:
            for index, adjustment in enumerate(request.conversion_adjustments):
                row_errors = self._adjust(index, adjustment, request.validate_only)
                errors.extend(row_errors)
                results.append(
                    ConversionAdjustmentResult() if row_errors else _adjustment_result(adjustment)
                )
            job_id = self._job_id(request.job_id)
        response = UploadConversionAdjustmentsResponse(results=results, job_id=job_id)
        if errors:
            response.partial_failure_error = _partial_failure(errors, request_id)
        return response

    def _adjust(self, index: int, adjustment: Any, validate_only: bool) -> list[Any]:
        """Check one adjustment against the stored conversion; apply it. Caller holds the lock."""
        here: Path = [("conversion_adjustments", index)]
        target, problem = self._adjustment_target(adjustment)
        if problem:
            return [ads_error(f"conversion_adjustment_upload_error.{problem}", problem, here)]
        assert target is not None
        at = _parse_date_time(adjustment.adjustment_date_time)
        if at is None:
            return [
                ads_error(
                    "date_error.INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET",
                    "Invalid date time.",
                    [*here, ("adjustment_date_time", None)],
                )
            ]
        problem = _adjustment_problem(target, adjustment, at)
        if problem:
            return [ads_error(f"conversion_adjustment_upload_error.{problem}", problem, here)]
        if not validate_only:
            _apply_adjustment(target, adjustment, at)
        return []

    def _adjustment_target(self, adjustment: Any) -> tuple[StoredConversion | None, str]:
        action = adjustment.conversion_action
        pair = adjustment.gclid_date_time_pair if "gclid_date_time_pair" in adjustment else None
        if adjustment.order_id and pair is not None:
            return None, "GCLID_DATE_TIME_PAIR_AND_ORDER_ID_BOTH_SET"
        if not _known_action(action, self.actions, self.customers):
            return None, "NO_CONVERSION_ACTION_FOUND"
        if adjustment.order_id:
            found = self._by_order.get((action, adjustment.order_id))
        elif pair is not None:
            found = self._by_click.get((action, f"gclid:{pair.gclid}", pair.conversion_date_time))
        else:
            found = None
        return found, "" if found else "CONVERSION_NOT_FOUND"

    # -- GoogleAdsService

    def _search(self, request: Any, request_id: str) -> Any:
        rows, mask = self._query(request.customer_id, request.query)
        return SearchGoogleAdsResponse(results=rows, field_mask=mask, total_results_count=len(rows))

    def _search_stream(self, request: Any, request_id: str) -> Iterator[Any]:
        rows, mask = self._query(request.customer_id, request.query)
        yield SearchGoogleAdsStreamResponse(results=rows, field_mask=mask, request_id=request_id)

    def _query(self, customer_id: str, text: str) -> tuple[list[Any], field_mask_pb2.FieldMask]:
        customer = self._customer(customer_id)
        with self._lock:
            self._queries.append(text)
        try:
            query = gaql.parse(text)
            rows = _run_query(query, self._resources(customer, query.resource))
        except gaql.GaqlError as exc:
            error = ads_error(f"query_error.{exc.code}", str(exc), [("query", None)])
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, [error]) from None
        return [GoogleAdsRow.wrap(r) for r in rows], field_mask_pb2.FieldMask(paths=query.fields)

    def _resources(self, customer: EmulatedCustomer, resource: str) -> list[Any]:
        """Full GoogleAdsRow protobufs for the FROM resource."""
        if resource == "customer":
            return [GoogleAdsRow.pb(GoogleAdsRow(customer=_customer_resource(customer)))]
        if resource == "conversion_action":
            return [
                GoogleAdsRow.pb(GoogleAdsRow(conversion_action=_action_resource(customer, a)))
                for a in self.actions.values()
            ]
        if resource in GoogleAdsRow.pb().DESCRIPTOR.fields_by_name:
            raise _Abort(
                grpc.StatusCode.UNIMPLEMENTED,
                [],
                f"the emulator serves only customer and conversion_action, not {resource}",
            )
        raise gaql.GaqlError("BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", f"unknown resource {resource}")


def _abort(context: grpc.ServicerContext, abort: _Abort, request_id: str) -> NoReturn:
    metadata: list[tuple[str, str | bytes]] = [(REQUEST_ID_KEY, request_id)]
    if abort.errors:
        metadata.append((FAILURE_KEY, _failure_bytes(abort.errors, request_id)))
    context.set_trailing_metadata(tuple(metadata))
    context.abort(abort.code, str(abort))
    raise AssertionError("grpc's context.abort always raises")


def _check_request(request: Any, rows: Sequence[Any], kind: str) -> None:
    """Request-level rules of both upload services: partial failure on, at most 2,000 rows."""
    if not request.partial_failure:
        error = ads_error(
            "partial_failure_error.PARTIAL_FAILURE_MODE_REQUIRED",
            "The partial failure field must be set to true.",
            [("partial_failure", None)],
        )
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, [error])
    if len(rows) > MAX_CONVERSIONS:
        name = "CONVERSIONS" if kind == "conversion_upload_error" else "ADJUSTMENTS"
        error = ads_error(f"{kind}.TOO_MANY_{name}_IN_REQUEST", "At most 2000 rows per request.")
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, [error])


# --------------------------------------------------------------------------- click rows


def _click(conversion: Any) -> tuple[str, str]:
    for kind in _CLICK_KINDS:
        value = getattr(conversion, kind)
        if value:
            return kind, str(value)
    return "", ""


def _click_key(conversion: Any) -> tuple[str, str, str]:
    """(action, "kind:click id", time): Google's identity of a click conversion."""
    kind, click = _click(conversion)
    click_text = f"{kind}:{click}" if click else ""
    return conversion.conversion_action, click_text, conversion.conversion_date_time


def _check_click(
    index: int, conversion: Any, customer: EmulatedCustomer, actions: dict[int, EmulatedAction]
) -> list[Any]:
    """Checks of one row on its own; the first failing group is reported, as Google does."""
    here: Path = [("conversions", index)]
    for check in (
        _check_click_ids,
        _check_action,
        _check_date_time,
        _check_value,
        _check_identifiers,
        _check_consent,
    ):
        errors = check(here, conversion, customer, actions)
        if errors:
            return errors
    return []


def _check_click_ids(here: Path, c: Any, customer: EmulatedCustomer, _: Any) -> list[Any]:
    present = [k for k in _CLICK_KINDS if getattr(c, k)]
    if {"gbraid", "wbraid"} <= set(present):
        return [
            ads_error(
                "conversion_upload_error.GBRAID_WBRAID_BOTH_SET",
                "Both gbraid and wbraid are set.",
                [*here, ("wbraid", None)],
            )
        ]
    if len(present) > 1:
        return [
            ads_error(
                "field_error.VALUE_MUST_BE_UNSET",
                "Only one click id may be set.",
                [*here, (present[1], None)],
            )
        ]
    if not present:
        return _check_identifier_only(here, c, customer)
    kind = present[0]
    if not _CLICK_ID.fullmatch(getattr(c, kind)):
        return [
            ads_error(
                f"conversion_upload_error.UNPARSEABLE_{kind.upper()}",
                f"The {kind} could not be decoded.",
                [*here, (kind, None)],
            )
        ]
    return []


def _check_identifier_only(here: Path, c: Any, customer: EmulatedCustomer) -> list[Any]:
    """No click id: only enhanced conversions for leads, which need identifiers and terms."""
    if not c.user_identifiers:
        return [
            ads_error(
                "field_error.REQUIRED",
                "A click id or user identifiers are required.",
                [*here, ("gclid", None)],
            )
        ]
    if not customer.accepted_customer_data_terms:
        return [
            ads_error(
                "conversion_upload_error.CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
                "Customer data terms not accepted.",
                here,
            )
        ]
    if not customer.enhanced_conversions:
        return [
            ads_error(
                "conversion_upload_error.CUSTOMER_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS",
                "Enhanced conversions for leads are not enabled.",
                here,
            )
        ]
    return []


def _check_action(here: Path, c: Any, customer: EmulatedCustomer, actions: Any) -> list[Any]:
    path = [*here, ("conversion_action", None)]
    match = _ACTION_NAME.fullmatch(c.conversion_action)
    if match is None:
        return [
            ads_error(
                "request_error.RESOURCE_NAME_MALFORMED",
                "Malformed conversion action resource name.",
                path,
            )
        ]
    action = actions.get(int(match.group(2)))
    if match.group(1) != customer.id or action is None or action.status == "REMOVED":
        return [
            ads_error(
                "conversion_upload_error.NO_CONVERSION_ACTION_FOUND",
                "The conversion action was not found.",
                path,
            )
        ]
    if action.type != "UPLOAD_CLICKS":
        return [
            ads_error(
                "conversion_upload_error.INVALID_CONVERSION_ACTION_TYPE",
                "The conversion action is not an upload-clicks action.",
                path,
            )
        ]
    return []


def _check_date_time(here: Path, c: Any, _c: Any, _a: Any) -> list[Any]:
    path = [*here, ("conversion_date_time", None)]
    if _parse_date_time(c.conversion_date_time) is None:
        return [
            ads_error(
                "date_error.INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET",
                "Expected yyyy-mm-dd hh:mm:ss+|-hh:mm.",
                path,
            )
        ]
    return []


def _check_value(here: Path, c: Any, _c: Any, _a: Any) -> list[Any]:
    if "conversion_value" in c and not c.conversion_value >= 0:
        return [
            ads_error(
                "field_error.INVALID_VALUE",
                "Conversion value must be >= 0.",
                [*here, ("conversion_value", None)],
            )
        ]
    if c.currency_code and not _CURRENCY.fullmatch(c.currency_code):
        return [
            ads_error(
                "currency_code_error.UNSUPPORTED",
                "Unsupported currency code.",
                [*here, ("currency_code", None)],
            )
        ]
    return []


def _check_identifiers(here: Path, c: Any, _c: Any, _a: Any) -> list[Any]:
    if len(c.user_identifiers) > MAX_USER_IDENTIFIERS:
        return [
            ads_error(
                "collection_size_error.TOO_MANY",
                "At most 5 user identifiers.",
                [*here, ("user_identifiers", None)],
            )
        ]
    for i, identifier in enumerate(c.user_identifiers):
        path = [*here, ("user_identifiers", i)]
        which = type(identifier).pb(identifier).WhichOneof("identifier")
        if which not in ("hashed_email", "hashed_phone_number"):
            return [
                ads_error(
                    "conversion_upload_error.UNSUPPORTED_USER_IDENTIFIER",
                    "Only hashed email and phone are supported.",
                    path,
                )
            ]
        if not _SHA256_HEX.fullmatch(getattr(identifier, which)):
            return [
                ads_error(
                    "conversion_upload_error.INVALID_USER_IDENTIFIER",
                    "User identifiers must be SHA-256 hex digests.",
                    [*path, (which, None)],
                )
            ]
    return []


def _check_consent(here: Path, c: Any, _c: Any, _a: Any) -> list[Any]:
    if "consent" in c and c.consent.ad_personalization:
        return [
            ads_error(
                "field_error.VALUE_MUST_BE_UNSET",
                "ad_personalization consent is not accepted for click conversions.",
                [*here, ("consent", None), ("ad_personalization", None)],
            )
        ]
    return []


def _check_click_time(
    path: Path, clicked_at: datetime | None, conversion: Any, now: datetime
) -> list[Any]:
    converted_at = _parse_date_time(conversion.conversion_date_time)
    if converted_at is not None and converted_at > now + FUTURE_TOLERANCE:
        return [
            ads_error(
                "date_error.LATER_THAN_MAXIMUM_DATE", "The conversion is in the future.", path
            )
        ]
    if clicked_at is None or converted_at is None:
        return []
    if now - clicked_at < TOO_RECENT:
        return [
            ads_error("conversion_upload_error.TOO_RECENT_EVENT", "The click is too recent.", path)
        ]
    if converted_at < clicked_at:
        return [
            ads_error(
                "conversion_upload_error.CONVERSION_PRECEDES_EVENT",
                "The conversion precedes the click.",
                path,
            )
        ]
    if converted_at - clicked_at > CLICK_LOOKBACK:
        return [
            ads_error(
                "conversion_upload_error.EXPIRED_EVENT",
                "The click is older than the lookback window.",
                path,
            )
        ]
    return []


def _identifier_value(identifier: Any) -> str:
    which = type(identifier).pb(identifier).WhichOneof("identifier")
    return str(getattr(identifier, which)) if which else ""


def _click_result(conversion: Any) -> Any:
    kind, click = _click(conversion)
    result = ClickConversionResult(
        conversion_action=conversion.conversion_action,
        conversion_date_time=conversion.conversion_date_time,
        user_identifiers=list(conversion.user_identifiers),
    )
    if click:
        setattr(result, kind, click)
    return result


# --------------------------------------------------------------------------- adjustments


def _known_action(
    resource_name: str, actions: dict[int, EmulatedAction], customers: dict[str, Any]
) -> bool:
    match = _ACTION_NAME.fullmatch(resource_name)
    return bool(match and match.group(1) in customers and int(match.group(2)) in actions)


def _adjustment_problem(target: StoredConversion, adjustment: Any, at: datetime) -> str:
    kind = adjustment.adjustment_type.name
    converted_at = _parse_date_time(target.conversion_date_time)
    if kind not in ("RETRACTION", "RESTATEMENT"):
        return "CONVERSION_ACTION_NOT_ELIGIBLE_FOR_ENHANCEMENT"
    if target.retracted:
        return "CONVERSION_ALREADY_RETRACTED"
    if converted_at is not None and at < converted_at:
        return "ADJUSTMENT_PRECEDES_CONVERSION"
    if kind == "RESTATEMENT" and target.restated_at is not None:
        if at == target.restated_at:
            return "RESTATEMENT_ALREADY_EXISTS"
        if at < target.restated_at:
            return "MORE_RECENT_RESTATEMENT_FOUND"
    return ""


def _apply_adjustment(target: StoredConversion, adjustment: Any, at: datetime) -> None:
    kind = adjustment.adjustment_type.name
    target.adjustments.append(kind)
    if kind == "RETRACTION":
        target.retracted = True
        return
    target.restated_at = at
    target.value = adjustment.restatement_value.adjusted_value
    if adjustment.restatement_value.currency_code:
        target.currency = adjustment.restatement_value.currency_code


def _adjustment_result(adjustment: Any) -> Any:
    result = ConversionAdjustmentResult(
        conversion_action=adjustment.conversion_action,
        adjustment_date_time=adjustment.adjustment_date_time,
        adjustment_type=adjustment.adjustment_type,
    )
    if adjustment.order_id:
        result.order_id = adjustment.order_id
    return result


# --------------------------------------------------------------------------- queries


def _customer_resource(customer: EmulatedCustomer) -> Any:
    return Customer(
        resource_name=f"customers/{customer.id}",
        id=int(customer.id),
        time_zone=customer.time_zone,
        currency_code=customer.currency_code,
        conversion_tracking_setting=ConversionTrackingSetting(
            accepted_customer_data_terms=customer.accepted_customer_data_terms,
            enablement_setting="ON" if customer.enhanced_conversions else "OFF",
            effective_enablement_setting="ON" if customer.enhanced_conversions else "OFF",
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


def _run_query(query: gaql.Query, rows: list[Any]) -> list[Any]:
    for name in query.fields:
        if name.split(".")[0] != query.resource:
            raise gaql.GaqlError(
                "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE", f"{name} is not of {query.resource}"
            )
    selected = [_pb_path(f) for f in query.fields]
    matching = [r for r in rows if all(_matches(r, c) for c in query.conditions)]
    for name, descending in reversed(query.order_by):
        path = _pb_path(name)
        matching.sort(key=lambda r, p=path: _sort_key(_value(r, p)[0]), reverse=descending)
    if query.limit is not None:
        matching = matching[: query.limit]
    mask = field_mask_pb2.FieldMask(paths=[*selected, f"{query.resource}.resource_name"])
    return [_masked(r, mask) for r in matching]


def _masked(row: Any, mask: field_mask_pb2.FieldMask) -> Any:
    """Only the selected fields, as Google returns them."""
    out = type(row)()
    mask.MergeMessage(row, out)
    return out


def _pb_path(name: str) -> str:
    """The protobuf path of a GAQL field, or UNRECOGNIZED_FIELD (e.g. a field a version dropped)."""
    descriptor = GoogleAdsRow.pb().DESCRIPTOR
    parts: list[str] = []
    segments = name.split(".")
    for position, segment in enumerate(segments):
        fields = descriptor.fields_by_name if descriptor is not None else {}
        found = fields.get(segment) or fields.get(segment + "_")  # `type` is `type_` in python
        last = position == len(segments) - 1
        if found is None or (found.message_type is None) != last:
            raise gaql.GaqlError("UNRECOGNIZED_FIELD", f"unrecognized field {name!r}")
        parts.append(found.name)
        descriptor = found.message_type
    return ".".join(parts)


def _value(row: Any, path: str) -> tuple[object, FieldDescriptor]:
    message: Any = row
    names = path.split(".")
    for name in names[:-1]:
        message = getattr(message, name)
    descriptor = message.DESCRIPTOR.fields_by_name[names[-1]]
    value = getattr(message, names[-1])
    if descriptor.enum_type is not None:
        value = descriptor.enum_type.values_by_number[value].name
    return value, descriptor


def _matches(row: Any, condition: gaql.Condition) -> bool:
    actual, descriptor = _value(row, _pb_path(condition.field))
    wanted = [_coerce(v, descriptor, condition.field) for v in condition.values]
    operator = condition.operator
    if operator in ("=", "IN"):
        return actual in wanted
    if operator in ("!=", "NOT IN"):
        return actual not in wanted
    return _compare(actual, operator, wanted[0])


def _coerce(value: gaql.Value, descriptor: FieldDescriptor, name: str) -> object:
    """The condition value in the field's type; a mismatch is Google's BAD_VALUE."""
    if descriptor.enum_type is not None:
        text = value.text if isinstance(value, gaql.Literal) else value
        if not isinstance(text, str) or text not in descriptor.enum_type.values_by_name:
            raise gaql.GaqlError("BAD_ENUM_CONSTANT", f"{value!r} is not a value of {name}")
        return text
    if descriptor.type == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, gaql.Literal) and value.text.upper() in ("TRUE", "FALSE"):
            return value.text.upper() == "TRUE"
    elif descriptor.type == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise gaql.GaqlError("BAD_VALUE", f"{value!r} does not fit {name}")


def _compare(actual: Any, operator: str, wanted: Any) -> bool:
    if not isinstance(actual, int | float):
        raise gaql.GaqlError("OPERATOR_FIELD_MISMATCH", f"{operator} needs a numeric field")
    return {
        ">": actual > wanted,
        ">=": actual >= wanted,
        "<": actual < wanted,
        "<=": actual <= wanted,
    }[operator]


def _sort_key(value: object) -> tuple[str, object]:
    return type(value).__name__, value
