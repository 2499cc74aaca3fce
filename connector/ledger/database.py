"""The connection to the state store: SQLite by default, PostgreSQL for several workers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError, ProgrammingError

from connector.errors import ConfigError, StateStoreError
from connector.ledger.schema import schema_version
from connector.state_url import SHORTEST_SECRET, safe_url, url_passwords, userinfo_password

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
        self,
        engine: Engine,
        *,
        url: str,
        readonly: bool = False,
        sqlite_path: Path | None = None,
    ) -> None:
        self.engine = engine
        self.url = url  # for error messages, which show it through safe_url only
        self.readonly = readonly
        self.sqlite_path = sqlite_path  # the file of a SQLite store (None on PostgreSQL)
        # A store that exists, and its tables, do not go away while this process runs:
        # remembered, so that each read of a run does not ask again (one query each).
        self._exists = False
        self._tables: set[str] = set()

    def exists(self) -> bool:
        """Whether the store was ever written (a read-only look may find nothing).

        Only a SQLite file not there yet, or a database without our tables, is empty: a
        store that cannot be opened or read (server down, a directory, a corrupt file) is a
        StateStoreError, so no command reports an unreachable store as an empty one.
        """
        if self._exists:
            return True
        if self.sqlite_path is not None and not _sqlite_file_exists(self.sqlite_path, self.url):
            return False
        with state_errors(self.url), self.engine.connect() as conn:
            self._exists = self.has_table(conn, schema_version.name)
        return self._exists

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
        raise _store_error(url, cause) from None


def _store_error(url: str, cause: str) -> StateStoreError:
    """The store at `url` failed for `cause`: said without any of the URL's passwords."""
    # A driver's message may echo what it was given: a host name holding the end of a
    # password that has an unencoded @, say.
    for secret in sorted(url_passwords(url), key=len, reverse=True):
        if len(secret) >= SHORTEST_SECRET:
            cause = cause.replace(secret, "***")
    if "@" in userinfo_password(url):  # the driver took its end for the host name
        cause += " (an @ in the password must be written %40)"
    return StateStoreError(
        f"the state store at {safe_url(url)} failed: {cause}; check CONNECTOR_STATE_URL "
        "(the file or database, its permissions, free space, and that the server is up)"
    )


def open_database(url: str, *, readonly: bool = False) -> Database:
    parsed = _parse(url)
    path = _sqlite_file(parsed)
    engine = _sqlite_engine(parsed, path, readonly) if path else _engine(parsed, pool_pre_ping=True)
    return Database(engine, url=url, readonly=readonly, sqlite_path=path)


def _sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite store, whatever its driver is written as (`sqlite:///`,
    `sqlite+pysqlite:///`): None for an in-memory one, or another database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def chunked(values: list[Any]) -> list[list[Any]]:
    return [values[start : start + CHUNK] for start in range(0, len(values), CHUNK)]


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except Exception as exc:  # not a URL at all: say which setting to fix
        raise _unusable(exc) from None


def _unusable(exc: Exception) -> ConfigError:
    return ConfigError(
        f"CONNECTOR_STATE_URL is not usable ({type(exc).__name__}): expected "
        "sqlite:///path/to.db or postgresql+psycopg://user@host/db"
    )


def _engine(url: URL, **options: Any) -> Engine:
    try:
        return create_engine(url, **options, **_JSON)
    except Exception as exc:  # bad URL or missing driver: say which setting to fix
        raise _unusable(exc) from None


def _sqlite_file_exists(path: Path, url: str) -> bool:
    """Whether the file is there; a path that can never hold one is an error, not "absent"."""
    try:
        path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:  # a part of the path is a file, or may not be searched
        raise _store_error(url, f"{exc.strerror}: {exc.filename}") from None
    return True


def _sqlite_engine(url: URL, path: Path, readonly: bool) -> Engine:
    if readonly:
        # mode=ro: a dry run must leave the file byte-for-byte as it was (or absent).
        engine = _engine(make_url("sqlite://"), creator=lambda: _sqlite_ro_connect(path))
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a part of the path is a file, or not writable
            cause = f"cannot create the directory {path.parent}: {exc.strerror}"
            raise _store_error(url.render_as_string(), cause) from None
        engine = _engine(url)

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
