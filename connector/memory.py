"""Handing a finished pull's memory back to the system, so a run's peak is one phase's, not
the sum of them all.

Python keeps small objects in 256 KiB arenas and frees an arena only once every
object in it is gone; glibc keeps freed blocks of larger ones for reuse. A pull
makes millions of short-lived objects, and the few that outlive it (the entries
of the bounded hash caches, made all along the pull) pin the arenas they sit in,
with the churn around them. Between phases the caches are emptied (the next
phase reads other leads), unreachable cycles collected, and glibc's free pages
returned (`malloc_trim`; a no-op elsewhere).

The cyclic collector is tuned for the same churn (`collect_less`). By default it
runs every 700 net allocations and fully every few dozen of those runs: at
100,000 changes that was 30 full collections, each walking every object the
libraries loaded, about a tenth of the run's CPU. What exists when the first pull
starts (modules, settings, clients) is frozen out of the collector's walks, and it
runs less often; nearly everything a pull makes is freed by reference counting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache

from connector.mapping.identifiers import forget_hashes

GC_THRESHOLDS = (10_000, 10, 10)  # Python's: (700, 10, 10)


def collect_less() -> None:
    """Fewer and cheaper cyclic collections from now on (once per process is enough)."""
    if gc.get_threshold() == GC_THRESHOLDS:
        return
    gc.collect()
    gc.freeze()  # alive now and for the whole process: never walked again
    gc.set_threshold(*GC_THRESHOLDS)


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
