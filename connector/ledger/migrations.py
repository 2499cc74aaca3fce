"""Create the state store's tables, or bring an older store up to SCHEMA_VERSION.

A store written by a newer connector is refused instead of guessed at.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, inspect, select, text, update

from connector.core import GA4, Status
from connector.errors import ConfigError
from connector.ledger.changes import claim_key
from connector.ledger.database import Database
from connector.ledger.locks import MIGRATION_LOCK
from connector.ledger.schema import (
    SCHEMA_VERSION,
    deliveries,
    metadata,
    schema_version,
    stage_changes,
)

# Keys that earlier stores kept inside stage_changes.attributes, now columns of their own.
_MOVED_FLAGS = ("opportunity_id", "restatement", "retracts")


def migrate(db: Database) -> None:
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Workers starting together on a fresh database: one creates, the others wait.
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
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


def _upgrade(conn: Connection, version: int) -> None:
    """New tables came with create_all; new columns and indexes of old tables come here."""
    if version < 2:
        _add_column(conn, "deliveries", "not_before", "TIMESTAMP")
    if version < 3:
        _add_column(conn, "stage_changes", "opportunity_id", "VARCHAR(40)")
        _add_column(conn, "stage_changes", "restatement", "BOOLEAN")
        _add_column(conn, "stage_changes", "retracts", "VARCHAR(200)")
        _move_flags(conn)
    if version < 4:
        _add_column(conn, "deliveries", "claimed_by", "VARCHAR(100)")
        _add_column(conn, "deliveries", "lease_until", "TIMESTAMP")
    if version < 5:
        _add_column(conn, "deliveries", "claim_key", "VARCHAR(200) NOT NULL DEFAULT ''")
        _key_waiting_rows(conn)
    if version < 7:
        conn.execute(text("DROP INDEX IF EXISTS ix_deliveries_status"))
    for table in (deliveries, stage_changes):
        for index in table.indexes:  # create_all leaves an existing table's indexes alone
            index.create(conn, checkfirst=True)
    conn.execute(update(schema_version).values(version=SCHEMA_VERSION))


def _add_column(conn: Connection, table: str, column: str, sql_type: str) -> None:
    if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))


def _key_waiting_rows(conn: Connection) -> None:
    """Rows still to send get their place in the queue (schema 5): GA4's by client id."""
    d, sc = deliveries.c, stage_changes.c
    waiting = [str(Status.PENDING), str(Status.IN_FLIGHT)]
    query = (
        select(d.id, d.destination, sc.changed_at, sc.attributes)
        .join_from(deliveries, stage_changes, d.change_id == sc.id)
        .where(d.status.in_(waiting))
    )
    rows = [
        {
            "row_id": row.id,
            "key": claim_key(_group(row.destination, row.attributes), row.changed_at),
        }
        for row in conn.execute(query)
    ]
    if rows:
        stmt = update(deliveries).where(d.id == bindparam("row_id"))
        conn.execute(stmt.values(claim_key=bindparam("key")), rows)


def _group(destination: str, attributes: dict[str, Any] | None) -> str:
    return str((attributes or {}).get("ga_client_id") or "") if destination == GA4 else ""


def _move_flags(conn: Connection) -> None:
    """Control flags that rode in `attributes` (schema 2) become typed columns."""
    sc = stage_changes.c
    rows: list[dict[str, Any]] = []
    for row in conn.execute(select(sc.id, sc.attributes)):
        attrs = dict(row.attributes or {})
        flags = {key: attrs.pop(key, None) for key in _MOVED_FLAGS}
        rows.append(
            {
                "row_id": row.id,
                "attributes": attrs,
                "opportunity_id": flags["opportunity_id"],
                "restatement": bool(flags["restatement"]),
                "retracts": flags["retracts"],
            }
        )
    if rows:
        stmt = (
            update(stage_changes)
            .where(sc.id == bindparam("row_id"))
            .values(
                attributes=bindparam("attributes"),
                opportunity_id=bindparam("opportunity_id"),
                restatement=bindparam("restatement"),
                retracts=bindparam("retracts"),
            )
        )
        conn.execute(stmt, rows)
