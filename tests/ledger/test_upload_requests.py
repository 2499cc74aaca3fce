"""The ledger's upload requests and adjustment lookups, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.ledger.store import (
    DELIVERED,
    PENDING,
    PROCESSING,
    REJECTED,
    Delivery,
    Ledger,
    Outcome,
)
from connector.mapping.translate import Mapped, StageChange, Target

T0 = datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)
WON = "700000004"


def change(lead: str, stage: str, at: datetime, **attrs: object) -> Mapped:
    sc = StageChange(
        lead_id=lead,
        crm_status=stage.upper(),
        stage=stage,
        changed_at=at,
        source_record_id=f"006{lead}{stage}",
        lead_created_at=T0 - timedelta(days=30),
        attributes={"gclid": "Cj0KCQiA-abcdEFGH_1234567890", **attrs},
        problems={},
    )
    value = None if attrs.get("retracts") else 1000.0
    return Mapped(sc, [Target("google_ads", WON, value, "EUR" if value else None)])


def won(lead: str, at: datetime = T0, **attrs: object) -> Mapped:
    return change(lead, "won", at, **attrs)


def retraction(lead: str, at: datetime = T0 + timedelta(days=2)) -> Mapped:
    return change(lead, "opportunity", at, retracts=f"{lead}:won")


def pending_by_lead(ledger: Ledger) -> dict[tuple[str, str], Delivery]:
    rows = ledger.pending("google_ads")
    return {(d.change.lead_id, d.change.stage): d for d in rows if not d.change.restatement}


def test_requests_are_stored_checked_oldest_first_and_finished(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    ledger.save_requests("google_ads", {"r2": 3}, sent_at=T0 + timedelta(minutes=1))
    ledger.save_requests("google_ads", {"r1": 2}, sent_at=T0)
    ledger.save_requests("ga4", {"other": 1})
    ledger.save_requests("google_ads", {})

    assert ledger.processing_requests("google_ads", limit=10) == ["r1", "r2"]
    assert ledger.processing_requests("google_ads", limit=1) == ["r1"]

    ledger.update_request("r1", PROCESSING)
    detail = {"destinations": [{"action": WON, "errors": {"CLICK_NOT_FOUND": 1}}]}
    ledger.update_request("r2", "PARTIAL_SUCCESS", processed=3, matched=2, detail=detail)

    assert ledger.processing_requests("google_ads", limit=10) == ["r1"]
    first, second = ledger.requests("google_ads")
    assert (first["status"], first["processed"], first["events"]) == (PROCESSING, None, 2)
    assert first["checked_at"] is not None and first["sent_at"] == T0
    assert (second["status"], second["processed"], second["matched"]) == ("PARTIAL_SUCCESS", 3, 2)
    assert second["detail"] == detail


def test_request_deliveries_by_target(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    ledger.record(ledger.start_run(), [won("A"), won("B")], "s", T0)
    a, b = ledger.pending("google_ads")
    ledger.settle(
        [Outcome(a.id, DELIVERED, request_id="r1"), Outcome(b.id, DELIVERED, request_id="r2")]
    )
    assert ledger.request_deliveries("r1") == {WON: [a.id]}
    assert ledger.request_deliveries("nope") == {}


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
    ledger.record(ledger.start_run(), batch, "s", T0)
    rows = pending_by_lead(ledger)
    ledger.settle(
        [
            Outcome(rows["A", "won"].id, DELIVERED),
            Outcome(rows["C", "won"].id, REJECTED, reason="click_not_found"),
        ]
    )
    adjustments = [d for d in ledger.pending("google_ads") if d.change.stage != "won"]
    restatement = next(d for d in ledger.pending("google_ads") if d.change.restatement)

    found = ledger.adjusted_status([*adjustments, restatement])

    by_lead = {d.change.lead_id: found[d.id] for d in adjustments}
    assert by_lead == {"A": DELIVERED, "B": PENDING, "C": None, "D": None}
    assert found[restatement.id] == DELIVERED  # the original, not the restatement itself
    assert ledger.adjusted_status([]) == {}


def test_a_restatement_alone_has_nothing_to_adjust(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    ledger.record(ledger.start_run(), [won("A", restatement=True)], "s", T0)
    (restatement,) = ledger.pending("google_ads")
    assert ledger.adjusted_status([restatement]) == {restatement.id: None}
