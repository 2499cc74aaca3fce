"""GA4 Measurement Protocol: lead-stage events, batched per client, checked before sending.

`/mp/collect` answers 2xx even for a payload it drops (API-NOTES §3), so a
2xx proves nothing: every event is validated here against the documented
rules first, and a dry run asks `/debug/mp/collect` as well. GA4 has no event
dedup, so the ledger is the only guard against a double send.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from connector.core import GA4, Delivery, Outcome, Status, utcnow
from connector.destinations.base import Capabilities, Plan
from connector.destinations.client_id import INVALID_GA_CLIENT_ID, ga_client_id
from connector.http import ssl_context
from connector.ledger import Ledger
from connector.retry import RetryableError, call_with_retries
from connector.settings import GA4Settings

MAX_EVENTS_PER_REQUEST = 25
MAX_PARAMS = 25
MAX_NAME = 40
MAX_VALUE = 100
MAX_BODY_BYTES = 130_000
BACKDATE_LIMIT = timedelta(hours=72)
# Leave a margin so a change just inside 72 h is not clamped by the time it arrives.
BACKDATE_SAFE = BACKDATE_LIMIT - timedelta(minutes=10)
FUTURE_LIMIT = timedelta(minutes=5)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
_RESERVED_EVENTS = frozenset(
    [
        "ad_activeview",
        "ad_click",
        "ad_exposure",
        "ad_impression",
        "ad_query",
        "ad_reward",
        "adunit_exposure",
        "app_background",
        "app_clear_data",
        "app_exception",
        "app_remove",
        "app_store_refund",
        "app_store_subscription_cancel",
        "app_store_subscription_convert",
        "app_store_subscription_renew",
        "app_update",
        "app_upgrade",
        "dynamic_link_app_open",
        "dynamic_link_app_update",
        "dynamic_link_first_open",
        "error",
        "first_open",
        "first_visit",
        "in_app_purchase",
        "notification_dismiss",
        "notification_foreground",
        "notification_open",
        "notification_receive",
        "os_update",
        "page_view",
        "screen_view",
        "session_start",
        "user_engagement",
    ]
)
_EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_PHONE_LIKE = re.compile(r"^\+?[\d\s().\-/]{7,}$")


@dataclass(frozen=True)
class _Event:
    delivery: Delivery
    client_id: str
    body: dict[str, Any]  # {"name", "params", "timestamp_micros"?}


def event_problem(name: str, params: dict[str, Any]) -> str | None:
    """Why GA4 would drop or mangle this event (API-NOTES §3), or None."""
    if not _NAME.match(name) or len(name) > MAX_NAME:
        return f"invalid_event_name: {name[:50]}"
    if name.startswith(_RESERVED_PREFIXES) or name in _RESERVED_EVENTS:
        return f"reserved_event_name: {name}"
    if len(params) > MAX_PARAMS:
        return f"too_many_params: {len(params)} > {MAX_PARAMS}"
    for key, value in params.items():
        if problem := _param_problem(key, value):
            return problem
    if "value" in params and "currency" not in params:
        return "value_without_currency"
    return None


def _param_problem(key: str, value: Any) -> str | None:
    if not _NAME.match(key) or len(key) > MAX_NAME:
        return f"invalid_param_name: {key[:50]}"
    if key.startswith(_RESERVED_PREFIXES):
        return f"reserved_param_name: {key}"
    if isinstance(value, str):
        if len(value) > MAX_VALUE:
            return f"param_value_too_long: {key}"
        # Policy: no PII in GA4. Refuse rather than trust the mapping.
        if _EMAIL_LIKE.search(value) or _PHONE_LIKE.match(value):
            return f"pii_in_param: {key}"
    return None


class GA4Destination:
    """GA4 lead events through the Measurement Protocol."""

    name = GA4
    # Deliveries per call: the thread pool sends them per client, 25 events a request.
    capabilities = Capabilities(batch_size=2000)

    def __init__(self, settings: GA4Settings, *, too_old: str = "skip") -> None:
        self._settings = settings
        self._too_old = too_old  # the mapping's ga4_too_old: skip, or send_now
        self._client = httpx.Client(
            base_url=settings.mp_base_url,
            verify=ssl_context(settings.ca_bundle),
            timeout=settings.timeout_seconds,
            limits=httpx.Limits(max_connections=settings.max_concurrency),
        )

    def close(self) -> None:
        self._client.close()

    def plan(self, ledger: Ledger, wave: Sequence[Delivery]) -> Plan:
        return Plan(list(wave), [])  # GA4 has no adjustments: every event stands alone

    def check_requests(self, ledger: Ledger) -> dict[str, Any] | None:
        return None  # /mp/collect gives no later verdict (connector reconcile does)

    def deliver(self, batch: Sequence[Delivery], *, validate_only: bool = False) -> list[Outcome]:
        outcomes, events = self._prepare(batch)
        requests = _group(events)
        with ThreadPoolExecutor(max_workers=self._settings.max_concurrency) as pool:
            send = self._validate if validate_only else self._send
            for result in pool.map(send, requests):
                outcomes.extend(result)
        return outcomes

    def payloads(self, batch: Sequence[Delivery]) -> list[dict[str, Any]]:
        """The request bodies a send would post (no secret: api_secret rides in the URL)."""
        _, events = self._prepare(batch)
        return [_body(request) for request in _group(events)]

    # building -------------------------------------------------------------------

    def _prepare(self, batch: Sequence[Delivery]) -> tuple[list[Outcome], list[_Event]]:
        outcomes: list[Outcome] = []
        events: list[_Event] = []
        now = utcnow()
        for delivery in batch:
            event, reason, status = self._event(delivery, now)
            if event is None:
                outcomes.append(Outcome(delivery.id, status, reason=reason))
            else:
                events.append(event)
        return outcomes, events

    def _event(self, d: Delivery, now: datetime) -> tuple[_Event | None, str | None, Status]:
        change = d.change
        if change.restatement:
            # Recorded by an older connector: GA4 has no adjustments, the win counted once.
            return None, "stage_already_reached", Status.SKIPPED
        raw_client = change.attributes.get("ga_client_id")
        if not raw_client:
            return None, "no_ga_client_id", Status.SKIPPED
        # Rows recorded by an older connector may hold the cookie form, or no client id.
        client_id = ga_client_id(str(raw_client))
        if client_id is None:
            return None, INVALID_GA_CLIENT_ID, Status.SKIPPED
        params = _params(d)
        body: dict[str, Any] = {"name": d.target, "params": params}
        age = now - change.changed_at
        if age > BACKDATE_SAFE:
            if self._too_old == "skip":
                return None, "too_old_for_ga4", Status.SKIPPED
            params["original_time"] = change.changed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif age < -FUTURE_LIMIT:
            return None, "timestamp_in_future", Status.REJECTED
        else:
            body["timestamp_micros"] = int(change.changed_at.timestamp() * 1_000_000)
        if problem := event_problem(d.target, params):
            return None, problem, Status.REJECTED
        return _Event(d, client_id, body), None, Status.PENDING

    # sending --------------------------------------------------------------------

    def _send(self, request: list[_Event]) -> list[Outcome]:
        body = json.dumps(_body(request)).encode()
        if len(body) >= MAX_BODY_BYTES:
            return [
                Outcome(e.delivery.id, Status.REJECTED, reason="body_too_large") for e in request
            ]
        try:
            response = call_with_retries(lambda: self._post("/mp/collect", body))
        except RetryableError as exc:
            return [Outcome(e.delivery.id, Status.PENDING, error=str(exc)) for e in request]
        if response.is_success:
            return [Outcome(e.delivery.id, Status.DELIVERED) for e in request]
        # Not retried: a 4xx from /mp/collect means the request itself is wrong.
        reason = f"http_{response.status_code}"
        return [Outcome(e.delivery.id, Status.REJECTED, reason=reason) for e in request]

    def _validate(self, request: list[_Event]) -> list[Outcome]:
        body = json.dumps(_body(request)).encode()
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
        secret = self._settings.api_secret
        query = {
            "measurement_id": self._settings.measurement_id,
            "api_secret": secret.get_secret_value() if secret else "",
        }
        try:
            response = self._client.post(
                path, params=query, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:
            # The URL holds the api_secret: name the failure, never the request.
            raise RetryableError(f"GA4 transport error: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = response.headers.get("Retry-After", "0")
            raise RetryableError(
                f"GA4 answered {response.status_code}",
                status=response.status_code,
                retry_after=float(retry_after) if retry_after.isdigit() else 0.0,
            )
        return response


def _params(d: Delivery) -> dict[str, Any]:
    attrs = d.change.attributes
    params: dict[str, Any] = {"lead_id": d.change.lead_id, "lead_status": d.change.crm_status}
    if d.value is not None and d.currency:
        params["value"] = d.value
        params["currency"] = d.currency
    if attrs.get("lead_source"):
        params["lead_source"] = attrs["lead_source"]
    return params


def _group(events: list[_Event]) -> list[list[_Event]]:
    """Requests: a client's events together, in time order, at most 25 per request."""
    by_client: dict[str, list[_Event]] = defaultdict(list)
    for event in events:
        by_client[event.client_id].append(event)
    requests = []
    for client_events in by_client.values():
        client_events.sort(key=lambda e: e.delivery.change.changed_at)
        for start in range(0, len(client_events), MAX_EVENTS_PER_REQUEST):
            requests.append(client_events[start : start + MAX_EVENTS_PER_REQUEST])
    return requests


def _body(request: list[_Event]) -> dict[str, Any]:
    first = request[0].delivery.change.attributes
    body: dict[str, Any] = {"client_id": request[0].client_id, "events": [e.body for e in request]}
    consent = {
        key: "GRANTED" if first.get(f"consent_{key}") else "DENIED"
        for key in ("ad_user_data", "ad_personalization")
        if first.get(f"consent_{key}") is not None
    }
    if consent:
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
