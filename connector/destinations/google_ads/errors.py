"""Google's error classes for conversion uploads, and what each one means for a row.

One table for both upload paths (API-NOTES §1): the legacy path reports these
codes per row (partial failures), Data Manager reports them later as counts per
conversion action (request status). What a code means:

    done        Google has it already (a resend of the same order / transaction id)
    not found   the click is unknown to Google: the lead did not come from an ad click
    wait        too recent to import: pending, not retried for 6 hours
    next run    a transient or in-request conflict: pending, the next run resends it
    rejected    anything else: rejected for good, with Google's code

Two codes are about the Cloud project of the credentials, not about a row
(API-NOTES §0): nothing reaches this destination until they are fixed, so
`destination_error` turns them into a DestinationError that says what to do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from connector.core import Outcome, Status
from connector.errors import DestinationError

CLICK_NOT_FOUND = "click_not_found"  # the reason recorded for a click Google cannot find
TOO_RECENT_WAIT = timedelta(hours=6)  # Google's own advice for the TOO_RECENT_* errors
# Google Ads API error codes that mean "try the same call again shortly".
TRANSIENT_CODES = frozenset(
    {"TRANSIENT_ERROR", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "RESOURCE_TEMPORARILY_EXHAUSTED"}
)


# What to do about a code that stops the whole destination (API-NOTES §0).
_DESTINATION_FIXES = {
    "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE": (
        "this Cloud project may not import offline click conversions through the Google Ads "
        "API (only allowlisted Cloud projects may): set CONNECTOR_GOOGLE_ADS__UPLOAD_API="
        "datamanager to upload through the Data Manager API"
    ),
    "CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION": (
        "the Cloud project of these credentials has Test access only (test accounts): apply for "
        "Explorer or Basic access for it in the Google Ads API Center, or use the credentials of "
        "an approved project"
    ),
}


def destination_error(codes: set[str]) -> DestinationError | None:
    """The destination-wide error among Google's `codes`, with its fix; None for row errors."""
    for code in sorted(codes & _DESTINATION_FIXES.keys()):
        return DestinationError(f"Google Ads {code}: {_DESTINATION_FIXES[code]}", code=code)
    return None


class Consequence(Enum):
    DONE = "done"
    NOT_FOUND = "not found"
    WAIT = "wait"
    NEXT_RUN = "next run"
    REJECTED = "rejected"


_CONSEQUENCES: dict[str, Consequence] = {
    **dict.fromkeys(
        (
            "CLICK_CONVERSION_ALREADY_EXISTS",
            "ORDER_ID_ALREADY_IN_USE",
            "RESTATEMENT_ALREADY_EXISTS",
            # Nothing is left to adjust: a retraction (or a late restatement) has no more to do.
            "CONVERSION_ALREADY_RETRACTED",
            "DUPLICATE_TRANSACTION_ID",
            "DUPLICATE_GCLID",
        ),
        Consequence.DONE,
    ),
    **dict.fromkeys(("CLICK_NOT_FOUND", "INVALID_CLICK"), Consequence.NOT_FOUND),
    **dict.fromkeys(
        (
            "TOO_RECENT_EVENT",
            "TOO_RECENT_CONVERSION_ACTION",
            "TOO_RECENT_CONVERSION",
            "TOO_RECENT_CLICK",
        ),
        Consequence.WAIT,
    ),
    **dict.fromkeys(
        (
            # Two rows with one order id in a request: the next run's resend settles it.
            "DUPLICATE_ORDER_ID",
            "DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
            "DUPLICATE_ADJUSTMENT_IN_REQUEST",
            "INTERNAL_ERROR",
            *TRANSIENT_CODES,
        ),
        Consequence.NEXT_RUN,
    ),
}


def consequence(code: str) -> Consequence:
    return _CONSEQUENCES.get(code, Consequence.REJECTED)


def outcome(
    delivery_id: int,
    code: str,
    *,
    now: datetime,
    error: str,
    rejected_as: str,
    request_id: str | None = None,
) -> Outcome:
    """The outcome of a row Google answered with `code`; `error` is Google's own text."""
    match consequence(code):
        case Consequence.DONE:
            return Outcome(delivery_id, Status.DELIVERED, request_id=request_id)
        case Consequence.NOT_FOUND:
            return Outcome(delivery_id, Status.REJECTED, reason=CLICK_NOT_FOUND, error=error)
        case Consequence.WAIT:
            return Outcome(
                delivery_id, Status.PENDING, error=error, not_before=now + TOO_RECENT_WAIT
            )
        case Consequence.NEXT_RUN:
            return Outcome(delivery_id, Status.PENDING, error=error)
    return Outcome(delivery_id, Status.REJECTED, reason=rejected_as, error=error)
