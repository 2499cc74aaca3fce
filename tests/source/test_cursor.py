"""A stream's cursor: where a pull reads from, and how far its bookmark may move."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from connector.errors import SourceError
from connector.settings import SalesforceSettings
from connector.source.cursor import Cursor
from connector.source.streams import LEAD_HISTORY

RUN_START = datetime(2026, 11, 20, 14, 0, 0, tzinfo=UTC)
BOOKMARK = RUN_START - timedelta(hours=6)


def cursor(bookmark: datetime | None = BOOKMARK, **settings: object) -> Cursor:
    sf = SalesforceSettings.model_validate(settings)
    return Cursor.resume(LEAD_HISTORY, bookmark, sf, RUN_START)


def hours_ago(hours: float) -> datetime:
    return RUN_START - timedelta(hours=hours)


def test_a_first_run_is_a_backfill_from_backfill_days_before_the_run() -> None:
    first = cursor(None, backfill_days=30)
    assert first.backfill and first.initial is None
    assert first.since == RUN_START - timedelta(days=30)


def test_a_start_date_sets_where_a_backfill_begins() -> None:
    first = cursor(None, start_date=date(2025, 1, 1), backfill_days=30)
    assert first.since == datetime(2025, 1, 1, tzinfo=UTC)


def test_a_later_run_reads_from_its_bookmark_less_the_overlap_window() -> None:
    later = cursor(overlap_seconds=300, start_date=date(2025, 1, 1))
    assert not later.backfill
    assert later.since == BOOKMARK - timedelta(seconds=300)


def test_before_any_row_the_bookmark_may_move_only_to_where_the_read_began() -> None:
    # On a backfill that stores the start; later, the ledger keeps the greater bookmark.
    assert cursor(None, backfill_days=30).bookmark == RUN_START - timedelta(days=30)
    assert cursor(overlap_seconds=60).bookmark == BOOKMARK - timedelta(seconds=60)


def test_a_read_moves_the_position_with_each_row() -> None:
    read = cursor()
    for at in (hours_ago(5), hours_ago(4), hours_ago(4)):  # a tie is still in order
        read.advance(at)
        assert read.position == at and read.bookmark == at


def test_the_bookmark_never_passes_the_run_start() -> None:
    read = cursor()
    read.advance(RUN_START + timedelta(seconds=2))  # stamped while the run was reading
    assert read.position == RUN_START + timedelta(seconds=2)
    assert read.bookmark == RUN_START  # read again next time


def test_rows_out_of_order_are_refused_and_the_position_kept() -> None:
    read = cursor()
    read.advance(hours_ago(3))
    with pytest.raises(SourceError) as refused:
        read.advance(hours_ago(4))
    assert not refused.value.retryable
    message = str(refused.value)
    assert "salesforce.LeadHistory" in message and "CreatedDate order" in message
    assert read.position == hours_ago(3) and read.bookmark == hours_ago(3)
