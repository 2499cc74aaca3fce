"""Reading one page ahead: order, errors where they were due, one item over, early stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from connector.source.ahead import read_ahead


def test_items_come_in_order_and_the_next_is_fetched_while_one_is_worked_on() -> None:
    fetched: list[int] = []
    threads: set[str] = set()
    third = threading.Event()

    def pages() -> Iterator[int]:
        for n in range(4):
            threads.add(threading.current_thread().name)
            fetched.append(n)
            if n == 2:
                third.set()
            yield n

    got = []
    for page in read_ahead(pages()):
        got.append(page)
        if page == 1:  # while page 1 is worked on, page 2 is fetched, and no further
            assert third.wait(5)
            assert fetched == [0, 1, 2]
    assert got == [0, 1, 2, 3]
    assert all(name.startswith("read-ahead") for name in threads)


def test_an_error_is_raised_where_its_item_was_due() -> None:
    def pages() -> Iterator[int]:
        yield 1
        raise RuntimeError("page 2 refused")

    reader = read_ahead(pages())
    assert next(reader) == 1
    with pytest.raises(RuntimeError, match="page 2 refused"):
        next(reader)


def test_a_reader_that_stops_early_closes_the_pages() -> None:
    closed = threading.Event()

    def pages() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed.set()

    reader = read_ahead(pages())
    assert next(reader) == 0
    reader.close()
    assert closed.is_set()


def test_an_item_fetched_ahead_but_never_handed_out_is_closed() -> None:
    class Page:
        def __init__(self) -> None:
            self.closed = False

        def close(self) -> None:
            self.closed = True

    pages = [Page(), Page(), Page()]
    reader = read_ahead(iter(pages))
    assert next(reader) is pages[0]
    reader.close()  # page 1 was fetched meanwhile: its response goes back to the pool
    assert [page.closed for page in pages] == [False, True, False]
