"""UTCDateTime on SQLite: its one-step processors store and read what DateTime's own do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from connector.ledger.schema import UTCDateTime

SQLITE = sqlite.dialect()
TIMES = [
    datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC),  # no microseconds: still written as .000000
    datetime(2026, 11, 20, 14, 3, 11, 5, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-7))),  # stored as UTC
]


def test_the_text_stored_is_sqlalchemys_own_datetime_text() -> None:
    ours = UTCDateTime().bind_processor(SQLITE)
    theirs = DateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert ours is not None and theirs is not None
    for at in TIMES:
        assert ours(at) == theirs(at.astimezone(UTC).replace(tzinfo=None))
    assert ours(None) is None


def test_what_is_read_back_is_the_same_aware_utc_datetime() -> None:
    write = UTCDateTime().bind_processor(SQLITE)
    read = UTCDateTime().result_processor(SQLITE, None)
    assert write is not None and read is not None
    for at in TIMES:
        back = read(write(at))
        assert back == at and back.tzinfo is UTC
    assert read("2026-11-20 14:03:11") == datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)
    assert read(None) is None


def test_a_naive_datetime_is_refused() -> None:
    write = UTCDateTime().bind_processor(SQLITE)
    assert write is not None
    with pytest.raises(ValueError, match="naive datetime"):
        write(datetime(2026, 11, 20, 14, 3, 11))
