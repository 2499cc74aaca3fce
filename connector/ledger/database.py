"""The connection to the state store: SQLite by default, PostgreSQL for several workers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError, ProgrammingError

from connector.errors import ConfigError, StateStoreError
from connector.ledger.schema import schema_version

CHUNK = 500  # ids per IN (...) list: far under every backend's parameter limit


def _json_text(value: Any) -> str:
    # orjson (C) for the JSON columns: a claim decodes a change's attributes per row, and the
    # standard library's decoder was the largest part of it. Non-str keys as json.dumps does.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# Every engine reads and writes the JSON columns with these.
_JSON = {"json_serializer": _json_text, "json_deserializer": orjson.loads}


class Database:
    """An engine, and whether this run may write to it (a dry run may not)."""

    def __init__(
        self, engine: Engine, *, readonly: bool = False, sqlite_path: Path | None = None
    ) -> None:
        self.engine = engine
        self.readonly = readonly
        self.sqlite_path = sqlite_path  # the file of a SQLite store (None on PostgreSQL)
        # A store that exists, and its tables, do not go away while this process runs:
        # remembered, so that each read of a run does not ask again (one query each).
        self._exists = False
        self._tables: set[str] = set()

    def exists(self) -> bool:
        """Whether the store was ever written (a read-only look may find nothing)."""
        if self._exists:
            return True
        try:
            with self.engine.connect() as conn:
                conn.execute(select(schema_version.c.version)).scalar()
        except (OperationalError, ProgrammingError):
            return False
        self._exists = True
        return True

    def has_table(self, conn: Connection, name: str) -> bool:
        """A read-only look at a store from an older connector may lack newer tables."""
        if name not in self._tables and inspect(conn).has_table(name):
            self._tables.add(name)
        return name in self._tables


@contextmanager
def state_errors(url: str) -> Iterator[None]:
    """Failures of the store itself as one clear error naming the setting, never a traceback."""
    try:
        yield
    except (OperationalError, ProgrammingError, DatabaseError, InterfaceError) as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        raise StateStoreError(
            f"the state store at {safe_url(url)} failed: {cause}; check CONNECTOR_STATE_URL "
            "(the file or database, its permissions, free space, and that the server is up)"
        ) from None


def safe_url(url: str) -> str:
    """The URL without its password: `postgresql://user:***@host/db`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show none of it
        return "CONNECTOR_STATE_URL"


def open_database(url: str, *, readonly: bool = False) -> Database:
    path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    return Database(_engine(url, readonly), readonly=readonly, sqlite_path=path)


def chunked(values: list[Any]) -> list[list[Any]]:
    return [values[start : start + CHUNK] for start in range(0, len(values), CHUNK)]


def _engine(url: str, readonly: bool) -> Engine:
    if url.startswith("sqlite:///"):
        return _sqlite_engine(Path(url.removeprefix("sqlite:///")), readonly)
    try:
        return create_engine(url, pool_pre_ping=True, **_JSON)
    except Exception as exc:  # bad URL or missing driver: say which setting to fix
        raise ConfigError(
            f"CONNECTOR_STATE_URL is not usable ({type(exc).__name__}): expected "
            "sqlite:///path/to.db or postgresql+psycopg://user@host/db"
        ) from None


def _sqlite_engine(path: Path, readonly: bool) -> Engine:
    if readonly:
        # mode=ro: a dry run must leave the file byte-for-byte as it was (or absent).
        engine = create_engine("sqlite://", creator=lambda: _sqlite_ro_connect(path), **_JSON)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{path}", **_JSON)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        if not readonly:
            dbapi_conn.execute("PRAGMA busy_timeout=30000")
            dbapi_conn.isolation_level = None  # transactions begin below, not in the driver

    if not readonly:

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Take the write lock when the transaction starts: a claim's read and its update
            # are then one step, and two writers queue instead of interleaving.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _sqlite_ro_connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
