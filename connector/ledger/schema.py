"""The state store's tables (SQLAlchemy Core; SQLite by default, PostgreSQL-compatible).

SCHEMA_VERSION goes up with every change to these tables; `migrations.migrate`
refuses a store written by a newer connector instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.types import TypeDecorator

# 2: deliveries.not_before, upload_requests, record_states
# 3: stage_changes.opportunity_id / restatement / retracts (were keys of attributes)
# 4: deliveries.claimed_by / lease_until (claims), statuses in_flight, dead, unknown
# 5: deliveries.claim_key (claims walk the queue in index order, a GA4 client's events together)
# 6: stage_changes.changed_at indexed (an overlapping read finds what it recorded already)
# 7: ix_deliveries_status dropped (ix_deliveries_claim begins with its columns)
# 8: a change is unique per deal too (uq_stage_change_deal): two deals of one lead won in one
#    second are two changes
# 9: deliveries.claim_key compared byte by byte on PostgreSQL too (COLLATE "C")
SCHEMA_VERSION = 9


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use UTC-aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None

    # On SQLite, the two steps (these methods, then DateTime's own text conversion) as one
    # function each: a first sync binds and reads hundreds of thousands of datetimes. The text
    # is DateTime's own ("2026-11-20 14:03:11.000000"); a test holds them equal.
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_text
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite":
            return _sqlite_datetime
        return super().result_processor(dialect, coltype)


# datetime.replace(tzinfo=...) costs more than the rest of either step: the UTC offset is
# cut from the text written, and added to the text read.
def _sqlite_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the ledger; use UTC-aware datetimes")
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]  # less "+00:00"


def _sqlite_datetime(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value + "+00:00")
    except ValueError:  # a text that has an offset already (never written by this type)
        return datetime.fromisoformat(value).replace(tzinfo=UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

# One bookmark per stream (e.g. "salesforce.LeadHistory"): the CreatedDate of the
# last change safely recorded. It moves in the same transaction as those changes.
cursors = Table(
    "cursors",
    metadata,
    Column("stream", String(100), primary_key=True),
    Column("value", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("status", String(20), nullable=False),  # running, ok, partial, failed
    Column("summary", JSON),
)

stage_changes = Table(
    "stage_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", String(40), nullable=False),
    Column("stage", String(20), nullable=False),  # funnel stage, or "unmapped"
    Column("changed_at", UTCDateTime, nullable=False),
    Column("crm_status", String(255), nullable=False),
    Column("source_record_id", String(40), nullable=False),
    Column("lead_created_at", UTCDateTime),
    # click ids, GA client id, SHA-256 of email / phone, consent, UTM: never clear-text PII
    Column("attributes", JSON, nullable=False),
    Column("problems", JSON, nullable=False),
    Column("opportunity_id", String(40)),  # opportunity stages: one conversion per deal
    Column("restatement", Boolean, nullable=False, default=False),  # a won deal's new amount
    Column("retracts", String(200)),  # the conversion id a reopened or lost won deal takes back
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_stage_changes_changed_at", "changed_at"),
)
# What makes a change unique: lead, stage, time, and the deal (none for a lead's own stage).
# An expression: a plain unique key would take every lead change's NULL deal as distinct.
Index(
    "uq_stage_change_deal",
    stage_changes.c.lead_id,
    stage_changes.c.stage,
    stage_changes.c.changed_at,
    func.coalesce(stage_changes.c.opportunity_id, ""),
    unique=True,
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("change_id", Integer, ForeignKey("stage_changes.id"), nullable=False),
    Column("destination", String(20), nullable=False),  # ga4, google_ads
    Column("target", String(100), nullable=False),  # event name / conversion action id
    Column("value", Float),
    Column("currency", String(3)),
    # core.Status: pending -> in_flight -> delivered | skipped | rejected | dead | unknown
    Column("status", String(20), nullable=False),
    Column("reason", String(200)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("external_request_id", String(100)),
    # Not retried before this time (Google's TOO_RECENT_*: the click is too fresh to import).
    Column("not_before", UTCDateTime),
    # In flight: which worker claimed it, and until when its claim holds (then it may go again).
    Column("claimed_by", String(100)),
    Column("lease_until", UTCDateTime),
    # Claimed in this order (`changes.claim_key`: group, then change time): one request's
    # rows (GA4: a client's events) come in one page, not split over requests.
    # Byte order on both backends (SQLite's own; "C" on PostgreSQL, whatever the database's
    # locale): a claim merges its two ranges in Python, which must agree with the keyset.
    Column(
        "claim_key",
        String(200).with_variant(String(200, collation="C"), "postgresql"),
        nullable=False,
        default="",
        server_default="",
    ),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("change_id", "destination", name="uq_delivery"),
    # A claim page is an index range: what it costs does not grow with the queue. Its first
    # columns also serve every count and filter by destination and status: an index of those
    # alone would be one more to write with every row inserted, claimed and settled.
    Index("ix_deliveries_claim", "destination", "status", "claim_key", "id"),
    # A finished upload request settles its deliveries by request id.
    Index("ix_deliveries_request", "external_request_id"),
)

# Each lead's acquisition channel as GA4 saw it: the session of the website's own
# generate_lead hit, found by the lead id custom dimension (`connector channels`).
lead_channels = Table(
    "lead_channels",
    metadata,
    Column("lead_id", String(40), primary_key=True),
    Column("channel_group", String(100), nullable=False),
    Column("source", String(255), nullable=False),
    Column("medium", String(255), nullable=False),
    Column("campaign", String(255), nullable=False),
    Column("looked_up_at", UTCDateTime, nullable=False),
)

# One row per upload request Google acknowledged (Data Manager `request_id`): its
# processing status and record / match counts, filled in by a later run's poll.
upload_requests = Table(
    "upload_requests",
    metadata,
    Column("request_id", String(100), primary_key=True),
    Column("destination", String(20), nullable=False),
    Column("sent_at", UTCDateTime, nullable=False),
    Column("events", Integer, nullable=False),
    Column("status", String(30), nullable=False),  # PROCESSING, SUCCESS, PARTIAL_SUCCESS, FAILED
    Column("processed", Integer),
    Column("matched", Integer),
    Column("detail", JSON),
    Column("checked_at", UTCDateTime),
    Index("ix_upload_requests_status", "destination", "status"),
)

# The last status the connector saw for each CRM record, whichever way it was read:
# snapshot mode compares a record's current status with this to find a change.
record_states = Table(
    "record_states",
    metadata,
    Column("object", String(40), primary_key=True),  # Lead, Opportunity
    Column("record_id", String(40), primary_key=True),
    Column("status", String(255), nullable=False),
    Column("amount", Float),  # a won deal's value: a change of it is a restatement
    Column("seen_at", UTCDateTime, nullable=False),
)
