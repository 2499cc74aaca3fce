"""Request status checks: the real client against the emulator, results in a real ledger."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from connector.destinations import request_status
from connector.destinations.google_ads import GoogleAdsDestination
from connector.ledger.schema import deliveries
from connector.ledger.store import DELIVERED, PENDING, PROCESSING, REJECTED, Ledger, Outcome
from connector.mapping.translate import Mapped, StageChange, Target
from connector_sandbox.datamanager import STATUS_PATH, DataManagerEmulator, unavailable_fault
from tests.destinations.test_google_ads import make_destination

WON, MQL = "700000004", "700000001"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def _shared() -> Iterator[DataManagerEmulator]:
    with DataManagerEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(_shared: DataManagerEmulator) -> DataManagerEmulator:
    _shared.reset()
    return _shared


@pytest.fixture
def destination(emulator: DataManagerEmulator) -> Iterator[GoogleAdsDestination]:
    dest = make_destination(emulator, [])
    yield dest
    dest.close()


@pytest.fixture
def ledger(sqlite_url: str) -> Ledger:
    return Ledger.open(sqlite_url)


def change(n: int, stage: str = "won", action: str = WON, **attrs: object) -> Mapped:
    at = NOW - timedelta(hours=2)
    sc = StageChange(
        lead_id=f"00Q{n:012d}",
        crm_status=stage,
        stage=stage,
        changed_at=at,
        source_record_id=f"006{n:012d}",
        lead_created_at=at - timedelta(days=10),
        attributes={"gclid": f"gclid-{n}", **attrs},
    )
    return Mapped(sc, [Target("google_ads", action, 100.0, "EUR")])


def send(ledger: Ledger, destination: GoogleAdsDestination, batch: list[Mapped]) -> None:
    """Record, deliver and remember the requests, as a run does."""
    ledger.record(ledger.start_run(), batch, "s", NOW)
    outcomes = destination.deliver(ledger.pending("google_ads"))
    ledger.settle(outcomes)
    request_status.record(ledger, destination, outcomes)


def statuses(ledger: Ledger) -> dict[int, tuple[str, str | None]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.id, deliveries.c.status, deliveries.c.reason))
        return {r.id: (r.status, r.reason) for r in rows}


def test_processing_first_then_counts_per_request(
    ledger: Ledger, destination: GoogleAdsDestination, emulator: DataManagerEmulator
) -> None:
    emulator.unknown_clicks(["gclid-2"])
    send(ledger, destination, [change(1), change(2), change(3, "mql", MQL)])
    (sent,) = ledger.requests("google_ads")
    assert (sent["status"], sent["events"]) == (PROCESSING, 3)

    first = request_status.check(ledger, destination)
    assert (first.checked, first.finished) == (1, 0)
    assert ledger.requests("google_ads")[0]["checked_at"] is not None

    second = request_status.check(ledger, destination)
    assert second.as_dict() == {
        "checked": 1,
        "finished": 1,
        "failed_checks": 0,
        "processed": 3,
        "matched": 2,
        "errors": {"CLICK_NOT_FOUND": 1},
        "settled": {},  # one of two won events failed: no way to tell which
    }
    (done,) = ledger.requests("google_ads")
    assert (done["status"], done["processed"], done["matched"]) == ("PARTIAL_SUCCESS", 3, 2)
    by_action = {d["action"]: d for d in done["detail"]["destinations"]}
    assert by_action[WON]["errors"] == {"CLICK_NOT_FOUND": 1}
    assert by_action[MQL]["status"] == "SUCCESS"
    assert set(statuses(ledger).values()) == {(DELIVERED, None)}
    assert request_status.check(ledger, destination).checked == 0  # finished: not asked again


def test_a_click_google_cannot_find_is_rejected_as_not_attributable(
    ledger: Ledger, destination: GoogleAdsDestination, emulator: DataManagerEmulator
) -> None:
    emulator.unknown_clicks(["gclid-1", "gclid-2"])
    send(ledger, destination, [change(1), change(2), change(3, "mql", MQL)])
    request_status.check(ledger, destination)

    totals = request_status.check(ledger, destination)

    assert totals.settled == {"click_not_found": 2}
    assert sorted(statuses(ledger).values()) == [
        (DELIVERED, None),
        (REJECTED, "click_not_found"),
        (REJECTED, "click_not_found"),
    ]
    assert ledger.pending("google_ads") == []


def test_a_too_recent_click_waits_six_hours(
    ledger: Ledger, destination: GoogleAdsDestination, emulator: DataManagerEmulator
) -> None:
    emulator.clicks({"gclid-1": NOW - timedelta(hours=3)})
    send(ledger, destination, [change(1)])
    request_status.check(ledger, destination)
    request_status.check(ledger, destination)

    assert list(statuses(ledger).values()) == [(PENDING, None)]
    assert ledger.pending("google_ads") == []  # not before its time
    with ledger.engine.connect() as conn:
        not_before = conn.execute(select(deliveries.c.not_before)).scalar_one()
    assert timedelta(hours=5, minutes=59) < not_before - datetime.now(UTC) <= timedelta(hours=6)


def test_a_duplicate_stays_delivered_and_counts_as_matched(
    ledger: Ledger, destination: GoogleAdsDestination, emulator: DataManagerEmulator
) -> None:
    send(ledger, destination, [change(1)])
    # The same event again (a resend after a lost answer) is Google's duplicate.
    (row,) = statuses(ledger)
    ledger.settle([Outcome(row, PENDING)])
    outcomes = destination.deliver(ledger.pending("google_ads"))
    ledger.settle(outcomes)
    request_status.record(ledger, destination, outcomes)
    for _ in range(2):
        totals = request_status.check(ledger, destination)

    # Both requests finish in this check: the original and its duplicate.
    assert totals.errors == {"DUPLICATE_TRANSACTION_ID": 1}
    assert (totals.finished, totals.processed, totals.matched) == (2, 2, 2)
    assert statuses(ledger) == {row: (DELIVERED, None)}


def test_a_failed_check_leaves_the_request_processing_and_the_run_going(
    ledger: Ledger, destination: GoogleAdsDestination, emulator: DataManagerEmulator
) -> None:
    send(ledger, destination, [change(1)])
    send(ledger, destination, [change(2)])
    emulator.faults.push(unavailable_fault(path=STATUS_PATH))

    totals = request_status.check(ledger, destination)

    # Unreachable: the second request is not even tried this run.
    assert (totals.checked, totals.failed_checks) == (0, 1)
    assert [r["status"] for r in ledger.requests("google_ads")] == [PROCESSING, PROCESSING]
    assert request_status.check(ledger, destination).checked == 2


def test_an_unknown_request_id_is_given_up(
    ledger: Ledger, destination: GoogleAdsDestination
) -> None:
    ledger.save_requests("google_ads", {"not-a-request": 1})
    totals = request_status.check(ledger, destination)
    (row,) = ledger.requests("google_ads")
    assert (totals.failed_checks, row["status"]) == (1, request_status.UNKNOWN)
    assert row["detail"]["error"].startswith("400 INVALID_REQUEST_ID: ")
    assert ledger.processing_requests("google_ads", 10) == []


def test_checks_are_bounded_oldest_first(
    ledger: Ledger, destination: GoogleAdsDestination, emulator: DataManagerEmulator
) -> None:
    for n in range(3):
        send(ledger, destination, [change(n)])
    oldest = [r["request_id"] for r in ledger.requests("google_ads")]
    totals = request_status.check(ledger, destination, limit=2)
    assert totals.checked == 2
    checked = [r["request_id"] for r in ledger.requests("google_ads") if r["checked_at"]]
    assert checked == oldest[:2]


def test_only_data_manager_destinations_are_checked(ledger: Ledger) -> None:
    class Other:
        name = "ga4"

    ledger.save_requests("ga4", {"x": 1})
    request_status.record(ledger, Other(), [Outcome(1, DELIVERED, request_id="y")])
    assert request_status.check_all(ledger, [Other()]) == {}
    assert [r["request_id"] for r in ledger.requests("ga4")] == ["x"]
