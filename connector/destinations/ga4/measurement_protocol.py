"""GA4 Measurement Protocol: lead-stage events, batched per client, checked before sending.

`/mp/collect` answers 2xx even for a payload it drops (API-NOTES §3), so a
2xx proves nothing: every event is validated first against the documented
rules (`events`), and a dry run asks `/debug/mp/collect` as well. GA4 has no
event dedup, so the ledger is the only guard against a double send. A wrong
api_secret is only noticed by `connector reconcile`: the Data Manager path
(`datamanager`) validates and authenticates for real.
"""

from __future__ import annotations

import queue
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import groupby
from typing import Any

import httpx
import orjson

from connector import stopping
from connector.core import GA4, Delivery, Outcome, Status, utcnow
from connector.destinations.base import Capabilities, Plan, Settle
from connector.destinations.ga4.events import GA4Event, GA4Extras, prepare
from connector.http import ssl_context
from connector.ledger import Ledger
from connector.retry import RetryableError, call_with_retries
from connector.settings import GA4Settings

MAX_EVENTS_PER_REQUEST = 25
MAX_BODY_BYTES = 130_000
# Requests that return within this window of the first (or the first this many) settle in
# one transaction: one commit per request cost more CPU than the requests themselves. A
# crash in the window leaves their rows in flight, which the crash policy already covers
# (resent and said "may be duplicated", or `unknown_after_crash`), as for a crash mid-request.
SETTLE_WINDOW_SECONDS = 0.2
SETTLE_REQUESTS = 40
# Transport failures before the request was fully sent: GA4 cannot have counted it.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteTimeout,
    httpx.WriteError,
)


class _MaybeSent(Exception):
    """No answer came after the request was sent (a read timeout, a reset): it may count."""


class GA4Destination:
    """GA4 lead events through the Measurement Protocol."""

    name = GA4
    # Deliveries per call: the thread pool sends them per client, 25 events a request.
    capabilities = Capabilities(batch_size=2000)

    def __init__(
        self, settings: GA4Settings, *, too_old: str = "skip", extras: GA4Extras | None = None
    ) -> None:
        self._settings = settings
        self._too_old = too_old  # the mapping's ga4_too_old: skip, or send_now
        self._extras = extras or GA4Extras()
        # The transport itself, not an httpx.Client over it: a post through the client's
        # auth, redirect and cookie layers cost a sixth more CPU, for none of them.
        self._transport = httpx.HTTPTransport(
            verify=ssl_context(settings.ca_bundle),
            limits=httpx.Limits(max_connections=settings.max_concurrency),
        )
        self._timeout = {"timeout": httpx.Timeout(settings.timeout_seconds).as_dict()}
        # One pool for the whole queue, as many threads as connections.
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrency)
        # Each path's URL with its query built once: merging and encoding them on every post
        # was a fifth of a post's CPU. The api_secret is in it: never logged or raised.
        secret = settings.api_secret
        query = {
            "measurement_id": settings.measurement_id,
            "api_secret": secret.get_secret_value() if secret else "",
        }
        self._urls = {
            path: httpx.URL(settings.mp_base_url.rstrip("/") + path, params=query)
            for path in ("/mp/collect", "/debug/mp/collect")
        }

    def close(self) -> None:
        self._pool.shutdown()
        self._transport.close()

    def plan(self, ledger: Ledger, wave: Sequence[Delivery]) -> Plan:
        return Plan(list(wave), [])  # GA4 has no adjustments: every event stands alone

    def check_requests(self, ledger: Ledger) -> dict[str, Any] | None:
        return None  # /mp/collect gives no later verdict (connector reconcile does)

    def deliver(
        self,
        batch: Sequence[Delivery],
        *,
        validate_only: bool = False,
        settle: Settle | None = None,
    ) -> list[Outcome]:
        send = self._validate if validate_only else self._send
        # Each request's future is queued as it finishes: taking one costs the same however
        # many are in the air (concurrent.futures.wait walks all of them, per call).
        finished: Finished = queue.SimpleQueue()
        outcomes: list[Outcome] = []
        left = 0
        for refused, requests in self._requests(batch):
            outcomes.extend(refused)
            for request in requests:
                self._pool.submit(send, request).add_done_callback(finished.put)
            left += len(requests)
        if settle:
            settle(list(outcomes))
        while left:  # settled in this thread: what returned in one window, in one transaction
            done = _returned(finished, left)
            left -= len(done)
            returned: list[Outcome] = []
            failed: BaseException | None = None
            for future in done:
                if (error := future.exception()) is not None:
                    failed = failed or error
                else:
                    returned.extend(future.result())
            if settle:
                settle(returned)  # what did return is kept even when another request failed
            outcomes.extend(returned)
            if failed is not None:
                raise failed
        return outcomes

    def payloads(self, batch: Sequence[Delivery]) -> list[dict[str, Any]]:
        """The request bodies a send would post (no secret: api_secret rides in the URL)."""
        return [_body(request) for _, requests in self._requests(batch) for request in requests]

    def _requests(
        self, batch: Sequence[Delivery]
    ) -> Iterator[tuple[list[Outcome], list[list[GA4Event]]]]:
        """Client by client: the rows that cannot go (with why), and the requests of the rest.

        A client's rows come next to each other (claims walk `claim_key`, which starts with
        the client id): its requests can go as soon as its own rows are checked, while the
        page's later clients are, instead of the pool waiting for the whole page.
        """
        now = utcnow()
        for _, rows in groupby(batch, key=_client_of):
            refused, events = prepare(list(rows), now, too_old=self._too_old, extras=self._extras)
            yield refused, _group(events)

    # sending --------------------------------------------------------------------

    def _send(self, request: list[GA4Event]) -> list[Outcome]:
        if stopping.requested():
            return []  # told to stop: not sent, no outcome; the caller puts these back
        body = orjson.dumps(_body(request))
        if len(body) >= MAX_BODY_BYTES:
            return [
                Outcome(e.delivery.id, Status.REJECTED, reason="body_too_large") for e in request
            ]
        try:
            response = call_with_retries(lambda: self._post("/mp/collect", body))
        except RetryableError as exc:
            return [Outcome(e.delivery.id, Status.PENDING, error=str(exc)) for e in request]
        except _MaybeSent as exc:
            # GA4 may have counted these already and has no dedup: never retried blindly.
            return [
                Outcome(e.delivery.id, Status.PENDING, error=str(exc), maybe_sent=True)
                for e in request
            ]
        if response.is_success:
            return [Outcome(e.delivery.id, Status.DELIVERED) for e in request]
        # Not retried: a 4xx from /mp/collect means the request itself is wrong.
        reason = f"http_{response.status_code}"
        return [Outcome(e.delivery.id, Status.REJECTED, reason=reason) for e in request]

    def _validate(self, request: list[GA4Event]) -> list[Outcome]:
        body = orjson.dumps(_body(request))
        try:
            response = call_with_retries(lambda: self._post("/debug/mp/collect", body))
        except RetryableError as exc:
            return [Outcome(e.delivery.id, Status.PENDING, error=str(exc)) for e in request]
        messages = response.json().get("validationMessages", []) if response.content else []
        by_index = _messages_by_event(messages)
        outcomes = []
        for i, e in enumerate(request):
            problem = by_index.get(i) or by_index.get(-1)
            outcomes.append(
                Outcome(
                    e.delivery.id, Status.REJECTED if problem else Status.DELIVERED, reason=problem
                )
            )
        return outcomes

    def _post(self, path: str, body: bytes) -> httpx.Response:
        try:
            request = httpx.Request(
                "POST", self._urls[path], content=body, headers=_JSON_BODY, extensions=self._timeout
            )
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except _NOT_SENT as exc:
            # The URL holds the api_secret: name the failure, never the request.
            raise RetryableError(f"GA4 transport error: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise _MaybeSent(
                f"GA4 gave no answer after the request was sent ({type(exc).__name__}): "
                "it may have been counted"
            ) from None
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("Retry-After", "0")
            raise RetryableError(
                f"GA4 answered {response.status_code}",
                status=response.status_code,
                retry_after=float(retry_after) if retry_after.isdigit() else 0.0,
            )
        return response


