"""Create the state store's tables, or bring an older store up to SCHEMA_VERSION.

A store written by a newer connector is refused instead of guessed at.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    MetaData,
    bindparam,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.schema import CreateIndex, CreateTable

from connector.core import GA4, Status
from connector.errors import ConfigError
from connector.ledger.changes import claim_key
from connector.ledger.database import Database
from connector.ledger.locks import MIGRATION_LOCK
from connector.ledger.schema import (
    SCHEMA_VERSION,
    deliveries,
    metadata,
    runs,
    schema_version,
    stage_changes,
)

# Keys that earlier stores kept inside stage_changes.attributes, now columns of their own.
_MOVED_FLAGS = ("opportunity_id", "restatement", "retracts")


def migrate(db: Database) -> None:
    if db.engine.dialect.name == "sqlite":
        _rebuild_changes_keyed_by_deal(db)
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
    if version < 8 and conn.dialect.name == "postgresql":  # SQLite's: `migrate`, before this
        conn.execute(text("ALTER TABLE stage_changes DROP CONSTRAINT IF EXISTS uq_stage_change"))
    if version < 9 and conn.dialect.name == "postgresql":
        conn.execute(
            text('ALTER TABLE deliveries ALTER COLUMN claim_key TYPE VARCHAR(200) COLLATE "C"')
        )
    for table in (deliveries, stage_changes):
        for index in table.indexes:  # create_all leaves an existing table's indexes alone
            # IF NOT EXISTS, not checkfirst: SQLite's reflection cannot see an expression index.
            conn.execute(CreateIndex(index, if_not_exists=True))
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


def _rebuild_changes_keyed_by_deal(db: Database) -> None:
    """Schema 8 on SQLite: stage_changes without the old unique key (lead, stage, time),
    which left out the deal. SQLite cannot drop a constraint: the table is built again
    (rows and ids kept) as its docs say, with its indexes, foreign keys off meanwhile, since
    deliveries point at it."""
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, or it does nothing
        try:
            # The write lock first (BEGIN IMMEDIATE): a process upgrading the same store at
            # the same moment waits here, then finds the table rebuilt.
            with conn.begin():
                # Origin "u": an index made by a UNIQUE constraint (schema 7 had only that one).
                found = conn.exec_driver_sql("PRAGMA index_list(stage_changes)").mappings().all()
                if any(index["origin"] == "u" for index in found):
                    _copy_changes(conn)
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def _copy_changes(conn: Connection) -> None:
    scratch = MetaData()
    runs.to_metadata(scratch)  # what its foreign key names
    new = stage_changes.to_metadata(scratch, name="stage_changes_new")
    conn.execute(CreateTable(new))  # the table alone: its indexes' names are the old ones'
    columns = ", ".join(c.name for c in stage_changes.columns)
    conn.execute(
        text(f"INSERT INTO stage_changes_new ({columns}) SELECT {columns} FROM stage_changes")
    )
    conn.execute(text("DROP TABLE stage_changes"))
    conn.execute(text("ALTER TABLE stage_changes_new RENAME TO stage_changes"))
    for index in stage_changes.indexes:  # the unique key among them, in the same transaction
        conn.execute(CreateIndex(index, if_not_exists=True))
