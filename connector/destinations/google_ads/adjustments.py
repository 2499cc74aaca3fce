"""Restatements and retractions: which conversion each adjusts, and whether it may go yet.

Shared by both upload paths: an adjustment goes only once the conversion it
adjusts was delivered; it waits while that conversion is still pending, and is
skipped (`nothing_to_retract` / `nothing_to_restate`) when none ever will be. A
restatement of the value the conversion already carries (it was sent after the amount
changed) is skipped as `value_unchanged`.
A conversion retracted on the legacy path cannot be restored, so a deal won
again after N delivered retractions is a new conversion there (`retracted_before`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from connector.core import GOOGLE_ADS, Delivery, Outcome, Status, utcnow
from connector.destinations.base import Plan
from connector.destinations.google_ads.eligibility import send_problem
from connector.ledger import Ledger, SentBefore

CONVERSION, RESTATEMENT, RETRACTION = "conversion", "RESTATEMENT", "RETRACTION"
NOTHING_TO_RETRACT, NOTHING_TO_RESTATE = "nothing_to_retract", "nothing_to_restate"
VALUE_UNCHANGED = "value_unchanged"


@dataclass(frozen=True)
class ConversionHistory:
    """The ledger's view of one conversion, as of a delivery's change time."""

    # The conversion's own delivery status, for an adjustment of it: DELIVERED if one
    # went, PENDING if one still may, None if none ever will.
    adjusted: Status | None
    retractions: int  # delivered retractions of it: each win after one is a new life
    value: float | None = None  # the value Google holds for it (None: unknown, or taken back)
    # The CRM time of the last delivered row of it (the conversion or an adjustment): a
    # legacy adjustment must be later than the conversion and the adjustment before it.
    last_at: datetime | None = None


def kind_of(d: Delivery) -> str:
    if d.change.retraction:
        return RETRACTION
    return RESTATEMENT if d.change.restatement else CONVERSION


def conversion_history(ledger: Ledger, batch: Sequence[Delivery]) -> dict[int, ConversionHistory]:
    """What the ledger knows of the conversion each delivery is, or adjusts."""
    earlier = ledger.queue.sent_before({d.change.lead_id for d in batch})
    return {d.id: _history(d, earlier[d.change.lead_id]) for d in batch}


def plan(ledger: Ledger, wave: Sequence[Delivery]) -> Plan:
    """The wave less the adjustments Google could not apply yet (or ever: skipped), each
    conversion with how often it was retracted before (a new life each)."""
    return planned(ledger, wave)[0]


def planned(ledger: Ledger, wave: Sequence[Delivery]) -> tuple[Plan, dict[int, ConversionHistory]]:
    """`plan`, with what the ledger knows of each deal's conversion (one read per wave).

    Rows Google would reject if sent now (`send_problem`) are rejected here, before the
    rest is cut into requests: taken out of a request later, they would leave it short."""
    now = utcnow()
    settled = [
        Outcome(d.id, Status.REJECTED, reason=problem)
        for d in wave
        if (problem := send_problem(d, now))
    ]
    rejected = {o.delivery_id for o in settled}
    deals = [
        d for d in wave if d.destination == GOOGLE_ADS and d.change.is_deal and d.id not in rejected
    ]
    history = conversion_history(ledger, deals)
    adjustments = [d for d in deals if kind_of(d) != CONVERSION]
    settled += [
        Outcome(d.id, Status.SKIPPED, reason=reason)
        for d in adjustments
        if (reason := _needless(d, history[d.id]))
    ]
    skipped = {o.delivery_id for o in settled}
    held = skipped | {d.id for d in adjustments if history[d.id].adjusted != Status.DELIVERED}
    ready = [
        replace(d, retracted_before=history[d.id].retractions) if d.id in history else d
        for d in wave
        if d.id not in held
    ]
    return Plan(ready, settled), history


def _needless(d: Delivery, history: ConversionHistory) -> str | None:
    """Why an adjustment need never go: nothing to adjust, or nothing would change."""
    if history.adjusted is None:
        return NOTHING_TO_RETRACT if d.change.retraction else NOTHING_TO_RESTATE
    unchanged = history.adjusted == Status.DELIVERED and d.value is not None
    unchanged = unchanged and history.value == d.value
    return VALUE_UNCHANGED if kind_of(d) == RESTATEMENT and unchanged else None


def _history(d: Delivery, rows: Sequence[SentBefore]) -> ConversionHistory:
    """Among a lead's earlier deliveries to the same target: the conversion `d` is (or
    adjusts) and the retractions of it that went."""
    conversion = d.change.transaction_id
    earlier = [
        row
        for row in rows
        if row.id != d.id
        and (row.destination, row.target) == (d.destination, d.target)
        and row.changed_at < d.change.changed_at
    ]
    statuses = {row.status for row in earlier if row.conversion_id == conversion}
    retractions = sum(
        1 for row in earlier if row.status == Status.DELIVERED and row.retracts == conversion
    )
    adjusted = next((s for s in (Status.DELIVERED, Status.PENDING) if s in statuses), None)
    value, last_at = _held_by_google(earlier, conversion)
    return ConversionHistory(adjusted, retractions, value, last_at)


def _held_by_google(
    earlier: Sequence[SentBefore], conversion: str
) -> tuple[float | None, datetime | None]:
    """The value Google holds for the conversion (the newest delivered row's; none after a
    retraction), and the CRM time of that row."""
    delivered = sorted(
        (
            (row.changed_at, row.retracts is not None, row.value)
            for row in earlier
            if row.status == Status.DELIVERED and conversion in (row.conversion_id, row.retracts)
        ),
        key=lambda row: row[:2],
    )
    if not delivered:
        return None, None
    at, retracted, value = delivered[-1]
    return (None if retracted else value), at
