"""GA4 lead events: the rules every event meets before it goes, on either upload path.

The Measurement Protocol drops a bad event silently (API-NOTES §3), and Data
Manager does not document the 72-hour backdating limit (§0): so both paths
check names, parameters, PII and the time window here, the same way, and
build the same event: name, client id, parameters, time, consent, and (only
when the mapping asks for it) the lead id as user id and hashed user data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connector.core import Delivery, Outcome, Status
from connector.destinations.client_id import INVALID_GA_CLIENT_ID, ga_client_id
from connector.destinations.google_ads.eligibility import consent_flags, hashed_identifiers

MAX_PARAMS = 25
MAX_NAME = 40
MAX_VALUE = 100
BACKDATE_LIMIT = timedelta(hours=72)
# Leave a margin so a change just inside 72 h is not clamped by the time it arrives.
BACKDATE_SAFE = BACKDATE_LIMIT - timedelta(minutes=10)
FUTURE_LIMIT = timedelta(minutes=5)
TOO_OLD = "too_old_for_ga4"

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
        # Policy: no PII in GA4. Refuse rather than trust the mapping. (No "@", no address:
        # the search would backtrack over every start of the value to find that out.)
        if ("@" in value and _EMAIL_LIKE.search(value)) or _PHONE_LIKE.match(value):
            return f"pii_in_param: {key}"
    return None


@dataclass(frozen=True)
class GA4Extras:
    """What GA4 gets besides the event, as the mapping's `ga4:` says: nothing by default."""

    user_data: bool = False  # hashed email / phone, for leads with ad_user_data consent only
    lead_id_as_user_id: bool = False


@dataclass(frozen=True)
class GA4Event:
    """One delivery as a GA4 event, checked."""

    delivery: Delivery
    client_id: str
    params: dict[str, Any]
    at: datetime | None  # None: too old, sent with the current time (ga4_too_old: send_now)
    user_id: str | None = None
    user_data: dict[str, str] = field(default_factory=dict)  # "email"/"phone" -> SHA-256 hex

    @property
    def name(self) -> str:
        return self.delivery.target

    @property
    def consent(self) -> dict[str, bool]:
        return consent_flags(self.delivery.change.attributes)


def prepare(
    batch: Sequence[Delivery], now: datetime, *, too_old: str, extras: GA4Extras
) -> tuple[list[Outcome], list[GA4Event]]:
    """Outcomes for the deliveries that cannot go, and the events for the rest."""
    outcomes: list[Outcome] = []
    events: list[GA4Event] = []
    for delivery in batch:
        event, reason, status = _event(delivery, now, too_old, extras)
        if event is None:
            outcomes.append(Outcome(delivery.id, status, reason=reason))
        else:
            events.append(event)
    return outcomes, events


def _event(
    d: Delivery, now: datetime, too_old: str, extras: GA4Extras
) -> tuple[GA4Event | None, str | None, Status]:
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
    at: datetime | None = change.changed_at
    if is_too_old(change.changed_at, now):
        if too_old == "skip":
            return None, TOO_OLD, Status.SKIPPED
        params["original_time"] = change.changed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        at = None
    elif now - change.changed_at < -FUTURE_LIMIT:
        return None, "timestamp_in_future", Status.REJECTED
    if problem := event_problem(d.target, params):
        return None, problem, Status.REJECTED
    user_id = change.lead_id if extras.lead_id_as_user_id else None
    event = GA4Event(d, client_id, params, at, user_id, _user_data(d, extras))
    return event, None, Status.PENDING


def is_too_old(changed_at: datetime, now: datetime) -> bool:
    """Whether GA4 would no longer take an event of this time with its own timestamp."""
    return now - changed_at > BACKDATE_SAFE


def _user_data(d: Delivery, extras: GA4Extras) -> dict[str, str]:
    """Hashed email / phone, only if the mapping asks and ad_user_data consent is granted."""
    attrs = d.change.attributes
    if not extras.user_data or attrs.get("consent_ad_user_data") is not True:
        return {}
    return hashed_identifiers(attrs)  # digests only: the ledger holds no clear text


def _params(d: Delivery) -> dict[str, Any]:
    attrs = d.change.attributes
    params: dict[str, Any] = {"lead_id": d.change.lead_id, "lead_status": d.change.crm_status}
    if d.value is not None and d.currency:
        params["value"] = d.value
        params["currency"] = d.currency
    if attrs.get("lead_source"):
        params["lead_source"] = attrs["lead_source"]
    return params
