"""Handing a finished pull's memory back to the system, so a run's peak is one phase's, not
the sum of them all.

Python keeps small objects in 256 KiB arenas and frees an arena only once every
object in it is gone; glibc keeps freed blocks of larger ones for reuse. A pull
makes millions of short-lived objects, and the few that outlive it (the entries
of the bounded hash caches, made all along the pull) pin the arenas they sit in,
with the churn around them. Between phases the caches are emptied (the next
phase reads other leads), unreachable cycles collected, and glibc's free pages
returned (`malloc_trim`; a no-op elsewhere).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache

from connector.mapping.identifiers import forget_hashes


def give_back() -> None:
    """Release what a finished pull no longer uses."""
    forget_hashes()
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
