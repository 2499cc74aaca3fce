"""Google's error classes for conversion uploads, and what each one means for a row.

One table for both upload paths (API-NOTES §1): the legacy path reports these
codes per row (partial failures), Data Manager reports them later as counts per
conversion action (request status). What a code means:

    done        Google has it already (a resend of the same order / transaction id)
    not found   the click is unknown to Google: the lead did not come from an ad click
    wait        too recent to import: pending, not retried for 6 hours
    next run    a transient or in-request conflict: pending, the next run resends it
    rejected    anything else: rejected for good, with Google's code
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from connector.core import Outcome, Status

CLICK_NOT_FOUND = "click_not_found"  # the reason recorded for a click Google cannot find
TOO_RECENT_WAIT = timedelta(hours=6)  # Google's own advice for the TOO_RECENT_* errors
# Google Ads API error codes that mean "try the same call again shortly".
TRANSIENT_CODES = frozenset(
    {"TRANSIENT_ERROR", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "RESOURCE_TEMPORARILY_EXHAUSTED"}
)


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
