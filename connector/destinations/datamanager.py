"""The Data Manager API (`IngestionService`), once, for every destination that uses it.

Google Ads conversions and GA4 events both go through `IngestEvents`
(API-NOTES §0, §1); what differs is only how a delivery becomes an event and
which destination a request names. This module is everything else, shared:

- one client per destination: gRPC with TLS, Google's default transport (protobuf
  serialised in C: the REST transport's JSON costs 8 % of a sync's CPU), on a channel
  of our own so that the CA bundle setting is pinned on it; no GAPIC retry: ours,
  `call_with_retries`, is the only one;
- batches of at most `batch_size` events (2,000 is Google's limit), up to
  `concurrency` requests in the air at once, started no faster than
  `requests_per_minute` (the project's quota is 300), each settled as it returns;
- a request is accepted or rejected as a whole, so a rejected one is split in
  halves until only the bad events are set aside, each with Google's reason;
  ALREADY_EXISTS for one event means it is there already: delivered;
- transient failures (RESOURCE_EXHAUSTED, UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED,
  a lost connection) are retried, then left pending; a refusal of the request itself
  (auth, permission, an unknown account, a destination field) and a certificate the CA
  bundle does not vouch for are a DestinationError naming the fix: the destination
  stops for this run and no row is burnt;
- Google's details (google.rpc BadRequest, ErrorInfo, RetryInfo) are read as either
  transport delivers them: decoded messages over gRPC (`grpc-status-details-bin`,
  decoded by google-api-core with grpcio-status), JSON dicts over REST;
- `field_warnings` of an accepted request: stored per request in the ledger
  (reason, field path, events) and put on the outcomes of the events they name;
- `request_status`: Google's later verdict, read by `request_status.check`.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.ads import datamanager_v1 as dm
from google.ads.datamanager_v1.services.ingestion_service.transports.grpc import (
    IngestionServiceGrpcTransport,
)
from google.api_core import exceptions as gexc
from google.auth.credentials import Credentials
from google.protobuf import json_format
from google.rpc import error_details_pb2  # type: ignore[import-untyped]

from connector import stopping
from connector.core import Delivery, Outcome, Status
from connector.destinations import request_status
from connector.destinations.base import Settle
from connector.errors import DestinationError
from connector.google_api import GOOGLE_TRANSIENT
from connector.ledger import Ledger
from connector.retry import RetryableError, call_with_retries
from connector.settings import grpc_target

MAX_EVENTS = 2_000  # per IngestEvents request (Google's documented limit)
SCOPE = "https://www.googleapis.com/auth/datamanager"
CONSENT = {True: dm.ConsentStatus.CONSENT_GRANTED, False: dm.ConsentStatus.CONSENT_DENIED}
IDENTIFIER_FIELD = {"email": "email_address", "phone": "phone_number"}
_EVENT_PATH = re.compile(r"^events\[(\d+)\]\.?")
_WARNING_PREFIX = "WARNING_REASON_"
_REQUEST_PREFIX = re.compile(r"^[A-Z]+ https?://\S+: ")
# How gRPC (BoringSSL) words a certificate it could not verify, in UNAVAILABLE's message.
_UNTRUSTED = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")
T = TypeVar("T")
# How a destination turns a batch into one request (validate_only or not).
Build = Callable[[list[Delivery], bool], dm.IngestEventsRequest]


class DataManager:
    """One destination's IngestionService client, batcher and request splitter."""

    def __init__(
        self,
        destination: str,
        *,
        endpoint: str,
        ca_bundle: Path | None,
        credentials: Credentials,
        timeout: float,
        batch_size: int = MAX_EVENTS,
        concurrency: int = 1,
        requests_per_minute: int | None = None,
        sleep: Callable[[float], None] | None = None,
        credentials_setting: str = "the credentials setting",
        ca_setting: str = "the CA bundle setting",
        account: str = "the account",
    ) -> None:
        self.name = destination  # the ledger's destination name
        self._credentials_setting = credentials_setting  # named in a destination error's fix
        self._account = account
        self.batch_size = min(batch_size, MAX_EVENTS)
        self._timeout = timeout
        self._sleep = sleep  # tests skip the backoff waits
        self._ledger: Ledger | None = None
        self._pool = ThreadPoolExecutor(max_workers=concurrency) if concurrency > 1 else None
        self._pace = Pace(requests_per_minute)
        self._endpoint = endpoint
        self._ca_setting = ca_setting
        self._client = dm.IngestionServiceClient(
            transport=IngestionServiceGrpcTransport(
                host=grpc_target(endpoint),
                credentials=credentials,
                # Roots of our own: gRPC reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH once per
                # process, so only the channel's own credentials can honour the setting.
                ssl_channel_credentials=grpc.ssl_channel_credentials(
                    root_certificates=ca_bundle.read_bytes() if ca_bundle else None
                ),
            )
        )

    def bind(self, ledger: Ledger) -> None:
        """Store field warnings in `ledger` (a real run; a dry run or check binds none)."""
        if not ledger.readonly:
            self._ledger = ledger

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self._client.transport.close()  # type: ignore[no-untyped-call]

    def deliver(
        self,
        batch: Sequence[Delivery],
        build: Build,
        validate_only: bool,
        settle: Settle | None = None,
    ) -> list[Outcome]:
        """Send `batch` (already checked locally) in requests of at most `batch_size` events;
        each request's outcomes go to `settle` as soon as it returns."""
        size = self.batch_size
        chunks = [list(batch[i : i + size]) for i in range(0, len(batch), size)]
        outcomes: list[Outcome] = []
        try:
            for sent in self._sent(chunks, build, validate_only):
                if settle:
                    settle(sent)
                outcomes.extend(sent)
        except DestinationError as exc:
            if settle and exc.outcomes:
                settle(exc.outcomes)  # a split batch's halves that went before the refusal
            raise
        return outcomes

    def _sent(
        self, chunks: list[list[Delivery]], build: Build, validate_only: bool
    ) -> Iterator[list[Outcome]]:
        """Each request's outcomes, in this thread, as the requests return."""
        if self._pool is None or len(chunks) < 2:
            for chunk in chunks:
                yield self._send(chunk, build, validate_only)
            return
        sending = {self._pool.submit(self._send, c, build, validate_only) for c in chunks}
        refused: DestinationError | None = None
        while sending:
            done, sending = stopping.wait_for(sending, first=True)
            for future in done:
                try:
                    yield future.result()
                except DestinationError as exc:
                    # The requests already in the air are settled first: what they carried
                    # may have been ingested, and must not go back as untried.
                    refused = refused or exc
        if refused is not None:
            raise refused

    def deliver_checked(
        self,
        refused: list[Outcome],
        ready: Sequence[Delivery],
        build: Build,
        validate_only: bool,
        settle: Settle | None,
    ) -> list[Outcome]:
        """A destination's `deliver`: the outcomes of its own checks settled at once, then
        each request's as it returns."""
        if settle:
            settle(refused)
        return refused + self.deliver(ready, build, validate_only, settle)

    def payloads(self, batch: Sequence[Delivery], build: Build) -> list[dict[str, Any]]:
        """The requests a send would make, as JSON (validate_only set: nothing is ingested)."""
        size = self.batch_size
        return [
            json_format.MessageToDict(
                dm.IngestEventsRequest.pb(build(list(batch[i : i + size]), True))
            )
            for i in range(0, len(batch), size)
        ]

    def request_status(self, request_id: str) -> dm.RetrieveRequestStatusResponse:
        """Google's processing outcome for an accepted request (RetrieveRequestStatus).

        Not retried: waiting out an outage or a quota would hold up the run, and a
        request left unchecked is checked by the next one. Raises RetryableError for
        a transient failure, GoogleAPICallError for any other.
        """
        request = dm.RetrieveRequestStatusRequest(request_id=request_id)
        try:
            return self._call(self._client.retrieve_request_status, request)
        except DestinationError as exc:
            # Unchecked, said why; the run's uploads then stop the destination with it.
            raise RetryableError(str(exc)) from None

    def _send(self, batch: list[Delivery], build: Build, validate_only: bool) -> list[Outcome]:
        request = build(batch, validate_only)
        try:
            response = call_with_retries(
                lambda: self._call(self._client.ingest_events, request), sleep=self._sleep
            )
        except RetryableError as exc:
            return [Outcome(d.id, Status.PENDING, error=str(exc)) for d in batch]
        except gexc.GoogleAPICallError as exc:
            return self._refused(batch, build, validate_only, exc)
        request_id = response.request_id or None  # validate_only answers without one
        per_event, per_request = field_warnings(response, len(batch))
        if request_id and self._ledger is not None:
            self._ledger.warnings.save(self.name, request_id, per_request)
        return [
            Outcome(d.id, Status.DELIVERED, request_id=request_id, warnings=per_event.get(i, ()))
            for i, d in enumerate(batch)
        ]

    def _refused(
        self,
        batch: list[Delivery],
        build: Build,
        validate_only: bool,
        exc: gexc.GoogleAPICallError,
    ) -> list[Outcome]:
        if not _refuses_events(exc):
            # Auth, permission, the account or the request itself: no event's fault, and
            # nothing in this batch can go until it is fixed (splitting would burn rows).
            raise DestinationError(self._problem(exc), status=exc.code)
        if len(batch) == 1:
            return [self._verdict(batch[0], exc)]
        middle = len(batch) // 2
        first = self._send(batch[:middle], build, validate_only)
        try:
            return first + self._send(batch[middle:], build, validate_only)
        except DestinationError as exc:
            exc.outcomes = first + exc.outcomes  # the first half went: its fate stands
            raise

    def _verdict(self, d: Delivery, exc: gexc.GoogleAPICallError) -> Outcome:
        """One event Google refused: already there (delivered), or invalid (rejected, why)."""
        if _already_exists(exc):
            return Outcome(d.id, Status.DELIVERED)  # Google has it already: count it as delivered
        code = exc.reason or "INVALID_ARGUMENT"
        reason = f"{self.name}: {code}: {_violation(exc)}"[:200]
        return Outcome(d.id, Status.REJECTED, reason=reason)

    def _problem(self, exc: gexc.GoogleAPICallError) -> str:
        """What is wrong with the destination as a whole, and what to fix."""
        code = f"{exc.code} {exc.reason or ''}".strip()
        if isinstance(exc, gexc.Unauthenticated | gexc.Unauthorized):
            fix = (
                f"check {self._credentials_setting} (a service account or OAuth client with "
                f"the {SCOPE} scope)"
            )
        elif isinstance(exc, gexc.PermissionDenied | gexc.Forbidden):
            fix = (
                f"give the credentials access to {self._account}, enable the Data Manager API "
                "in their Cloud project, and accept the customer data terms"
            )
        else:
            fix = f"check the account settings ({self._account}) and the mapping's targets"
        return f"{self.name}: Data Manager refused the request ({code}: {_violation(exc)}): {fix}"

    def _call(self, method: Callable[..., T], request: Any) -> T:
        """One call without the GAPIC default retry: ours (call_with_retries) is the only one."""
        self._pace.wait()
        try:
            return method(request=request, retry=None, timeout=self._timeout)
        except GOOGLE_TRANSIENT as exc:
            if _untrusted(exc):
                raise DestinationError(self._untrusted_problem(), status=503) from None
            raise RetryableError(
                f"Data Manager transient failure: {type(exc).__name__}",
                retry_after=_retry_after(exc),
            ) from None

    def _untrusted_problem(self) -> str:
        return (
            f"{self.name}: the TLS handshake with the Data Manager endpoint "
            f"{grpc_target(self._endpoint)} failed (its certificate is not signed by a trusted "
            f"CA): set {self._ca_setting} to the PEM bundle of the CA that signs it (a proxy's "
            "or an emulator's), or leave it empty for Google's own endpoint"
        )


