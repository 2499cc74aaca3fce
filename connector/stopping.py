"""A request to stop (SIGTERM): the run finishes the request in flight and claims nothing more.

Set from a signal handler, read between requests by the pull and delivery loops.

Python runs signal handlers in the main thread only, between bytecodes, and the kernel may
hand a process's SIGTERM to any thread: a main thread blocked in an unbounded wait (a lock,
a future) would notice the stop only when that wait ends, perhaps after the whole delivery.
So the main thread waits here, in slices, never on a lock for longer than `SLICE_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent import futures
from concurrent.futures import Future
from typing import Any

_requested = threading.Event()
SLICE_SECONDS = 0.1  # how soon a waiting main thread runs a signal handler
REASON = "stopped by SIGTERM after settling the request in flight; the next run goes on"
Done = tuple[set[Future[Any]], set[Future[Any]]]


def request() -> None:
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def wait(seconds: float) -> bool:
    """Sleep `seconds`, or less if told to stop meanwhile; whether a stop was requested."""
    return sleep_unless(_requested, seconds)


def sleep_unless(event: threading.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less once `event` is set; whether it is.

    Short sleeps, not `Event.wait`: the handler that sets `event` runs in the main thread
    and takes the event's lock, which `Event.wait` in that same thread may be holding."""
    deadline = time.monotonic() + seconds
    while not event.is_set() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, SLICE_SECONDS))
    return event.is_set()


def wait_for(running: Iterable[Future[Any]], *, first: bool = False) -> Done:
    """`concurrent.futures.wait` for all of `running` (or the `first` to finish), in slices."""
    when = futures.FIRST_COMPLETED if first else futures.ALL_COMPLETED
    pending = set(running)
    while True:
        done, pending = futures.wait(pending, timeout=SLICE_SECONDS, return_when=when)
        if (done and first) or not pending:
            return done, pending


def reset() -> None:
    _requested.clear()
