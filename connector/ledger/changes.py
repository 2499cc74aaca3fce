"""Stage changes, stored once each (unique lead + stage + time + deal), with their delivery
rows.

An overlapping pull is therefore harmless, and the stream's bookmark moves in
the same transaction as the changes it covers: a crash never leaves it ahead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, RowMapping, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from connector.core import Mapped, StageChange, Status, Target, conversion_id, utcnow
from connector.errors import ConfigError
from connector.ledger import cursors, driver, states
from connector.ledger.database import Database, chunked
from connector.ledger.schema import deliveries, stage_changes

Key = tuple[str, str, datetime, str]  # (lead, stage, time, deal or ""): a change's identity


class Reached(NamedTuple):
    """A recorded change as a milestone: the conversion it reached, when, and the one it
    took back (a retraction)."""

    conversion_id: str
    changed_at: datetime
    retracts: str | None


class Changes:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self, run_id: int, batch: Sequence[Mapped], stream: str, cursor_value: datetime
    ) -> list[Mapped]:
        """Store new changes with their delivery rows and move the cursor, atomically.

        Returns the changes that were new (the rest were already recorded).
        """
        now = utcnow()
        with self._db.engine.begin() as conn:
            inserted = _insert_changes(conn, run_id, batch, now)
            new = [mapped for mapped, _ in inserted]
            _insert_deliveries(conn, inserted, now)
            states.remember(conn, [m.change for m in new])
            cursors.move(conn, stream, cursor_value, now)
        return new

    def known(self, keys: Iterable[Key]) -> set[Key]:
        """Which (lead, stage, time, deal) keys are already recorded (for dry runs)."""
        wanted = set(keys)
        if not wanted or not self._db.exists():
            return set()
        sc = stage_changes.c
        found: set[Key] = set()
        with self._db.engine.connect() as conn:
            for chunk in chunked(sorted({k[0] for k in wanted})):
                columns = (sc.lead_id, sc.stage, sc.changed_at, sc.opportunity_id)
                query = select(*columns).where(sc.lead_id.in_(chunk))
                found.update((r[0], r[1], r[2], r[3] or "") for r in conn.execute(query))
        return found & wanted

    def recorded_since(self, since: datetime) -> set[str]:
        """The source record ids of the changes recorded at or after `since`: the rows an
        overlapping read meets again (a range of the changed_at index, whatever the size)."""
        if not self._db.exists():
            return set()  # a dry run on a store never written
        sc = stage_changes.c
        query = select(sc.source_record_id).where(sc.changed_at >= since)
        with self._db.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def reached(self, lead_ids: Iterable[str]) -> list[Reached]:
        """What these leads' recorded changes reached (restatements reach nothing new)."""
        ids = sorted(set(lead_ids))
        if not ids or not self._db.exists():
            return []  # a dry run on a store never written
        sc = stage_changes.c
        columns = (sc.lead_id, sc.stage, sc.opportunity_id, sc.changed_at, sc.retracts)
        found: list[Reached] = []
        with self._db.engine.connect() as conn:
            for chunk in chunked(ids):
                query = select(*columns).where(sc.lead_id.in_(chunk), sc.restatement.is_(False))
                for r in conn.execute(query):
                    reached = conversion_id(r.lead_id, r.stage, r.opportunity_id)
                    found.append(Reached(reached, r.changed_at, r.retracts))
        return found


# The stage_changes columns a StageChange is made of, in the order `change_of` reads them.
CHANGE_COLUMNS = tuple(
    stage_changes.c[name]
    for name in (
        "lead_id", "crm_status", "stage", "changed_at", "source_record_id", "lead_created_at",
        "attributes", "problems", "opportunity_id", "restatement", "retracts",
    )
)  # fmt: skip


def change_of(values: Sequence[Any]) -> StageChange:
    """A stage change from the values of CHANGE_COLUMNS, in order (a claim reads thousands:
    by position, without a row mapping's lookups by name)."""
    (lead, crm_status, stage, at, record, created, attributes, problems, deal, restated, back) = (
        values
    )
    return StageChange(
        lead_id=lead,
        crm_status=crm_status,
        stage=stage,
        changed_at=at,
        source_record_id=record,
        lead_created_at=created,
        attributes=attributes,
        problems=problems,
        opportunity_id=deal,
        restatement=bool(restated),
        retracts=back,
    )


