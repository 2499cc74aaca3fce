"""The delivery queue's claims on SQLite and PostgreSQL: claimed before sent, each row once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from connector.core import GA4, Mapped, Outcome, Status
from connector.ledger import Ledger
from tests.conftest import POSTGRES_URL, _postgres_database
from tests.ledger.test_store import T0, mapped

LEASE = timedelta(minutes=15)


def filled(state_url: str, leads: int = 5) -> Ledger:
    ledger = Ledger.open(state_url)
    batch = [mapped(f"L{i}", at=T0 + timedelta(seconds=i)) for i in range(leads)]
    ledger.changes.record(ledger.runs.start(), batch, "s", T0)
    return ledger


def test_a_claim_is_committed_in_flight_and_not_claimed_again(state_url: str) -> None:
    ledger = filled(state_url)
    first = ledger.queue.claim("google_ads", "w1", lease=LEASE, limit=3)
    assert [d.change.lead_id for d in first] == ["L0", "L1", "L2"]  # change-time order
    assert ledger.queue.counts()["google_ads"] == {"in_flight": 3, "pending": 2}
    second = ledger.queue.claim("google_ads", "w2", lease=LEASE, limit=10)
    assert [d.change.lead_id for d in second] == ["L3", "L4"]
    assert ledger.queue.claim("google_ads", "w3", lease=LEASE, limit=10) == []


def test_the_keyset_never_hands_a_row_back_in_the_same_run(state_url: str) -> None:
    ledger = filled(state_url)
    (a,) = ledger.queue.claim("google_ads", "w", lease=LEASE, limit=1)
    ledger.queue.release([a.id], "w")  # held back: due again, but not in this pass
    after = (a.claim_key, a.id)
    rest = ledger.queue.claim("google_ads", "w", lease=LEASE, limit=10, after=after)
    assert [d.change.lead_id for d in rest] == ["L1", "L2", "L3", "L4"]
    assert ledger.queue.pending("google_ads")[0].id == a.id  # released: untried, pending


def test_a_ga4_clients_events_are_claimed_together_in_time_order(state_url: str) -> None:
    """One request per client (25 events) needs the client's events in one claim page."""
    ledger = Ledger.open(state_url)
    batch = []
    for i in range(7):  # clients a, b, c, a, b, c, c in time: each client's are far apart
        m = mapped(f"L{i}", at=T0 + timedelta(seconds=i))
        batch.append(replace(m, targets=[replace(m.targets[1], group="abcabcc"[i])]))
    ledger.changes.record(ledger.runs.start(), batch, "s", T0)
    pages, after = [], None
    while page := ledger.queue.claim(GA4, "w", lease=LEASE, limit=4, after=after):
        pages.append([(d.claim_key[0], d.change.lead_id) for d in page])
        after = (page[-1].claim_key, page[-1].id)
    # A full page ends before its last client, whose events may go on in the next page:
    # a, a, b, b fills the first, so b waits for the second, which c (three) would cut.
    assert pages == [
        [("a", "L0"), ("a", "L3")],
        [("b", "L1"), ("b", "L4")],
        [("c", "L2"), ("c", "L5"), ("c", "L6")],
    ]  # fmt: skip