def field_warnings(
    response: dm.IngestEventsResponse, events: int
) -> tuple[dict[int, tuple[str, ...]], Counter[tuple[str, str]]]:
    """Google's field warnings: "REASON field" per event index, and (reason, field) counts.

    A warning naming no event (or one outside the request) is put on the first event,
    so that a summary counting per event still counts it once.
    """
    per_event: dict[int, tuple[str, ...]] = {}
    per_request: Counter[tuple[str, str]] = Counter()
    for warning in response.field_warnings:
        reason = str(getattr(warning.reason, "name", warning.reason)).removeprefix(_WARNING_PREFIX)
        match = _EVENT_PATH.match(warning.field)
        index = int(match.group(1)) if match else 0
        field = warning.field[match.end() :] if match else warning.field
        per_request[(reason, field)] += 1
        index = index if index < events else 0
        per_event[index] = (*per_event.get(index, ()), f"{reason} {field}".strip())
    return per_event, per_request


class ViaDataManager:
    """What a destination uploading through Data Manager shares with the others: it says
    only which deliveries are ready (`_ready`: its own checks' outcomes, and the rest) and
    how a batch of them becomes a request (`_request`)."""

    _api: DataManager

    def close(self) -> None:
        self._api.close()

    def check_requests(self, ledger: Ledger) -> dict[str, Any] | None:
        return request_status.check(ledger, self._api).as_dict()

    def request_status(self, request_id: str) -> dm.RetrieveRequestStatusResponse:
        return self._api.request_status(request_id)

    def deliver(
        self,
        batch: Sequence[Delivery],
        *,
        validate_only: bool = False,
        settle: Settle | None = None,
    ) -> list[Outcome]:
        refused, ready = self._ready(batch)
        return self._api.deliver_checked(refused, ready, self._request, validate_only, settle)

    def payloads(self, batch: Sequence[Delivery]) -> list[dict[str, Any]]:
        return self._api.payloads(self._ready(batch)[1], self._request)

    def _ready(self, batch: Sequence[Delivery]) -> tuple[list[Outcome], list[Delivery]]:
        raise NotImplementedError

    def _request(self, batch: list[Delivery], validate_only: bool) -> dm.IngestEventsRequest:
        raise NotImplementedError