_JSON_BODY = httpx.Headers({"Content-Type": "application/json"})
Finished = queue.SimpleQueue[Future[list[Outcome]]]


def _returned(finished: Finished, left: int) -> list[Future[list[Outcome]]]:
    """The next request to return and those that return within SETTLE_WINDOW_SECONDS of it:
    at most SETTLE_REQUESTS, and never more than the `left` still to come."""
    done = [finished.get()]
    deadline = time.monotonic() + SETTLE_WINDOW_SECONDS
    while len(done) < min(left, SETTLE_REQUESTS):
        try:
            done.append(finished.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    return done


def _client_of(delivery: Delivery) -> object:
    return delivery.change.attributes.get("ga_client_id")


def _group(events: list[GA4Event]) -> list[list[GA4Event]]:
    """Requests: a client's events together, in time order, at most 25 per request."""
    # A request is one user: client id, and user id / user data when they are sent. Its
    # consent is one too (request level in MP): two leads of one browser, or one lead whose
    # consent changed, never go under the other's.
    by_client: dict[tuple[str, str | None, bytes, bytes], list[GA4Event]] = defaultdict(list)
    for event in events:
        key = (
            event.client_id,
            event.user_id,
            orjson.dumps(event.user_data, option=orjson.OPT_SORT_KEYS),
            orjson.dumps(event.consent, option=orjson.OPT_SORT_KEYS),
        )
        by_client[key].append(event)
    requests = []
    for client_events in by_client.values():
        client_events.sort(key=lambda e: e.delivery.change.changed_at)
        for start in range(0, len(client_events), MAX_EVENTS_PER_REQUEST):
            requests.append(client_events[start : start + MAX_EVENTS_PER_REQUEST])
    return requests


def _event_body(event: GA4Event) -> dict[str, Any]:
    body: dict[str, Any] = {"name": event.name, "params": event.params}
    if event.at is not None:  # else GA4 takes the time it receives the event
        body["timestamp_micros"] = int(event.at.timestamp() * 1_000_000)
    return body


def _body(request: list[GA4Event]) -> dict[str, Any]:
    events = [_event_body(e) for e in request]
    body: dict[str, Any] = {"client_id": request[0].client_id, "events": events}
    if request[0].user_id:
        body["user_id"] = request[0].user_id
    if user_data := request[0].user_data:
        body["user_data"] = {
            f"sha256_{'email_address' if kind == 'email' else 'phone_number'}": [digest]
            for kind, digest in user_data.items()
        }
    # Every event of a request has the same consent (`_group`).
    if consent := {k: "GRANTED" if v else "DENIED" for k, v in request[0].consent.items()}:
        body["consent"] = consent
    return body


def _messages_by_event(messages: list[dict[str, Any]]) -> dict[int, str]:
    """Map debug validation messages to event indexes (-1: the whole request)."""
    found: dict[int, str] = {}
    for message in messages:
        path = str(message.get("fieldPath", ""))
        match = re.match(r"events\[(\d+)\]", path)
        index = int(match.group(1)) if match else -1
        found.setdefault(index, f"ga4_{message.get('validationCode')}: {path}")
    return found
