"""Request status checks: the real client against the emulator, results in a real ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from connector.core import Mapped, Outcome, StageChange, Status, Target
from connector.delivery import accepted_requests
from connector.destinations import request_status
from connector.destinations.ga4.measurement_protocol import GA4Destination
from connector.destinations.google_ads.datamanager import DataManagerDestination
from connector.ledger import PROCESSING, Ledger
from connector.ledger.schema import deliveries
from connector.settings import GA4Settings
from connector_sandbox.datamanager import STATUS_PATH, DataManagerEmulator, unavailable_fault

WON, MQL = "700000004", "700000001"
NOW = datetime.now(UTC).replace(microsecond=0)


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


def send(ledger: Ledger, destination: DataManagerDestination, batch: list[Mapped]) -> None:
    """Record, deliver and remember the requests, as a run does."""
    ledger.changes.record(ledger.runs.start(), batch, "s", NOW)
    outcomes = destination.deliver(ledger.queue.pending("google_ads"))
    ledger.queue.settle(outcomes)
    ledger.requests.save(destination.name, accepted_requests(outcomes))


def statuses(ledger: Ledger) -> dict[int, tuple[str, str | None]]:
    with ledger.db.engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.id, deliveries.c.status, deliveries.c.reason))
        return {r.id: (r.status, r.reason) for r in rows}


def test_processing_first_then_counts_per_request(
    ledger: Ledger, destination: DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    emulator.unknown_clicks(["gclid-2"])
    send(ledger, destination, [change(1), change(2), change(3, "mql", MQL)])
    (sent,) = ledger.requests.all("google_ads")
    assert (sent["status"], sent["events"]) == (PROCESSING, 3)

    first = request_status.check(ledger, destination)
    assert (first.checked, first.finished) == (1, 0)
    assert ledger.requests.all("google_ads")[0]["checked_at"] is not None

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
    (done,) = ledger.requests.all("google_ads")
    assert (done["status"], done["processed"], done["matched"]) == ("PARTIAL_SUCCESS", 3, 2)
    by_action = {d["action"]: d for d in done["detail"]["destinations"]}
    assert by_action[WON]["errors"] == {"CLICK_NOT_FOUND": 1}
    assert by_action[MQL]["status"] == "SUCCESS"
    assert set(statuses(ledger).values()) == {(Status.DELIVERED, None)}
    assert request_status.check(ledger, destination).checked == 0  # finished: not asked again


def test_a_click_google_cannot_find_is_rejected_as_not_attributable(
    ledger: Ledger, destination: DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    emulator.unknown_clicks(["gclid-1", "gclid-2"])
    send(ledger, destination, [change(1), change(2), change(3, "mql", MQL)])
    request_status.check(ledger, destination)

    totals = request_status.check(ledger, destination)

    assert totals.settled == {"click_not_found": 2}
    assert sorted(statuses(ledger).values()) == [
        (Status.DELIVERED, None),
        (Status.REJECTED, "click_not_found"),
        (Status.REJECTED, "click_not_found"),
    ]
    assert ledger.queue.pending("google_ads") == []


def test_a_crash_while_the_verdict_is_stored_leaves_the_request_to_be_checked_again(
    ledger: Ledger, destination: DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    from sqlalchemy import text

    emulator.unknown_clicks(["gclid-1"])
    send(ledger, destination, [change(1)])
    request_status.check(ledger, destination)  # PROCESSING at first
    with ledger.db.engine.begin() as conn:  # the store fails as the rows are settled
        conn.execute(
            text(
                "CREATE TRIGGER crash BEFORE UPDATE OF status ON deliveries "
                "BEGIN SELECT RAISE(ABORT, 'crash'); END"
            )
        )
    with pytest.raises(Exception, match="crash"):
        request_status.check(ledger, destination)
    with ledger.db.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER crash"))
    assert ledger.requests.all("google_ads")[0]["status"] == PROCESSING  # not lost
    assert request_status.check(ledger, destination).settled == {"click_not_found": 1}
    assert list(statuses(ledger).values()) == [(Status.REJECTED, "click_not_found")]


def test_a_too_recent_click_waits_six_hours(
    ledger: Ledger, destination: DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    emulator.clicks({"gclid-1": NOW - timedelta(hours=3)})
    send(ledger, destination, [change(1)])
    request_status.check(ledger, destination)
    request_status.check(ledger, destination)

    assert list(statuses(ledger).values()) == [(Status.PENDING, None)]
    assert ledger.queue.pending("google_ads") == []  # not before its time
    with ledger.db.engine.connect() as conn:
        not_before = conn.execute(select(deliveries.c.not_before)).scalar_one()
    assert timedelta(hours=5, minutes=59) < not_before - datetime.now(UTC) <= timedelta(hours=6)


def test_a_duplicate_stays_delivered_and_counts_as_matched(
    ledger: Ledger, destination: DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    send(ledger, destination, [change(1)])
    # The same event again (a resend after a lost answer) is Google's duplicate.
    (row,) = statuses(ledger)
    ledger.queue.settle([Outcome(row, Status.PENDING)])
    outcomes = destination.deliver(ledger.queue.pending("google_ads"))
    ledger.queue.settle(outcomes)
    ledger.requests.save(destination.name, accepted_requests(outcomes))
    for _ in range(2):
        totals = request_status.check(ledger, destination)

    # Both requests finish in this check: the original and its duplicate.
    assert totals.errors == {"DUPLICATE_TRANSACTION_ID": 1}
    assert (totals.finished, totals.processed, totals.matched) == (2, 2, 2)
    assert statuses(ledger) == {row: (Status.DELIVERED, None)}


def test_a_failed_check_leaves_the_request_processing_and_the_run_going(
    ledger: Ledger, destination: DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    send(ledger, destination, [change(1)])
    send(ledger, destination, [change(2)])
    emulator.faults.push(unavailable_fault(path=STATUS_PATH))

    totals = request_status.check(ledger, destination)

    # Unreachable: the second request is not even tried this run.
    assert (totals.checked, totals.failed_checks) == (0, 1)
    assert [r["status"] for r in ledger.requests.all("google_ads")] == [PROCESSING, PROCESSING]
    assert request_status.check(ledger, destination).checked == 2


def test_an_unknown_request_id_is_given_up(
    ledger: Ledger, destination: DataManagerDestination
) -> None:
    ledger.requests.save("google_ads", {"not-a-request": 1})
    totals = request_status.check(ledger, destination)
    (row,) = ledger.requests.all("google_ads")
    assert (totals.failed_checks, row["status"]) == (1, request_status.UNKNOWN)
    assert row["detail"]["error"].startswith("400 INVALID_REQUEST_ID: ")
    assert ledger.requests.processing("google_ads", 10) == []


def test_checks_are_bounded_oldest_first(
    ledger: Ledger, destination: DataManagerDestination, emulator: DataManagerEmulator
) -> None:
    for n in range(3):
        send(ledger, destination, [change(n)])
    oldest = [r["request_id"] for r in ledger.requests.all("google_ads")]
    totals = request_status.check(ledger, destination, limit=2)
    assert totals.checked == 2
    checked = [r["request_id"] for r in ledger.requests.all("google_ads") if r["checked_at"]]
    assert checked == oldest[:2]


def test_only_data_manager_destinations_are_checked(
    ledger: Ledger, destination: DataManagerDestination
) -> None:
    ga4 = GA4Destination(GA4Settings(measurement_id="G-TEST", api_secret=SecretStr("s")))
    assert (destination.capabilities.request_status, ga4.capabilities.request_status) == (
        True,
        False,
    )
    ledger.requests.save("ga4", {"x": 1})
    assert ga4.check_requests(ledger) is None
    assert [r["request_id"] for r in ledger.requests.all("ga4")] == ["x"]
    ga4.close()
