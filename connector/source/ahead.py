"""Reading one page ahead: the next page's round trip overlaps the work on this one."""

from __future__ import annotations

import contextvars
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def read_ahead(items: Iterator[T]) -> Generator[T, None, None]:
    """`items` in order, the next one fetched in a worker thread while the caller works on
    the one it was given. At most one item waits: memory stays one page over.

    The worker advances `items` itself (its retries, sleeps and stats too), never two steps
    at once; an error it meets is raised here, where that item was due. A caller that stops
    early waits for the fetch in the air (one request); then the item it fetched, never
    handed out, is closed if it can be (a page's response goes back to its pool), and so
    is `items`."""

    def step() -> tuple[T] | None:
        for item in items:
            return (item,)
        return None

    def fetch(worker: ThreadPoolExecutor) -> Future[tuple[T] | None]:
        # The worker runs each step in a copy of this context (log lines keep the run id).
        return worker.submit(contextvars.copy_context().run, step)

    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as worker:
        upcoming = fetch(worker)
        try:
            while (got := upcoming.result()) is not None:
                upcoming = fetch(worker)
                yield got[0]
        finally:
            worker.shutdown(wait=True)
            if upcoming.exception() is None and (unread := upcoming.result()) is not None:
                _close(unread[0])
            _close(items)


def _close(thing: object) -> None:
    close = getattr(thing, "close", None)
    if close is not None:
        close()