def test_a_client_with_more_events_than_a_page_still_moves_on(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    batch = []
    for i in range(5):
        m = mapped(f"L{i}", at=T0 + timedelta(seconds=i))
        batch.append(replace(m, targets=[replace(m.targets[1], group="a")]))
    ledger.changes.record(ledger.runs.start(), batch, "s", T0)
    first = ledger.queue.claim(GA4, "w", lease=LEASE, limit=3)
    assert [d.change.lead_id for d in first] == ["L0", "L1", "L2"]  # the page is one client


def test_a_lapsed_lease_is_due_again_and_says_whose_it_was(state_url: str) -> None:
    ledger = filled(state_url, leads=2)
    ledger.queue.claim("google_ads", "dead-worker", lease=timedelta(seconds=0), limit=10)
    time.sleep(0.01)
    again = ledger.queue.claim("google_ads", "w2", lease=LEASE, limit=10)
    assert {d.in_flight_of for d in again} == {"dead-worker"}
    fresh = filled(state_url, leads=0)
    assert fresh.queue.claim("google_ads", "w3", lease=LEASE, limit=10) == []  # w2 holds them


def test_the_run_holding_the_store_alone_takes_every_orphan_at_once(state_url: str) -> None:
    ledger = filled(state_url, leads=2)
    ledger.queue.claim("google_ads", "killed", lease=LEASE, limit=10)
    again = ledger.queue.claim("google_ads", "next", lease=LEASE, limit=10, any_in_flight=True)
    assert [d.in_flight_of for d in again] == ["killed", "killed"]


def test_only_the_holder_settles_and_settled_rows_leave_the_queue(state_url: str) -> None:
    ledger = filled(state_url, leads=2)
    a, b = ledger.queue.claim("google_ads", "w1", lease=LEASE, limit=10)
    ledger.queue.settle([Outcome(a.id, Status.DELIVERED)], worker="w1")
    ledger.queue.settle([Outcome(b.id, Status.DELIVERED)], worker="someone-else")
    counts = ledger.queue.counts()["google_ads"]
    assert counts == {"delivered": 1, "in_flight": 1}


def test_a_worker_whose_lease_lapsed_leaves_the_row_to_the_one_that_took_it(
    state_url: str,
) -> None:
    ledger = filled(state_url, leads=1)
    (slow,) = ledger.queue.claim("google_ads", "w1", lease=timedelta(seconds=0), limit=10)
    time.sleep(0.01)
    (taken,) = ledger.queue.claim("google_ads", "w2", lease=LEASE, limit=10)
    assert ledger.queue.settle([Outcome(taken.id, Status.DELIVERED)], worker="w2") == {taken.id}
    # w1's slow request returns: its pending fate must not put the row back to be sent again.
    assert ledger.queue.settle([Outcome(slow.id, Status.PENDING)], worker="w1") == set()
    assert ledger.queue.renew([slow.id], "w1", lease=LEASE) == set()
    assert ledger.queue.counts()["google_ads"] == {"delivered": 1}


def test_a_renewed_lease_keeps_a_page_claimed_ahead_from_lapsing(state_url: str) -> None:
    ledger = filled(state_url, leads=2)
    a, b = ledger.queue.claim("google_ads", "w1", lease=timedelta(seconds=0), limit=10)
    assert ledger.queue.renew([a.id, b.id], "w1", lease=LEASE) == {a.id, b.id}
    time.sleep(0.01)
    assert ledger.queue.claim("google_ads", "w2", lease=LEASE, limit=10) == []  # still w1's


def test_failures_are_listed_and_requeued_after_a_fix(state_url: str) -> None:
    ledger = filled(state_url, leads=3)
    a, b, c = ledger.queue.claim("google_ads", "w", lease=LEASE, limit=10)
    ledger.queue.settle(
        [
            Outcome(a.id, Status.REJECTED, reason="click_not_found"),
            Outcome(b.id, Status.DEAD, reason="attempts_exhausted", error="503"),
            Outcome(c.id, Status.DELIVERED),
        ],
        worker="w",
    )
    found = ledger.queue.failures()
    assert {(f.id, f.status, f.reason) for f in found} == {
        (a.id, "rejected", "click_not_found"),
        (b.id, "dead", "attempts_exhausted"),
    }
    assert [f.id for f in ledger.queue.failures(reason="attempts_exhausted")] == [b.id]
    assert ledger.queue.failures(destination="ga4") == []
    assert ledger.queue.requeue(reason="attempts_exhausted") == 1
    (again,) = ledger.queue.pending("google_ads")
    assert (again.id, again.attempts) == (b.id, 0)
    assert ledger.queue.requeue(ids=[c.id]) == 0  # delivered rows are never re-queued


def test_concurrent_claims_never_share_a_row(state_url: str) -> None:
    """Four workers claiming at once (SKIP LOCKED on PostgreSQL): every row exactly once."""
    ledger = filled(state_url, leads=40)
    got: dict[str, list[int]] = {}

    def work(name: str) -> None:
        mine = Ledger.open(state_url)
        got[name] = []
        while page := mine.queue.claim("google_ads", name, lease=LEASE, limit=3):
            got[name] += [d.id for d in page]

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == len(set(claimed)) == 40
    assert ledger.queue.counts()["google_ads"] == {"in_flight": 40}


@pytest.fixture(params=["sqlite", "postgresql-icu"])
def locale_state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store on SQLite, or on a PostgreSQL database whose locale sorts text as people do
    (the official Docker image's default is en_US.utf8)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'connector.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("CONNECTOR_TEST_POSTGRES_URL not set (.ci/run starts a PostgreSQL server)")
    yield from _postgres_database("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")


def test_one_pass_claims_every_due_row_whatever_the_databases_locale(
    locale_state_url: str,
) -> None:
    # Client ids 1.2, 1.23 and 9 sort differently by bytes and by a locale; one is a
    # lapsed claim, so the pass merges the two due ranges and walks them by keyset.
    ledger = Ledger.open(locale_state_url)
    run = ledger.runs.start()

    def event(lead: str, client: str) -> Mapped:
        m = mapped(lead, at=T0)
        return replace(m, targets=[replace(m.targets[1], group=client)])

    ledger.changes.record(run, [event("B", "1.23")], "s", T0)
    ledger.queue.claim(GA4, "dead", lease=timedelta(0), limit=10)
    ledger.changes.record(run, [event("A", "1.2"), event("C", "9")], "s", T0)
    time.sleep(0.01)
    claimed, after = [], None
    while page := ledger.queue.claim(GA4, "w", lease=LEASE, limit=1, after=after):
        claimed += [d.change.lead_id for d in page]
        after = (page[-1].claim_key, page[-1].id)
    assert sorted(claimed) == ["A", "B", "C"]
