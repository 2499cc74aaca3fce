"""The ledger's upload requests and adjustment lookups, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.core import Delivery, Mapped, Outcome, StageChange, Status, Target
from connector.destinations.google_ads.adjustments import conversion_history
from connector.ledger import PROCESSING, Ledger

T0 = datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)
WON = "700000004"


def change(
    lead: str, stage: str, at: datetime, *, restatement: bool = False, retracts: str | None = None
) -> Mapped:
    sc = StageChange(
        lead_id=lead,
        crm_status=stage.upper(),
        stage=stage,
        changed_at=at,
        source_record_id=f"006{lead}{stage}",
        lead_created_at=T0 - timedelta(days=30),
        attributes={"gclid": "Cj0KCQiA-abcdEFGH_1234567890"},
        problems={},
        restatement=restatement,
        retracts=retracts,
    )
    value = None if retracts else 1000.0
    return Mapped(sc, [Target("google_ads", WON, value, "EUR" if value else None)])


def won(lead: str, at: datetime = T0, *, restatement: bool = False) -> Mapped:
    return change(lead, "won", at, restatement=restatement)


def retraction(lead: str, at: datetime = T0 + timedelta(days=2)) -> Mapped:
    return change(lead, "opportunity", at, retracts=f"{lead}:won")


def adjusted(ledger: Ledger, batch: list[Delivery]) -> dict[int, Status | None]:
    """For each delivery, the status of the conversion it adjusts."""
    return {i: h.adjusted for i, h in conversion_history(ledger, batch).items()}


def pending_by_lead(ledger: Ledger) -> dict[tuple[str, str], Delivery]:
    rows = ledger.queue.pending("google_ads")
    return {(d.change.lead_id, d.change.stage): d for d in rows if not d.change.restatement}


def test_requests_are_stored_checked_oldest_first_and_finished(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    ledger.requests.save("google_ads", {"r2": 3}, sent_at=T0 + timedelta(minutes=1))
    ledger.requests.save("google_ads", {"r1": 2}, sent_at=T0)
    ledger.requests.save("ga4", {"other": 1})
    ledger.requests.save("google_ads", {})

    assert ledger.requests.processing("google_ads", limit=10) == ["r1", "r2"]
    assert ledger.requests.processing("google_ads", limit=1) == ["r1"]

    ledger.requests.update("r1", PROCESSING)
    detail = {"destinations": [{"action": WON, "errors": {"CLICK_NOT_FOUND": 1}}]}
    ledger.requests.update("r2", "PARTIAL_SUCCESS", processed=3, matched=2, detail=detail)

    assert ledger.requests.processing("google_ads", limit=10) == ["r1"]
    first, second = ledger.requests.all("google_ads")
    assert (first["status"], first["processed"], first["events"]) == (PROCESSING, None, 2)
    assert first["checked_at"] is not None and first["sent_at"] == T0
    assert (second["status"], second["processed"], second["matched"]) == ("PARTIAL_SUCCESS", 3, 2)
    assert second["detail"] == detail


def test_request_deliveries_by_target(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    ledger.changes.record(ledger.runs.start(), [won("A"), won("B")], "s", T0)
    a, b = ledger.queue.pending("google_ads")
    ledger.queue.settle(
        [
            Outcome(a.id, Status.DELIVERED, request_id="r1"),
            Outcome(b.id, Status.DELIVERED, request_id="r2"),
        ]
    )
    assert ledger.queue.of_request("r1") == {WON: [a.id]}
    assert ledger.queue.of_request("nope") == {}


def test_adjusted_status_follows_the_won_conversion(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    later = T0 + timedelta(days=1)
    batch = [
        won("A"),  # delivered
        won("A", later, restatement=True),
        retraction("A"),
        won("B"),  # still pending
        retraction("B"),
        won("C"),  # rejected: Google never had it
        retraction("C"),
        retraction("D"),  # never won at all
    ]
    ledger.changes.record(ledger.runs.start(), batch, "s", T0)
    rows = pending_by_lead(ledger)
    ledger.queue.settle(
        [
            Outcome(rows["A", "won"].id, Status.DELIVERED),
            Outcome(rows["C", "won"].id, Status.REJECTED, reason="click_not_found"),
        ]
    )
    adjustments = [d for d in ledger.queue.pending("google_ads") if d.change.stage != "won"]
    restatement = next(d for d in ledger.queue.pending("google_ads") if d.change.restatement)

    found = adjusted(ledger, [*adjustments, restatement])

    by_lead = {d.change.lead_id: found[d.id] for d in adjustments}
    assert by_lead == {"A": Status.DELIVERED, "B": Status.PENDING, "C": None, "D": None}
    assert found[restatement.id] == Status.DELIVERED  # the original, not the restatement itself
    assert adjusted(ledger, []) == {}


def test_a_restatement_alone_has_nothing_to_adjust(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    ledger.changes.record(ledger.runs.start(), [won("A", restatement=True)], "s", T0)
    (restatement,) = ledger.queue.pending("google_ads")
    assert adjusted(ledger, [restatement]) == {restatement.id: None}
