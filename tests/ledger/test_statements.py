"""The ledger's SQL statements are counted, not timed: a chunk of changes costs a few
statements whatever its size, and a run with nothing new costs the same whatever the
ledger holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, event

from connector.ledger import Ledger
from tests.ledger.test_store import T0, mapped


@contextmanager
def counted() -> Iterator[list[str]]:
    """Every SQL statement any engine sends while inside (one per cursor execute)."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def record_statements(ledger: Ledger, first: int, changes: int) -> int:
    batch = [mapped(f"L{i:06d}", at=T0 + timedelta(seconds=i)) for i in range(first, changes)]
    run = ledger.runs.start()
    with counted() as statements:
        new = ledger.changes.record(run, batch, "s", T0 + timedelta(seconds=changes))
    assert len(new) == len(batch)
    return len(statements)


def test_recording_a_chunk_costs_the_same_few_statements_for_n_and_10n_changes(
    state_url: str,
) -> None:
    ledger = Ledger.open(state_url)
    small = record_statements(ledger, 0, 100)
    large = record_statements(ledger, 100, 1100)  # 10x the changes, 2,000 delivery rows
    # one changes INSERT ... RETURNING, one deliveries executemany, the cursor's read and move
    # (and SQLite's BEGIN IMMEDIATE, which takes the write lock when the transaction starts)
    assert large == small <= 5, (small, large)


def test_a_batch_read_twice_stores_each_change_once_with_its_delivery_rows(
    state_url: str,
) -> None:
    ledger = Ledger.open(state_url)
    run = ledger.runs.start()
    twice = [mapped("A"), mapped("B"), mapped("A")]  # the overlap window: A read again
    new = ledger.changes.record(run, twice, "s", T0)
    assert [m.change.lead_id for m in new] == ["A", "B"]
    again = ledger.changes.record(run, [mapped("B"), mapped("C")], "s", T0)
    assert [m.change.lead_id for m in again] == ["C"]
    pending = ledger.queue.pending("google_ads")
    assert sorted(d.change.lead_id for d in pending) == ["A", "B", "C"]
    assert len({d.id for d in pending}) == 3


def test_releasing_nothing_costs_no_statement(state_url: str) -> None:
    """Asked after every wave and every send, where it is mostly empty: no empty transaction."""
    ledger = Ledger.open(state_url)
    with counted() as statements:
        ledger.queue.release([], "w")
    assert statements == []
