"""The ledger: what was pulled, where each change went, and where to resume.

Exactly-once rests on two rules kept here: a stage change is stored once
(unique lead + stage + time, so an overlapping pull is harmless), and the
cursor moves in the same transaction as the changes it covers, so a crash
never leaves it ahead of what was recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from connector.errors import ConfigError
from connector.ledger.schema import (
    SCHEMA_VERSION,
    cursors,
    deliveries,
    lead_channels,
    metadata,
    record_states,
    runs,
    schema_version,
    stage_changes,
    upload_requests,
)
from connector.mapping.translate import Mapped, StageChange, conversion_id
from connector.source.salesforce import RecordState

PENDING, DELIVERED, SKIPPED, REJECTED = "pending", "delivered", "skipped", "rejected"
PROCESSING = "PROCESSING"  # an upload request Google has not finished (Data Manager's name)


def utcnow() -> datetime:
    return datetime.now(UTC)


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


@dataclass
class Outcome:
    """What happened to one delivery in an upload attempt."""

    delivery_id: int
    status: str
    reason: str | None = None
    error: str | None = None
    request_id: str | None = None
    not_before: datetime | None = None  # pending, but not to be retried before this time


@dataclass(frozen=True)
class ConversionHistory:
    """The ledger's view of one conversion, as of a delivery's change time."""

    # The conversion's own delivery status, for an adjustment of it: DELIVERED if one
    # went, PENDING if one still may, None if none ever will.
    adjusted: str | None
    retractions: int  # delivered retractions of it: each win after one is a new life


@dataclass(frozen=True)
class LeadChannel:
    """The session channel of a lead's own generate_lead hit, as GA4 reported it."""

    lead_id: str
    channel_group: str
    source: str
    medium: str
    campaign: str
    looked_up_at: datetime


