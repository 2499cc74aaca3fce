"""Whether a stage change may go to Google Ads: written once, for both upload paths.

Two kinds of rule: what the change carries (an identifier Google can match, consent),
decided when the change is recorded; and what depends on the time it is sent
(lookback window, clock skew) or on the kind of row, checked right before sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connector.core import Delivery, StageChange

LOOKBACK = timedelta(days=90)  # the conversion action's default click-through window
CLICK_KINDS = ("gclid", "gbraid", "wbraid")


def blocked(change: StageChange) -> str | None:
    """Why this change can never go to Google Ads (recorded as its skip reason), or None."""
    attrs = change.attributes
    if attrs.get("consent_ad_user_data") is False:
        return "no_consent"
    if click_id(attrs) or hashed_identifiers(attrs):
        return None
    bad_click = next((change.problems[k] for k in CLICK_KINDS if k in change.problems), None)
    return bad_click or "no_identifier"


def send_problem(d: Delivery, now: datetime) -> str | None:
    """Why Google would reject this row if sent now (checked before anything is sent)."""
    change = d.change
    if change.retraction:
        return None  # takes back what Google has: its own time and value do not matter
    if change.restatement:
        if d.value is None:
            return "missing_amount"
        return None if d.currency else "value_without_currency"
    if change.changed_at > now + timedelta(minutes=5):
        return "timestamp_in_future"
    if change.lead_created_at and change.changed_at < change.lead_created_at:
        return "conversion_precedes_lead"
    if now - change.changed_at > LOOKBACK:
        return "expired_event"
    if d.value is not None and not d.currency:
        return "value_without_currency"
    return None


def click_id(attrs: Mapping[str, Any]) -> tuple[str, str] | None:
    """The one click id to send, as (kind, value); gclid wins: it has the most attribution."""
    for kind in CLICK_KINDS:
        if attrs.get(kind):
            return kind, str(attrs[kind])
    return None


def hashed_identifiers(attrs: Mapping[str, Any]) -> dict[str, str]:
    """SHA-256 hex digests by kind ("email", "phone"): the ledger holds no clear text."""
    return {k: attrs[f"{k}_sha256"] for k in ("email", "phone") if attrs.get(f"{k}_sha256")}


def consent_flags(attrs: Mapping[str, Any]) -> dict[str, bool]:
    """Consent recorded in the CRM ("ad_user_data", "ad_personalization"); unknown is left out."""
    return {
        key: bool(attrs[f"consent_{key}"])
        for key in ("ad_user_data", "ad_personalization")
        if attrs.get(f"consent_{key}") is not None
    }
