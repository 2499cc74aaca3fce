"""The state store's connection: a store that cannot be opened told apart from an empty one,
its passwords kept out of the errors, and SQLite known by its backend, however it is written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from connector.errors import StateStoreError, StoreBusy
from connector.ledger import Ledger
from connector.ledger.locks import run_lock

SECRET = "pgsecretpw"


def test_an_unreachable_postgresql_store_is_an_error_not_an_empty_one() -> None:
    url = f"postgresql+psycopg://u:pg@{SECRET}@127.0.0.1:1/db"
    ledger = Ledger.open(url, readonly=True)
    with pytest.raises(StateStoreError, match="CONNECTOR_STATE_URL") as info:
        ledger.runs.recent(5)
    assert SECRET not in str(info.value) and "%40" in str(info.value)
    with pytest.raises(StateStoreError, match="CONNECTOR_STATE_URL"):
        Ledger.open("postgresql+psycopg://u@127.0.0.1:1/db")  # to write: migrating fails


def test_a_store_never_written_is_empty_and_one_out_of_reach_an_error(state_url: str) -> None:
    assert Ledger.open(state_url, readonly=True).runs.recent(5) == []
    url = make_url(state_url)
    if url.get_backend_name() == "sqlite":  # a directory where the file would be
        (Path(str(url.database)).parent / "a-directory").mkdir(parents=True)
        unreachable = url.set(database=str(Path(str(url.database)).parent / "a-directory"))
    else:  # the same server and database on a port nothing listens on
        unreachable = url.set(port=1)
    ledger = Ledger.open(unreachable.render_as_string(hide_password=False), readonly=True)
    with pytest.raises(StateStoreError, match="CONNECTOR_STATE_URL"):
        ledger.runs.recent(5)


def test_a_sqlite_store_that_cannot_be_opened_is_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    regular = tmp_path / "a-file"
    regular.write_text("")
    for path in (directory, corrupt, regular / "connector.db"):
        for readonly in (True, False):
            with pytest.raises(StateStoreError, match="CONNECTOR_STATE_URL"):
                Ledger.open(f"sqlite:///{path}", readonly=readonly).runs.recent(5)
    # Only a file not there yet, or one without our tables, is an empty store.
    assert Ledger.open(f"sqlite:///{tmp_path / 'absent.db'}", readonly=True).runs.recent(5) == []
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    assert Ledger.open(f"sqlite:///{tmp_path / 'other.db'}", readonly=True).runs.recent(5) == []


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_sqlite_keeps_one_writer_whatever_its_driver_is_written_as(
    scheme: str, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "connector.db"
    ledger = Ledger.open(f"{scheme}:///{path}")
    assert ledger.db.sqlite_path == path
    with run_lock(ledger.db) as lock:
        assert lock.exclusive
        with pytest.raises(StoreBusy), run_lock(Ledger.open(f"sqlite:///{path}").db):
            pass
    with ledger.db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    with ledger.db.engine.begin():  # the write lock is taken when the transaction begins
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
