"""Rows put in key order through a scratch file, whatever their number.

A Bulk API 2.0 job returns its rows in no promised order, and a backfill's rows
can outgrow memory. Here they go into a SQLite file in the temporary directory
(TMPDIR), keyed by their sort key, and come back in key order. SQLite holds a few
MB of its pages in memory whatever the row count; the disk holds about 350 bytes a
row of a history read (a million-row backfill: about 350 MB). Nothing here is
state: it lives for one read.

The rows hold the leads' contact data in clear (it is hashed later, when mapped), so
the file loses its name as soon as it is open: no other process can find it, and
the space goes back when the spill is closed or the process ends, a SIGKILL or an
out-of-memory kill too (SQLite keeps working on the open file: no journal is kept).
"""

from __future__ import annotations

import marshal
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from connector.errors import SourceError

Row = list[str]
CACHE_KIB = 8192  # SQLite's page cache for the file


class Spill:
    """Add (key, row) pairs in any order; read the rows back by key, ties in arrival order.

    Close it when done (`contextlib.closing`): that frees the scratch file's space."""

    def __init__(self) -> None:
        try:
            self._directory = tempfile.TemporaryDirectory(prefix="connector-spill-")
        except OSError as exc:
            raise _no_room(exc) from None
        self._db = sqlite3.connect(Path(self._directory.name) / "rows.db")
        # A scratch file: nothing to recover after a crash, so no journal and no syncs.
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{CACHE_KIB}"):
            self._db.execute(f"PRAGMA {pragma}")
        # Clustered on (key, arrival): rows that come nearly in order are appended, and read
        # back by a plain scan, with no sort of their own.
        self._db.execute(
            "CREATE TABLE rows (key TEXT, seq INTEGER, row BLOB, PRIMARY KEY (key, seq))"
            " WITHOUT ROWID"
        )
        self._directory.cleanup()  # open now: the name goes, the file stays until closed
        self.count = 0

    def add(self, rows: Iterable[tuple[str, Row]]) -> None:
        """Hold `rows` (marshal: the fastest way Python writes a list of strings)."""

        def numbered() -> Iterator[tuple[str, int, bytes]]:
            for key, row in rows:
                self.count += 1
                yield key, self.count, marshal.dumps(row)

        try:
            with self._db:  # one transaction for the lot
                self._db.executemany("INSERT INTO rows VALUES (?, ?, ?)", numbered())
        except sqlite3.Error as exc:  # most likely a full disk
            raise _no_room(exc) from None

    def rows(self) -> Iterator[Row]:
        """Every row held, in key order."""
        for (blob,) in self._db.execute("SELECT row FROM rows ORDER BY key, seq"):
            # Bytes this process wrote, to a file with no name any other process could open.
            yield marshal.loads(blob)  # noqa: S302

    def close(self) -> None:
        self._db.close()  # the file, nameless since it was opened, goes with it


def _no_room(exc: Exception) -> SourceError:
    return SourceError(
        f"cannot write the scratch file that sorts a Bulk job's rows under {tempfile.gettempdir()} "
        f"({type(exc).__name__}: {exc}); give it about 350 bytes a row, or set TMPDIR to a "
        "directory with room; the cursor was kept, rerun later",
        retryable=True,
    )
