"""Who may write the state store, and when: one run at a time on SQLite, many on PostgreSQL.

- SQLite: an exclusive lock on `<store>.lock` (flock) for the whole run; the file names
  the holder (pid, host, start). The kernel drops the lock when its process dies, so a
  stale lock is taken over safely, and the run holding it knows that anything left in
  flight was orphaned.
- PostgreSQL: several workers share the store. Deliveries are claimed with FOR UPDATE
  SKIP LOCKED (queue.claim); each stream is pulled by one worker at a time (an advisory
  lock per stream, so cursors never race); schema creation and migration run under an
  advisory lock of their own (migrations.migrate).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import func, select

from connector.core import utcnow
from connector.errors import StoreBusy
from connector.ledger.database import Database

MIGRATION_LOCK = 0x636F6E6E  # "conn": one key for schema creation and upgrades


@dataclass(frozen=True)
class RunLock:
    """What this run holds: the store alone (SQLite), or a share of it (PostgreSQL)."""

    exclusive: bool


@contextmanager
def run_lock(db: Database, *, wait: float = 0.0) -> Iterator[RunLock]:
    """Hold the store for one run; StoreBusy (naming the holder) if another run has it."""
    path = db.sqlite_path
    if path is None:
        yield RunLock(exclusive=False)
        return
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+", encoding="utf-8") as handle:
        _acquire(handle, lock_path, wait)
        handle.seek(0)
        handle.truncate()
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utcnow()}
        handle.write(json.dumps(holder, default=str))
        handle.flush()
        try:
            yield RunLock(exclusive=True)
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _acquire(handle: IO[str], path: Path, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StoreBusy(_busy_message(path, wait)) from None
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.01)))


def _busy_message(path: Path, wait: float) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    who = (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started_at', '?')}"
    )
    waited = f" (waited {wait:g} s)" if wait else ""
    return (
        f"another run holds the state store{waited}: {who}; it releases the store when it "
        "ends (use --wait SECONDS to wait for it)"
    )


@contextmanager
def stream_lock(db: Database, stream: str) -> Iterator[bool]:
    """Whether this worker may pull `stream` now (True on SQLite: the run lock covers it)."""
    if db.engine.dialect.name != "postgresql":
        yield True
        return
    key = zlib.crc32(stream.encode()) - 2**31  # a stable signed 32-bit key per stream
    with db.engine.connect() as conn:
        held = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
        conn.commit()
        try:
            yield held
        finally:
            if held:
                conn.execute(select(func.pg_advisory_unlock(key)))
                conn.commit()