class Pace:
    """At most `per_minute` calls started in any 60 seconds, across threads (None: no limit).

    A quota counts requests per minute, so a burst under it never waits: only the call
    that would be one too many in the last minute waits for the oldest to age out.
    """

    def __init__(self, per_minute: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._started: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> None:
        if not self._limit:
            return
        with self._lock:  # slots are taken in turn; a full window waits for its oldest call
            now = self._clock()
            while self._started and self._started[0] <= now - 60:
                self._started.popleft()
            start = now if len(self._started) < self._limit else self._started[0] + 60
            self._started.append(start)
            if len(self._started) > self._limit:
                self._started.popleft()
        if start > now:
            sleep(start - now)


def _already_exists(exc: gexc.GoogleAPICallError) -> bool:
    return isinstance(exc, gexc.AlreadyExists) or exc.reason == "ALREADY_EXISTS"


def _refuses_events(exc: gexc.GoogleAPICallError) -> bool:
    """An answer about the events themselves: split the batch to find which."""
    if _already_exists(exc):
        return True
    if not isinstance(exc, gexc.BadRequest):
        return False
    fields = [field for field, _ in _field_violations(exc)]
    return not fields or any(f.startswith("events[") for f in fields)


def _violation(exc: gexc.GoogleAPICallError) -> str:
    """The first field violation Google named ("field: description"), else its message."""
    violations = _field_violations(exc)
    if violations:
        field, description = violations[0]
        return f"{field}: {description}"
    # The REST client puts the method and URL in front: keep Google's words only.
    return _REQUEST_PREFIX.sub("", str(exc.message))


def _field_violations(exc: gexc.GoogleAPICallError) -> list[tuple[str, str]]:
    """(field, description) of every google.rpc.BadRequest violation in the error."""
    found = []
    for detail in exc.details or ():
        if isinstance(detail, error_details_pb2.BadRequest):  # gRPC: decoded messages
            found += [(v.field, v.description) for v in detail.field_violations]
        elif isinstance(detail, dict):  # REST: the JSON form
            found += [
                (str(v.get("field", "")), str(v.get("description", "")))
                for v in detail.get("fieldViolations", ())
            ]
    return found


def _retry_after(exc: Exception) -> float:
    """The server's delay hint in seconds: a RetryInfo detail (gRPC), a Retry-After (REST)."""
    for detail in getattr(exc, "details", None) or ():
        if isinstance(detail, error_details_pb2.RetryInfo):
            return float(detail.retry_delay.ToTimedelta().total_seconds())
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    try:
        return float(headers.get("Retry-After", 0) if isinstance(headers, Mapping) else 0)
    except ValueError:
        return 0.0  # an HTTP date: the backoff alone will do


def _untrusted(exc: Exception) -> bool:
    """gRPC's UNAVAILABLE for a server certificate no configured root vouches for: a
    configuration to fix, not an outage to wait out."""
    return isinstance(exc, gexc.ServiceUnavailable) and any(
        mark in str(exc.message) for mark in _UNTRUSTED
    )
