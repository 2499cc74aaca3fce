"""The records every layer passes on, in data-flow order: CRM change -> stage change ->
delivery -> outcome. Only the standard library here: every other module may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

GA4 = "ga4"
GOOGLE_ADS = "google_ads"
DESTINATIONS = (GA4, GOOGLE_ADS)
UNMAPPED = "unmapped"  # the stage of a CRM status the mapping does not list
# The reason a delivered row carries when it was sent again after a run stopped with it in
# flight: where the API has no dedup (GA4) it may be counted twice.
MAY_BE_DUPLICATED = "may_be_duplicated"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Status(StrEnum):
    """Where a delivery stands.

    pending -> in_flight (claimed by one worker, committed before anything is sent)
            -> delivered | rejected | skipped | pending again (transient) | dead
    dead: its attempts ran out; unknown: it may or may not have arrived (GA4 after a
    crash or a timeout, when resending is switched off). `connector retry` re-queues both.
    """

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    DEAD = "dead"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CrmChange:
    """One status change exactly as the CRM reports it (may hold PII: never stored as is)."""

    record_id: str
    lead_id: str
    old_status: str | None
    new_status: str
    changed_at: datetime
    lead_created_at: datetime | None
    lead: dict[str, Any]  # values by mapping role: "email", "gclid", ...
    opportunity_id: str | None = None
    restatement: bool = False  # a won deal's amount changed after it was won
    has_source_lead: bool = True
    deleted: bool = False  # the lead or opportunity is in the recycle bin
    record: tuple[str, str] | None = None  # (object, id) whose status this is


@dataclass(frozen=True)
class RecordState:
    """The last status (and won amount) the state store saw for one CRM record."""

    status: str
    amount: float | None = None


def conversion_id(lead_id: str, stage: str, opportunity_id: str | None) -> str:
    """The conversion a change is: deterministic, so a resend is a duplicate Google dedups.

    Per lead and stage, and per opportunity for opportunity stages: a lead whose
    contact wins a second deal has two won conversions, not one restated.
    """
    base = f"{lead_id}:{stage}"
    return f"{base}:{opportunity_id}" if opportunity_id else base


@dataclass(frozen=True)
class StageChange:
    """A normalised lead stage change, safe to store (no clear-text PII)."""

    lead_id: str
    crm_status: str
    stage: str
    changed_at: datetime
    source_record_id: str
    lead_created_at: datetime | None
    attributes: dict[str, Any]  # click ids, GA client id, hashed ids, consent, UTM fields
    problems: dict[str, str] = field(default_factory=dict)
    crm_record: tuple[str, str] | None = None  # (object, id) whose status this is
    opportunity_id: str | None = None  # set for opportunity stages
    restatement: bool = False  # a won deal's new amount: an adjustment of its conversion
    retracts: str | None = None  # the conversion id a reopened or lost won deal takes back

    @property
    def conversion_id(self) -> str:
        return conversion_id(self.lead_id, self.stage, self.opportunity_id)

    @property
    def transaction_id(self) -> str:
        """The conversion this change sends or adjusts (a retraction: the one it takes back)."""
        return self.retracts or self.conversion_id

    @property
    def retraction(self) -> bool:
        return self.retracts is not None

    @property
    def is_deal(self) -> bool:
        """A change of an opportunity's conversion: it may adjust an earlier one."""
        return bool(self.opportunity_id or self.retracts or self.restatement)


@dataclass(frozen=True)
class Target:
    """Where one stage change goes and what it says there."""

    destination: str
    name: str  # GA4 event name, or Google Ads conversion action id (or name)
    value: float | None
    currency: str | None
    skip_reason: str | None = None
    # Deliveries sent in one request share it (GA4: the client id): claimed side by side.
    group: str = ""


@dataclass(frozen=True)
class Mapped:
    """A stage change and its targets, as the mapping decided them."""

    change: StageChange
    targets: list[Target]


@dataclass(frozen=True)
class Delivery:
    """A delivery row joined with its stage change: what a destination needs to send it."""

    id: int
    destination: str
    target: str
    value: float | None
    currency: str | None
    attempts: int
    change: StageChange
    # How often Google was told to retract this conversion before (delivered retractions):
    # a conversion retracted on the legacy path is dead, so a deal won again needs a new id.
    retracted_before: int = 0
    # The worker that had it in flight when it stopped (crashed, killed), if one did: what
    # arrived is unknown, so a resend may duplicate it where the API has no dedup (GA4).
    in_flight_of: str | None = None
    # Its place in the queue: Target.group, then the change time (`ledger.changes.claim_key`).
    claim_key: str = ""


@dataclass
class Outcome:
    """What happened to one delivery in an upload attempt."""

    delivery_id: int
    status: Status
    reason: str | None = None
    error: str | None = None
    request_id: str | None = None
    not_before: datetime | None = None  # pending, but not to be retried before this time
    # The request may have been written although no answer came (a timeout after sending).
    maybe_sent: bool = False
    warnings: tuple[str, ...] = ()  # "REASON field" Google warned of for this event (delivered)
