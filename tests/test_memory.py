"""Between pulls, the run hands back what the finished one no longer uses."""

from __future__ import annotations

import gc

from connector.mapping.identifiers import hash_email, hash_phone, looks_like_pii
from connector.memory import GC_THRESHOLDS, collect_less, give_back


def test_the_hash_and_pii_caches_are_emptied() -> None:
    hash_email("ana@example.com")
    hash_phone("+44 20 7946 1487", "GB")
    looks_like_pii("newsletter", "US")
    give_back()
    sizes = [f.cache_info().currsize for f in (hash_email, hash_phone, looks_like_pii)]
    assert sizes == [0, 0, 0]
    assert hash_email("ana@example.com").sha256  # and they fill again


def test_the_collector_runs_less_often_and_skips_what_the_run_started_with() -> None:
    before = gc.get_threshold()
    try:
        collect_less()
        assert gc.get_threshold() == GC_THRESHOLDS
        frozen = gc.get_freeze_count()
        assert frozen > 0
        collect_less()  # once is enough: nothing frozen twice
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