def stage_change(row: Mapping[str, Any] | RowMapping) -> StageChange:
    """A stage change from a row holding the stage_changes columns."""
    return StageChange(
        lead_id=row["lead_id"],
        crm_status=row["crm_status"],
        stage=row["stage"],
        changed_at=row["changed_at"],
        source_record_id=row["source_record_id"],
        lead_created_at=row["lead_created_at"],
        attributes=row["attributes"],
        problems=row["problems"],
        opportunity_id=row["opportunity_id"],
        restatement=bool(row["restatement"]),
        retracts=row["retracts"],
    )


def change_key(change: StageChange) -> Key:
    return (change.lead_id, change.stage, change.changed_at, change.opportunity_id or "")


# The columns a new change is written with, in the order `_change_values` gives them.
_CHANGE_WRITE = (
    "lead_id", "stage", "changed_at", "crm_status", "source_record_id", "lead_created_at",
    "attributes", "problems", "opportunity_id", "restatement", "retracts", "run_id",
    "recorded_at",
)  # fmt: skip
_DELIVERY_WRITE = (
    "change_id", "destination", "target", "value", "currency", "status", "reason", "attempts",
    "claim_key", "updated_at",
)  # fmt: skip


def _insert_changes(
    conn: Connection, run_id: int, batch: Sequence[Mapped], now: datetime
) -> list[tuple[Mapped, int]]:
    """Insert the batch's changes, duplicates ignored: the new ones with their ids.

    Multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING statements through the driver
    (`ledger.driver`). A duplicate returns no row, so the new rows are matched to their
    changes by the returned key (as the driver holds it), never by position.
    """
    first: dict[Key, Mapped] = {}
    for mapped in batch:  # a change read twice in one batch (the overlap) is stored once
        first.setdefault(change_key(mapped.change), mapped)
    if not first:
        return []
    sc, dialect = stage_changes.c, conn.dialect
    at, document = driver.binder(dialect, sc.changed_at), driver.binder(dialect, sc.attributes)
    recorded_at, keys, rows = at(now), [], []
    for m in first.values():
        c = m.change
        changed_at = at(c.changed_at)
        keys.append((c.lead_id, c.stage, changed_at, c.opportunity_id or ""))
        rows.append((
            c.lead_id, c.stage, changed_at, c.crm_status, c.source_record_id,
            at(c.lead_created_at), document(c.attributes), document(c.problems),
            c.opportunity_id, c.restatement, c.retracts, run_id, recorded_at,
        ))  # fmt: skip
    returning = ("id", "lead_id", "stage", "changed_at", "opportunity_id")
    found = driver.insert_returning(conn, stage_changes, _CHANGE_WRITE, rows, returning)
    ids = {(lead, stage, when, deal or ""): int(i) for i, lead, stage, when, deal in found}
    return [(m, ids[key]) for key, m in zip(keys, first.values(), strict=True) if key in ids]


def _insert_deliveries(conn: Connection, inserted: list[tuple[Mapped, int]], now: datetime) -> None:
    """The new changes' delivery rows, one driver executemany for the whole chunk."""
    updated_at = driver.binder(conn.dialect, deliveries.c.updated_at)(now)
    rows = [
        (
            change_id, t.destination, t.name, t.value, t.currency,
            str(Status.SKIPPED if t.skip_reason else Status.PENDING), t.skip_reason, 0,
            claim_key(t.group, m.change.changed_at), updated_at,
        )
        for m, change_id in inserted
        for t in m.targets
    ]  # fmt: skip
    driver.insert_rows(conn, deliveries, _DELIVERY_WRITE, rows)


def insert_ignoring_duplicates(conn: Connection, table: Table = stage_changes) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING into `table` (`connector.ledger.replay` adds rows)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ConfigError(f"state store dialect {dialect!r} is not supported: use SQLite or PostgreSQL")


def claim_key(group: str, changed_at: datetime) -> str:
    """Where a delivery waits in its queue: its group (GA4: the client id), then its change
    time. Claims walk an index on it in order, so a page costs its own rows only, and a
    GA4 client's events come in one page, in time order, to share requests."""
    # isoformat less its "+00:00", not strftime (half the time): "2026-11-20T14:03:11.000000"
    return f"{group}|{changed_at.astimezone(UTC).isoformat('T', 'microseconds')[:-6]}"


def delivery_row(
    change_id: int, target: Target, now: datetime, changed_at: datetime
) -> dict[str, Any]:
    return {
        "change_id": change_id,
        "destination": target.destination,
        "target": target.name,
        "value": target.value,
        "currency": target.currency,
        "status": str(Status.SKIPPED if target.skip_reason else Status.PENDING),
        "reason": target.skip_reason,
        "attempts": 0,
        "claim_key": claim_key(target.group, changed_at),
        "updated_at": now,
    }