class Ledger:
    def __init__(self, engine: Engine, *, readonly: bool = False) -> None:
        self.engine = engine
        self.readonly = readonly

    @classmethod
    def open(cls, url: str, *, readonly: bool = False) -> Ledger:
        """Open (and, unless read-only, create or migrate) the store at `url`."""
        engine = _engine(url, readonly)
        ledger = cls(engine, readonly=readonly)
        if not readonly:
            ledger.migrate()
        return ledger

    def migrate(self) -> None:
        with self.engine.begin() as conn:
            metadata.create_all(conn)
            version = conn.execute(select(schema_version.c.version)).scalar()
            if version is None:
                conn.execute(insert(schema_version).values(version=SCHEMA_VERSION))
            elif version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the state store has schema version {version}, newer than this connector "
                    f"({SCHEMA_VERSION}): upgrade the connector"
                )
            elif version < SCHEMA_VERSION:
                _upgrade(conn, version)

    # cursors ------------------------------------------------------------------

    def cursor(self, stream: str) -> datetime | None:
        if not self._exists():
            return None
        with self.engine.connect() as conn:
            value: datetime | None = conn.execute(
                select(cursors.c.value).where(cursors.c.stream == stream)
            ).scalar()
            return value

    # runs -----------------------------------------------------------------------

    def start_run(self) -> int:
        with self.engine.begin() as conn:
            row = conn.execute(
                insert(runs).values(started_at=utcnow(), status="running").returning(runs.c.id)
            )
            return int(row.scalar_one())

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(finished_at=utcnow(), status=status, summary=summary)
            )

    # changes --------------------------------------------------------------------

    def record(
        self, run_id: int, batch: Sequence[Mapped], stream: str, cursor_value: datetime
    ) -> list[Mapped]:
        """Store new changes with their delivery rows and move the cursor, atomically.

        Returns the changes that were new (the rest were already recorded).
        """
        now = utcnow()
        new = []
        with self.engine.begin() as conn:
            for mapped in batch:
                change_id = self._insert_change(conn, run_id, mapped, now)
                if change_id is None:
                    continue
                new.append(mapped)
                rows = [_delivery_row(change_id, t, now) for t in mapped.targets]
                if rows:
                    conn.execute(insert(deliveries), rows)
            _remember_states(conn, [m.change for m in new])
            self._set_cursor(conn, stream, cursor_value, now)
        return new

    def last_states(self, sobject: str, record_ids: list[str]) -> dict[str, RecordState]:
        """The last status seen per CRM record (snapshot mode diffs against it)."""
        if not record_ids or not self._exists():
            return {}
        found: dict[str, RecordState] = {}
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(record_states.name):
                return {}  # a read-only look at a store from before this table
            for start in range(0, len(record_ids), 500):
                query = select(record_states).where(
                    record_states.c.object == sobject,
                    record_states.c.record_id.in_(record_ids[start : start + 500]),
                )
                found.update(
                    (r.record_id, RecordState(r.status, r.amount)) for r in conn.execute(query)
                )
        return found

    def known(self, keys: Iterable[tuple[str, str, datetime]]) -> set[tuple[str, str, datetime]]:
        """Which (lead id, stage, time) keys are already recorded (for dry runs)."""
        wanted = set(keys)
        if not wanted or not self._exists():
            return set()
        lead_ids = sorted({k[0] for k in wanted})
        found: set[tuple[str, str, datetime]] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(lead_ids), 500):
                query = select(
                    stage_changes.c.lead_id, stage_changes.c.stage, stage_changes.c.changed_at
                ).where(stage_changes.c.lead_id.in_(lead_ids[start : start + 500]))
                found.update((r[0], r[1], r[2]) for r in conn.execute(query))
        return found & wanted

    # deliveries -----------------------------------------------------------------

    def pending(self, destination: str) -> list[Delivery]:
        query = (
            select(deliveries, stage_changes)
            .join(stage_changes, deliveries.c.change_id == stage_changes.c.id)
            .where(
                deliveries.c.destination == destination,
                deliveries.c.status == PENDING,
                or_(deliveries.c.not_before.is_(None), deliveries.c.not_before <= utcnow()),
            )
            .order_by(stage_changes.c.changed_at, deliveries.c.id)
        )
        with self.engine.connect() as conn:
            return [_delivery(row._mapping) for row in conn.execute(query)]

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        """Record the fate of each delivery of one upload attempt."""
        if not outcomes:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            for o in outcomes:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == o.delivery_id)
                    .values(
                        status=o.status,
                        reason=o.reason,
                        last_error=o.error,
                        external_request_id=o.request_id,
                        not_before=o.not_before,
                        attempts=deliveries.c.attempts + 1,
                        updated_at=now,
                    )
                )

    def counts(self) -> dict[str, dict[str, int]]:
        """Delivery rows by destination and status."""
        if not self._exists():
            return {}
        query = select(deliveries.c.destination, deliveries.c.status, func.count()).group_by(
            deliveries.c.destination, deliveries.c.status
        )
        result: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for destination, status, count in conn.execute(query):
                result.setdefault(destination, {})[status] = int(count)
        return result

    # lead channels --------------------------------------------------------------

    def save_channels(self, found: Iterable[LeadChannel]) -> int:
        """Store or refresh each lead's GA4 channel; returns the rows written."""
        rows = [vars(channel) for channel in found]
        with self.engine.begin() as conn:
            # Delete + insert: one portable upsert for SQLite and PostgreSQL.
            for start in range(0, len(rows), 500):
                chunk = rows[start : start + 500]
                ids = [row["lead_id"] for row in chunk]
                conn.execute(delete(lead_channels).where(lead_channels.c.lead_id.in_(ids)))
                conn.execute(insert(lead_channels), chunk)
        return len(rows)

    def channels(self, lead_ids: Iterable[str] | None = None) -> dict[str, LeadChannel]:
        """Stored channels by lead id: all of them, or those of `lead_ids`."""
        if not self._exists():
            return {}
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(lead_channels.name):
                return {}  # a read-only look at a store from before this table
            if lead_ids is None:
                rows = list(conn.execute(select(lead_channels)))
            else:
                ids = sorted(set(lead_ids))
                rows = [
                    row
                    for start in range(0, len(ids), 500)
                    for row in conn.execute(
                        select(lead_channels).where(
                            lead_channels.c.lead_id.in_(ids[start : start + 500])
                        )
                    )
                ]
        return {row.lead_id: LeadChannel(**row._mapping) for row in rows}

    # upload requests ------------------------------------------------------------

    def save_requests(
        self, destination: str, events: Mapping[str, int], sent_at: datetime | None = None
    ) -> None:
        """Store requests Google accepted (request id -> events in it) as PROCESSING."""
        if not events:
            return
        sent_at = sent_at or utcnow()
        rows = [
            {"request_id": request_id, "destination": destination, "sent_at": sent_at}
            | {"events": count, "status": PROCESSING}
            for request_id, count in events.items()
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(upload_requests), rows)

    def processing_requests(self, destination: str, limit: int) -> list[str]:
        """Ids of requests Google has not finished processing, oldest first."""
        r = upload_requests.c
        query = (
            select(r.request_id)
            .where(r.destination == destination, r.status == PROCESSING)
            .order_by(r.sent_at, r.request_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [str(request_id) for request_id in conn.execute(query).scalars()]

    def update_request(
        self,
        request_id: str,
        status: str,
        *,
        processed: int | None = None,
        matched: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record what a status check found (PROCESSING again: only the check time)."""
        values: dict[str, Any] = {"status": status, "checked_at": utcnow()}
        if status != PROCESSING:
            values.update(processed=processed, matched=matched, detail=detail)
        with self.engine.begin() as conn:
            conn.execute(
                update(upload_requests)
                .where(upload_requests.c.request_id == request_id)
                .values(**values)
            )

    def requests(self, destination: str) -> list[dict[str, Any]]:
        """Every stored request of a destination with its status and counts, oldest first."""
        query = (
            select(upload_requests)
            .where(upload_requests.c.destination == destination)
            .order_by(upload_requests.c.sent_at, upload_requests.c.request_id)
        )
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def request_deliveries(self, request_id: str) -> dict[str, list[int]]:
        """Ids of the deliveries a request carried, by target (conversion action)."""
        d = deliveries.c
        query = select(d.target, d.id).where(d.external_request_id == request_id).order_by(d.id)
        found: dict[str, list[int]] = {}
        with self.engine.connect() as conn:
            for target, delivery_id in conn.execute(query):
                found.setdefault(target, []).append(int(delivery_id))
        return found

    def conversion_history(self, batch: Sequence[Delivery]) -> dict[int, ConversionHistory]:
        """What the ledger knows of the conversion each delivery is, or adjusts."""
        earlier = self._deliveries_of_leads({d.change.lead_id for d in batch})
        return {d.id: _history(d, earlier[d.change.lead_id]) for d in batch}

    def adjusted_status(self, batch: Sequence[Delivery]) -> dict[int, str | None]:
        """For each adjustment in `batch`, the status of the conversion it adjusts."""
        return {i: h.adjusted for i, h in self.conversion_history(batch).items()}

    def retracted_before(self, batch: Sequence[Delivery]) -> dict[int, int]:
        """For each delivery, how many retractions of its conversion were delivered earlier."""
        return {i: h.retractions for i, h in self.conversion_history(batch).items()}

    def _deliveries_of_leads(self, leads: set[str]) -> dict[str, list[Any]]:
        """Every delivery row of these leads, by lead, with its change's stage, time, attributes."""
        d, sc = deliveries.c, stage_changes.c
        columns = (d.id, d.status, d.destination, d.target, sc.lead_id, sc.stage, sc.changed_at)
        lead_ids = sorted(leads)
        found: dict[str, list[Any]] = {lead: [] for lead in lead_ids}
        with self.engine.connect() as conn:
            for start in range(0, len(lead_ids), 500):
                query = (
                    select(*columns, sc.attributes)
                    .join_from(deliveries, stage_changes, d.change_id == sc.id)
                    .where(sc.lead_id.in_(lead_ids[start : start + 500]))
                )
                for row in conn.execute(query):
                    found[row.lead_id].append(row)
        return found

    # internals ------------------------------------------------------------------

    def _exists(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(schema_version.c.version)).scalar()
        except OperationalError:
            return False  # a read-only look at a store that was never written
        return True

    def _insert_change(
        self, conn: Connection, run_id: int, mapped: Mapped, now: datetime
    ) -> int | None:
        change = mapped.change
        values = {
            "lead_id": change.lead_id,
            "stage": change.stage,
            "changed_at": change.changed_at,
            "crm_status": change.crm_status,
            "source_record_id": change.source_record_id,
            "lead_created_at": change.lead_created_at,
            "attributes": change.attributes,
            "problems": change.problems,
            "run_id": run_id,
            "recorded_at": now,
        }
        stmt = _insert_ignoring_duplicates(conn, values).returning(stage_changes.c.id)
        found = conn.execute(stmt).scalar()
        return int(found) if found is not None else None

    def _set_cursor(self, conn: Connection, stream: str, value: datetime, now: datetime) -> None:
        current = conn.execute(select(cursors.c.value).where(cursors.c.stream == stream)).scalar()
        if current is None:
            conn.execute(insert(cursors).values(stream=stream, value=value, updated_at=now))
        elif value > current:  # never move a bookmark backwards
            conn.execute(
                update(cursors)
                .where(cursors.c.stream == stream)
                .values(value=value, updated_at=now)
            )


def _remember_states(conn: Connection, changes: Sequence[StageChange]) -> None:
    """Keep each record's newest status (and won amount) in `record_states`.

    One lookup per 500 records and one batched insert and update per chunk of changes:
    a backfill records hundreds of thousands of them.
    """
    newest: dict[tuple[str, str], StageChange] = {}
    for change in changes:
        key = change.crm_record
        if key and (key not in newest or change.changed_at >= newest[key].changed_at):
            newest[key] = change
    seen = _seen_at(conn, list(newest))
    fresh, known = [], []
    for (sobject, record_id), change in newest.items():
        values = {
            "status": change.crm_status,
            "amount": change.attributes.get("amount"),
            "seen_at": change.changed_at,
        }
        if (sobject, record_id) not in seen:
            fresh.append({"object": sobject, "record_id": record_id, **values})
        elif change.changed_at >= seen[(sobject, record_id)]:
            known.append({"o": sobject, "r": record_id, **values})
    if fresh:
        conn.execute(insert(record_states), fresh)
    if known:
        c = record_states.c
        stmt = (
            update(record_states)
            .where(c.object == bindparam("o"), c.record_id == bindparam("r"))
            .values({name: bindparam(name) for name in ("status", "amount", "seen_at")})
        )
        conn.execute(stmt, known)


def _seen_at(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    c = record_states.c
    found: dict[tuple[str, str], datetime] = {}
    for sobject in {k[0] for k in keys}:
        ids = [k[1] for k in keys if k[0] == sobject]
        for start in range(0, len(ids), 500):
            query = select(c.record_id, c.seen_at).where(
                c.object == sobject, c.record_id.in_(ids[start : start + 500])
            )
            found.update(((sobject, r.record_id), r.seen_at) for r in conn.execute(query))
    return found


def _history(d: Delivery, rows: Sequence[Any]) -> ConversionHistory:
    """Among a lead's earlier deliveries to the same target: the conversion `d` is (or adjusts)
    and the retractions of it that went."""
    conversion = d.change.transaction_id
    earlier = [
        row
        for row in rows
        if row.id != d.id
        and (row.destination, row.target) == (d.destination, d.target)
        and row.changed_at < d.change.changed_at
    ]
    statuses = {
        row.status
        for row in earlier
        if conversion_id(row.lead_id, row.stage, row.attributes) == conversion
    }
    retractions = sum(
        1
        for row in earlier
        if row.status == DELIVERED and (row.attributes or {}).get("retracts") == conversion
    )
    adjusted = next((s for s in (DELIVERED, PENDING) if s in statuses), None)
    return ConversionHistory(adjusted, retractions)


def _upgrade(conn: Connection, version: int) -> None:
    """Bring an older store up to SCHEMA_VERSION (new tables came with create_all)."""
    if version < 2 and "not_before" not in {
        c["name"] for c in inspect(conn).get_columns(deliveries.name)
    }:
        conn.execute(text("ALTER TABLE deliveries ADD COLUMN not_before TIMESTAMP"))
    for index in deliveries.indexes:  # create_all leaves an existing table's indexes alone
        index.create(conn, checkfirst=True)
    conn.execute(update(schema_version).values(version=SCHEMA_VERSION))


def _insert_ignoring_duplicates(conn: Connection, values: dict[str, Any]) -> Any:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(stage_changes).values(values).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(stage_changes).values(values).on_conflict_do_nothing()
    raise ConfigError(f"state store dialect {dialect!r} is not supported: use SQLite or PostgreSQL")


def _delivery_row(change_id: int, target: Any, now: datetime) -> dict[str, Any]:
    return {
        "change_id": change_id,
        "destination": target.destination,
        "target": target.name,
        "value": target.value,
        "currency": target.currency,
        "status": SKIPPED if target.skip_reason else PENDING,
        "reason": target.skip_reason,
        "attempts": 0,
        "updated_at": now,
    }


def _delivery(row: Any) -> Delivery:
    change = StageChange(
        lead_id=row["lead_id"],
        crm_status=row["crm_status"],
        stage=row["stage"],
        changed_at=row["changed_at"],
        source_record_id=row["source_record_id"],
        lead_created_at=row["lead_created_at"],
        attributes=row["attributes"],
        problems=row["problems"],
    )
    return Delivery(
        id=row["id"],
        destination=row["destination"],
        target=row["target"],
        value=row["value"],
        currency=row["currency"],
        attempts=row["attempts"],
        change=change,
    )


def _engine(url: str, readonly: bool) -> Engine:
    if url.startswith("sqlite:///"):
        return _sqlite_engine(Path(url.removeprefix("sqlite:///")), readonly)
    try:
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # bad URL or missing driver: say which setting to fix
        raise ConfigError(
            f"CONNECTOR_STATE_URL is not usable ({type(exc).__name__}): expected "
            "sqlite:///path/to.db or postgresql+psycopg://user@host/db"
        ) from None


def _sqlite_engine(path: Path, readonly: bool) -> Engine:
    if readonly:
        # mode=ro: a dry run must leave the file byte-for-byte as it was (or absent).
        engine = create_engine("sqlite://", creator=lambda: _sqlite_ro_connect(path))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        if not readonly:
            dbapi_conn.execute("PRAGMA busy_timeout=30000")

    return engine


def _sqlite_ro_connect(path: Path) -> Any:
    import sqlite3

    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
