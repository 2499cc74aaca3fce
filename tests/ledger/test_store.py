"""The ledger on SQLite and PostgreSQL: stored once, cursor moves with its rows."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.core import Mapped, Outcome, StageChange, Status, Target
from connector.errors import ConfigError
from connector.ledger import Ledger
from connector.ledger.changes import claim_key

T0 = datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)


def mapped(lead: str, stage: str = "mql", at: datetime = T0, skip: str | None = None) -> Mapped:
    change = StageChange(
        lead_id=lead,
        crm_status=stage.upper(),
        stage=stage,
        changed_at=at,
        source_record_id=f"017{lead}",
        lead_created_at=at - timedelta(days=3),
        attributes={"gclid": "Cj0KCQiA-abcdEFGH_1234567890", "email_sha256": "ab" * 32},
        problems={},
    )
    targets = [
        Target("google_ads", "700000001", 50.0, "EUR"),
        Target("ga4", "qualify_lead", 50.0, "EUR", skip_reason=skip),
    ]
    return Mapped(change, targets)


def test_changes_are_stored_once_and_cursor_moves_with_them(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    run = ledger.runs.start()
    first = ledger.changes.record(run, [mapped("A"), mapped("B")], "s", T0)
    again = ledger.changes.record(run, [mapped("A"), mapped("C")], "s", T0 + timedelta(seconds=1))
    assert len(first) == 2 and [m.change.lead_id for m in again] == ["C"]
    assert ledger.cursors.get("s") == T0 + timedelta(seconds=1)
    assert {d.change.lead_id for d in ledger.queue.pending("google_ads")} == {"A", "B", "C"}


def deal(lead: str, opportunity: str, stage: str = "won") -> Mapped:
    m = mapped(lead, stage)
    return replace(m, change=replace(m.change, opportunity_id=opportunity))


def test_two_deals_of_one_lead_won_in_one_second_are_two_changes(state_url: str) -> None:
    # A mass update (Data Loader, a Flow) closes both of a contact's deals in one second.
    ledger = Ledger.open(state_url)
    run = ledger.runs.start()
    first = ledger.changes.record(run, [deal("A", "006A"), deal("A", "006B")], "s", T0)
    again = ledger.changes.record(run, [deal("A", "006A"), deal("A", "006B"), mapped("A")], "s", T0)
    assert len(first) == 2 and [m.change.opportunity_id for m in again] == [None]
    deals = {d.change.opportunity_id for d in ledger.queue.pending("google_ads")}
    assert deals == {"006A", "006B", None}


def test_cursor_never_moves_backwards(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    run = ledger.runs.start()
    ledger.changes.record(run, [mapped("A")], "s", T0)
    ledger.changes.record(run, [], "s", T0 - timedelta(hours=1))
    assert ledger.cursors.get("s") == T0


def test_skipped_targets_get_a_reason_and_settled_rows_leave_pending(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    run = ledger.runs.start()
    ledger.changes.record(run, [mapped("A", skip="too_old_for_ga4")], "s", T0)
    assert ledger.queue.pending("ga4") == []
    (pending,) = ledger.queue.pending("google_ads")
    assert pending.change.changed_at == T0  # timezone survives the round trip
    ledger.queue.settle([Outcome(pending.id, Status.DELIVERED, request_id="req-1")])
    assert ledger.queue.pending("google_ads") == []
    assert ledger.queue.counts() == {
        "google_ads": {Status.DELIVERED: 1},
        "ga4": {Status.SKIPPED: 1},
    }
    ledger.runs.finish(run, "ok", {"new": 1})


def test_transient_failure_keeps_row_pending_and_counts_attempts(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    ledger.changes.record(ledger.runs.start(), [mapped("A")], "s", T0)
    (pending,) = ledger.queue.pending("google_ads")
    ledger.queue.settle([Outcome(pending.id, Status.PENDING, error="503")])
    (again,) = ledger.queue.pending("google_ads")
    assert again.attempts == 1


def test_known_finds_recorded_keys(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    ledger.changes.record(ledger.runs.start(), [mapped("A")], "s", T0)
    keys = {("A", "mql", T0, ""), ("B", "mql", T0, ""), ("A", "mql", T0, "006A")}
    assert ledger.changes.known(keys) == {("A", "mql", T0, "")}


def test_readonly_open_of_a_missing_sqlite_store_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    ledger = Ledger.open(f"sqlite:///{path}", readonly=True)
    assert ledger.cursors.get("s") is None
    assert ledger.changes.known({("A", "mql", T0, "")}) == set()
    assert not path.exists()


def test_unusable_state_url_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="CONNECTOR_STATE_URL"):
        Ledger.open("nosuchdb://x")


def test_a_version_1_store_is_upgraded_in_place(state_url: str) -> None:
    from sqlalchemy import inspect, text, update

    from connector.ledger.schema import SCHEMA_VERSION, stage_changes

    ledger = Ledger.open(state_url)
    run_id = ledger.runs.start()
    ledger.changes.record(run_id, [mapped("00Q1")], "s", T0)
    with ledger.db.engine.begin() as conn:  # back to what a version-1 connector wrote
        conn.execute(text("DROP INDEX uq_stage_change_deal"))  # it names opportunity_id
        for column in ("opportunity_id", "restatement", "retracts"):
            conn.execute(text(f"ALTER TABLE stage_changes DROP COLUMN {column}"))
        flags = {"opportunity_id": "006A", "restatement": True, "gclid": "Cj0KCQiA-abc"}
        conn.execute(update(stage_changes).values(attributes=flags))
        conn.execute(text("DROP INDEX ix_deliveries_request"))
        conn.execute(text("ALTER TABLE deliveries DROP COLUMN not_before"))
        conn.execute(text("DROP TABLE upload_requests"))
        conn.execute(text("DROP TABLE record_states"))
        conn.execute(text("UPDATE schema_version SET version = 1"))
    ledger.db.engine.dispose()
    upgraded = Ledger.open(state_url)
    with upgraded.db.engine.connect() as conn:
        found = inspect(conn)
        assert "not_before" in {c["name"] for c in found.get_columns("deliveries")}
        assert "ix_deliveries_request" in {i["name"] for i in found.get_indexes("deliveries")}
        assert found.has_table("upload_requests") and found.has_table("record_states")
        assert conn.execute(text("SELECT version FROM schema_version")).scalar() == SCHEMA_VERSION
    (pending,) = upgraded.queue.pending("google_ads")  # the old rows are still there
    # Flags that rode in attributes (schema 2) are typed fields now.
    assert (pending.change.opportunity_id, pending.change.restatement) == ("006A", True)
    assert pending.change.attributes == {"gclid": "Cj0KCQiA-abc"}


def test_a_version_4_store_gives_its_waiting_rows_their_place_in_the_queue(
    state_url: str,
) -> None:
    from sqlalchemy import text, update

    from connector.ledger.schema import stage_changes

    ledger = Ledger.open(state_url)
    ledger.changes.record(ledger.runs.start(), [mapped("00Q1")], "s", T0)
    with ledger.db.engine.begin() as conn:  # back to what a version-4 connector wrote
        conn.execute(text("DROP INDEX ix_deliveries_claim"))
        conn.execute(text("ALTER TABLE deliveries DROP COLUMN claim_key"))
        conn.execute(update(stage_changes).values(attributes={"ga_client_id": "123.456"}))
        conn.execute(text("UPDATE schema_version SET version = 4"))
    ledger.db.engine.dispose()
    upgraded = Ledger.open(state_url)
    # GA4's by client id, then change time; the others' by change time.
    assert [d.claim_key for d in upgraded.queue.pending("ga4")] == [
        f"123.456|{T0:%Y-%m-%dT%H:%M:%S}.000000"
    ]
    assert [d.claim_key for d in upgraded.queue.pending("google_ads")] == [
        f"|{T0:%Y-%m-%dT%H:%M:%S}.000000"
    ]


def test_a_version_6_store_loses_the_index_its_claim_index_covers(state_url: str) -> None:
    from sqlalchemy import inspect, text

    ledger = Ledger.open(state_url)
    with ledger.db.engine.begin() as conn:  # back to what a version-6 connector wrote
        conn.execute(text("CREATE INDEX ix_deliveries_status ON deliveries (destination, status)"))
        conn.execute(text("UPDATE schema_version SET version = 6"))
    ledger.db.engine.dispose()
    upgraded = Ledger.open(state_url)
    with upgraded.db.engine.connect() as conn:
        names = {i["name"] for i in inspect(conn).get_indexes("deliveries")}
    assert "ix_deliveries_status" not in names and "ix_deliveries_claim" in names


def test_a_version_7_store_keys_its_changes_by_deal_too(state_url: str) -> None:
    from sqlalchemy import text

    ledger = Ledger.open(state_url)
    ledger.changes.record(ledger.runs.start(), [deal("A", "006A")], "s", T0)
    with ledger.db.engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = 7"))
    ledger.db.engine.dispose()
    _old_unique_key(ledger)  # back to what a version-7 connector wrote
    upgraded = Ledger.open(state_url)
    if upgraded.db.sqlite_path is not None:  # built again: every delivery finds its change
        with upgraded.db.engine.connect() as conn:
            assert not conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    (kept,) = upgraded.queue.pending("google_ads")  # its delivery still finds its change
    assert kept.change.opportunity_id == "006A"
    new = upgraded.changes.record(upgraded.runs.start(), [deal("A", "006B")], "s", T0)
    assert len(new) == 1 and len(upgraded.queue.pending("google_ads")) == 2


def _old_unique_key(ledger: Ledger) -> None:
    """stage_changes as schema 7 had it: unique on (lead, stage, time), the deal left out."""
    from sqlalchemy import text

    drop = "DROP INDEX uq_stage_change_deal"
    if ledger.db.sqlite_path is None:
        with ledger.db.engine.begin() as conn:
            conn.execute(text(drop))
            conn.execute(
                text(
                    "ALTER TABLE stage_changes ADD CONSTRAINT uq_stage_change "
                    "UNIQUE (lead_id, stage, changed_at)"
                )
            )
        return
    # SQLite adds no constraint to a table: it is made again with it. A plain connection
    # has foreign keys off, and the legacy rename leaves the deliveries' references alone.
    conn = sqlite3.connect(ledger.db.sqlite_path)
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'stage_changes'").fetchone()
    old = (
        sql.rstrip().removesuffix(")")
        + ", CONSTRAINT uq_stage_change UNIQUE (lead_id, stage, changed_at))"
    )
    conn.executescript(
        f"""PRAGMA legacy_alter_table=ON; BEGIN; {drop}; DROP INDEX ix_stage_changes_changed_at;
        ALTER TABLE stage_changes RENAME TO stage_changes_v7; {old};
        INSERT INTO stage_changes SELECT * FROM stage_changes_v7; DROP TABLE stage_changes_v7;
        COMMIT;"""
    )
    conn.close()


def test_a_claim_key_is_the_group_then_the_utc_change_time_to_the_microsecond() -> None:
    paris = timezone(timedelta(hours=1))
    assert claim_key("123.456", T0) == "123.456|2026-11-20T14:03:11.000000"
    assert claim_key("", T0.astimezone(paris) + timedelta(microseconds=5)) == (
        "|2026-11-20T14:03:11.000005"
    )
    for at in (T0, T0 + timedelta(days=400, microseconds=999_999)):  # as stores hold them
        assert claim_key("g", at) == f"g|{at:%Y-%m-%dT%H:%M:%S.%f}"


def test_reached_answers_which_conversions_a_lead_reached_and_took_back(
    state_url: str, tmp_path: Path
) -> None:
    ledger = Ledger.open(state_url)
    run = ledger.runs.start()
    won = mapped("A", "won", T0)
    won = Mapped(replace(won.change, opportunity_id="006A"), won.targets)
    restated = Mapped(
        replace(won.change, changed_at=T0 + timedelta(minutes=1), restatement=True), []
    )
    retracts = replace(won.change, stage="opportunity", changed_at=T0 + timedelta(minutes=2))
    reopened = Mapped(replace(retracts, retracts="A:won:006A"), [])
    ledger.changes.record(run, [mapped("A"), won, restated, reopened, mapped("B")], "s", T0)
    assert sorted(ledger.changes.reached(["A"])) == [
        ("A:mql", T0, None),
        ("A:opportunity:006A", T0 + timedelta(minutes=2), "A:won:006A"),
        ("A:won:006A", T0, None),  # the restatement reached nothing new
    ]
    absent = Ledger.open(f"sqlite:///{tmp_path / 'absent.db'}", readonly=True)
    assert absent.changes.reached(["A"]) == []  # a dry run on a store never written
