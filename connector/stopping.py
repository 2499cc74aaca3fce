"""A request to stop (SIGTERM): the run finishes the request in flight and claims nothing more.

Set from a signal handler, read between requests by the pull and delivery loops.
"""

from __future__ import annotations

import threading
import time

_requested = threading.Event()
SLICE_SECONDS = 0.1  # how soon `wait` notices a stop
REASON = "stopped by SIGTERM after settling the request in flight; the next run goes on"


def request() -> None:
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def wait(seconds: float) -> bool:
    """Sleep `seconds`, or less if told to stop meanwhile; whether a stop was requested.

    Short sleeps, not `Event.wait`: the SIGTERM handler runs in the main thread and sets
    the event under its lock, which `Event.wait` in that same thread may be holding."""
    deadline = time.monotonic() + seconds
    while not requested() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, SLICE_SECONDS))
    return requested()


def reset() -> None:
    _requested.clear()
