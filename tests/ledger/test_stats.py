"""Ledger counts for monitoring, and the recent-runs read, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from connector.core import Outcome, Status
from connector.ledger import Ledger
from connector.ledger.stats import ledger_stats
from tests.ledger.test_store import T0, mapped


def test_counts_retries_and_the_oldest_pending_delivery(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    run = ledger.runs.start()
    before = datetime.now(UTC)
    ledger.changes.record(run, [mapped("A"), mapped("B", skip="too_old_for_ga4")], "s", T0)
    ga4 = ledger.queue.pending("ga4")
    a, b = ledger.queue.pending("google_ads")
    ledger.queue.settle([Outcome(a.id, Status.PENDING, error="503")])  # one failed attempt
    ledger.queue.settle([Outcome(a.id, Status.DELIVERED), Outcome(b.id, Status.DELIVERED)])
    ledger.runs.finish(run, "ok", {})

    stats = ledger_stats(ledger.db)
    assert stats.runs == {"ok": 1}
    assert stats.deliveries == {
        ("google_ads", "delivered"): 2,
        ("ga4", "pending"): 1,
        ("ga4", "skipped"): 1,
    }
    assert stats.retries == {"google_ads": 1, "ga4": 0}
    assert set(stats.oldest_pending) == {"ga4"} and len(ga4) == 1
    # Queued when recorded (now), not when the change happened (T0, days ago).
    assert stats.oldest_pending["ga4"] >= before.replace(microsecond=0)


def test_an_unwritten_store_has_no_counts(tmp_path: object) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path}/none.db", readonly=True)
    assert ledger_stats(ledger.db).runs == {}
    assert ledger.runs.recent(5) == []


def test_recent_runs_newest_first(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    first, second, third = (ledger.runs.start() for _ in range(3))
    ledger.runs.finish(first, "ok", {"pulled": 3})
    ledger.runs.finish(second, "failed", {"error": "boom"})
    recent = ledger.runs.recent(2)
    assert [r.id for r in recent] == [third, second]
    assert recent[0].status == "running" and recent[0].finished_at is None
    assert recent[1].summary == {"error": "boom"} and recent[1].finished_at is not None
