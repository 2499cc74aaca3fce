"""A request to stop (SIGTERM): the run finishes the request in flight and claims nothing more.

Set from a signal handler, read between requests by the pull and delivery loops.
"""

from __future__ import annotations

import threading

_requested = threading.Event()
REASON = "stopped by SIGTERM after settling the request in flight; the next run goes on"


def request() -> None:
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def wait(seconds: float) -> bool:
    """Sleep `seconds`, or less if told to stop meanwhile; whether a stop was requested."""
    return _requested.wait(seconds)


def reset() -> None:
    _requested.clear()
