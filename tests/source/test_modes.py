"""History mode and snapshot mode see the same journey; merged, deleted and contact-only
records follow the documented rules; the API budget stops a pull without losing its place.

The real simple-salesforce client against the emulator; assertions on the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from connector.ledger import Ledger
from connector.ledger.schema import deliveries, stage_changes
from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector.summary import RunSummary
from connector_sandbox.dataset import sf_datetime
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING
from tests.source.cases import snapshot_mapping

NOW = datetime.now(UTC).replace(microsecond=0)
LEAD, OPP = "00Q000000000001AAA", "006000000000001AAA"
MASTER, LOSER, GONE = "00Q000000000002AAA", "00Q000000000003AAA", "00Q000000000004AAA"
CONTACT, CONTACT_OPP = "003000000000001AAA", "006000000000009AAA"
WON_ACTION = "700000004"


def lead(lead_id: str, status: str = "Open", **extra: Any) -> dict[str, Any]:
    return {
        "Id": lead_id,
        "CreatedDate": sf_datetime(NOW - timedelta(days=3)),
        "SystemModstamp": sf_datetime(NOW - timedelta(days=3)),
        "Email": f"buyer.{lead_id[-4:]}@example.com",
        "Status": status,
        "CurrencyIsoCode": "EUR",
        "GCLID__c": f"Cj0KCQiA-modesTest_{lead_id[-6:]}",
        "GA_Client_ID__c": "111.222",
        "Consent_Ad_User_Data__c": "Granted",
        **extra,
    }


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox({"Lead": [lead(LEAD)]}) as box:
        yield box


def run(box: Sandbox, state_url: str, mapping: Path, **extra: Any) -> RunSummary:
    settings = box.settings(state_url, mapping, **extra)
    return sync(settings, load_mapping(mapping), SyncOptions())


def rows(state_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    engine = create_engine(state_url)
    with engine.connect() as conn:
        changes = [dict(r._mapping) for r in conn.execute(select(stage_changes))]
        sent = [dict(r._mapping) for r in conn.execute(select(deliveries))]
    engine.dispose()
    return sorted(changes, key=lambda c: c["changed_at"]), sent


class Journey:
    """Moves one lead through the funnel, writing history rows as an org with tracking would.

    Each step is a minute after the last (ending before now), so no two changes share a
    second: the emulator's clock would make that depend on how fast the test runs.
    """

    def __init__(self, box: Sandbox) -> None:
        self.sf = box.salesforce
        self.modstamps: list[datetime] = []
        self._clock = NOW - timedelta(hours=1)

    def lead_status(self, old: str, new: str, **extra: Any) -> None:
        self._change("Lead", LEAD, {"Status": new, **extra})
        self._history("LeadHistory", "LeadId", LEAD, "Status", old, new)

    def opportunity(self, changes: dict[str, Any], field: str, old: Any, new: Any) -> None:
        self._change("Opportunity", OPP, changes)
        self._history("OpportunityFieldHistory", "OpportunityId", OPP, field, old, new)

    def _change(self, sobject: str, rid: str, changes: dict[str, Any]) -> None:
        self._clock += timedelta(minutes=1)
        self.sf.update(sobject, rid, {**changes, "SystemModstamp": sf_datetime(self._clock)})
        self.modstamps.append(self._clock)

    def _history(self, sobject: str, ref: str, rid: str, field: str, old: Any, new: Any) -> None:
        row = {ref: rid, "Field": field, "OldValue": old, "NewValue": new}
        self.sf.insert(sobject, {**row, "CreatedDate": sf_datetime(self._clock)})


def test_snapshot_mode_sees_the_same_journey_as_history_mode(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    history_url = f"sqlite:///{tmp_path / 'history.db'}"
    snapshot_url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    snapshot = snapshot_mapping(tmp_path)

    def both() -> None:
        run(sandbox, history_url, MAPPING)
        run(sandbox, snapshot_url, snapshot)

    journey = Journey(sandbox)
    both()
    journey.lead_status("Open", "MQL")
    both()
    journey.lead_status("MQL", "SQL")
    both()
    expected, signed = (NOW + timedelta(days=30)).date(), (NOW - timedelta(days=2)).date()
    proposal = {"StageName": "Proposal", "Amount": 1000.0, "CurrencyIsoCode": "GBP"}
    proposal["CloseDate"] = expected.isoformat()
    stamp = sf_datetime(NOW - timedelta(hours=1, seconds=30))
    sandbox.salesforce.insert("Opportunity", {"Id": OPP, **proposal, "SystemModstamp": stamp})
    journey.lead_status("SQL", "Closed - Converted", IsConverted=True, ConvertedOpportunityId=OPP)
    both()
    won = {"StageName": "Closed Won", "IsWon": True, "IsClosed": True, "Amount": 30000.0}
    journey.opportunity(won | {"CloseDate": signed}, "StageName", "Proposal", "Closed Won")
    both()
    journey.opportunity({"Amount": 35000.0}, "Amount", 30000.0, 35000.0)
    both()
    reopened = {"StageName": "Negotiation", "IsWon": False, "IsClosed": False}
    journey.opportunity(reopened, "StageName", "Closed Won", "Negotiation")
    both()
    both()  # nothing new: nothing recorded twice

    by_history, history_sent = rows(history_url)
    by_snapshot, snapshot_sent = rows(snapshot_url)
    # Snapshot mode also sees the lead's first status (history has no row for a creation)
    # and the opportunity's first stage; from there on the sequence is the same.
    assert [c["stage"] for c in by_snapshot[:1]] == ["lead"]
    assert [c["crm_status"] for c in by_history] == [
        "MQL", "SQL", "Closed - Converted", "Closed Won", "Closed Won", "Negotiation"
    ]  # fmt: skip
    assert [c["crm_status"] for c in by_snapshot if c["crm_status"] != "Proposal"][1:] == [
        c["crm_status"] for c in by_history
    ]
    # ... at the records' modstamps.
    snapshot_times = [c["changed_at"] for c in by_snapshot if c["crm_status"] != "Proposal"]
    assert snapshot_times[1:] == journey.modstamps

    def conversions(sent: list[dict[str, Any]]) -> list[tuple[str, float | None]]:
        found = [
            (r["target"], r["value"])
            for r in sent
            if r["destination"] == "google_ads" and r["status"] == "delivered"
        ]
        return sorted(found, key=str)

    # The same conversions either way: MQL, SQL, opportunity, won, its restatement, and
    # the retraction when it was reopened.
    assert conversions(snapshot_sent) == conversions(history_sent)
    assert (WON_ACTION, 35000.0) in conversions(history_sent)
    assert (WON_ACTION, None) in conversions(history_sent)  # the retraction

    # Each opportunity change records the deal as it was read then (the report's pipeline
    # and the CloseDate its amount converts at), in both modes.
    def deals(changes: list[dict[str, Any]]) -> list[tuple[str, float, str, str]]:
        keys = ("deal_amount", "deal_currency", "close_date")
        opportunity = [c for c in changes if c["opportunity_id"]]
        return [(c["crm_status"], *(c["attributes"][k] for k in keys)) for c in opportunity]

    after = [
        ("Closed Won", 30000.0, "GBP", signed.isoformat()),
        ("Closed Won", 35000.0, "GBP", signed.isoformat()),
        ("Negotiation", 35000.0, "GBP", signed.isoformat()),
    ]
    assert deals(by_history) == after
    assert deals(by_snapshot) == [("Proposal", 1000.0, "GBP", expected.isoformat()), *after]


def test_merged_lead_continues_under_its_master_and_a_deleted_one_is_sent_nowhere(
    tmp_path: Path,
) -> None:
    leads = [lead(MASTER, "MQL"), lead(LOSER, "MQL"), lead(GONE, "MQL")]
    history = [
        {"LeadId": rid, "Field": "Status", "OldValue": "Open", "NewValue": status,
         "CreatedDate": sf_datetime(NOW - timedelta(hours=hours))}
        for rid, status, hours in ((LOSER, "SQL", 5), (GONE, "SQL", 4))
    ]  # fmt: skip
    with Sandbox({"Lead": leads, "LeadHistory": history}) as box:
        box.salesforce.merge("Lead", MASTER, LOSER)
        box.salesforce.delete("Lead", GONE)
        url = f"sqlite:///{tmp_path / 'state.db'}"
        run(box, url, MAPPING)
    changes, sent = rows(url)
    assert {(c["lead_id"], c["stage"]) for c in changes} == {(MASTER, "sql"), (GONE, "sql")}
    gone = next(c for c in changes if c["lead_id"] == GONE)
    assert gone["problems"] == {"lead": "deleted_in_crm"}
    assert {r["status"] for r in sent if r["change_id"] == gone["id"]} == {"skipped"}
    merged = next(c for c in changes if c["lead_id"] == MASTER)
    assert {r["status"] for r in sent if r["change_id"] == merged["id"]} == {"delivered"}


def test_an_opportunity_created_from_a_contact_belongs_to_the_lead_of_its_primary_contact(
    tmp_path: Path,
) -> None:
    tables = {
        "Lead": [lead(LEAD, "Closed - Converted", IsConverted=True, ConvertedContactId=CONTACT)],
        "Contact": [{"Id": CONTACT, "Email": "x@example.com"}],
        "Opportunity": [
            {"Id": CONTACT_OPP, "StageName": "Closed Won", "IsWon": True, "Amount": 900.0}
        ],
        "OpportunityContactRole": [
            {"OpportunityId": CONTACT_OPP, "ContactId": CONTACT, "IsPrimary": True}
        ],
        "OpportunityFieldHistory": [
            {"OpportunityId": CONTACT_OPP, "Field": "StageName", "OldValue": "Proposal",
             "NewValue": "Closed Won", "CreatedDate": sf_datetime(NOW - timedelta(hours=2))}
        ],
    }  # fmt: skip
    with Sandbox(tables) as box:
        url = f"sqlite:///{tmp_path / 'state.db'}"
        run(box, url, MAPPING)
        won = box.datamanager.conversions[(WON_ACTION, f"{LEAD}:won:{CONTACT_OPP}")]
    assert won["conversion_value"] == 900.0
    changes, _ = rows(url)
    assert [(c["lead_id"], c["stage"], c["problems"]) for c in changes] == [(LEAD, "won", {})]


def test_the_api_budget_stops_pulling_and_the_next_run_goes_on(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    history = [
        {"LeadId": LEAD, "Field": "Status", "OldValue": "Open", "NewValue": "MQL",
         "CreatedDate": sf_datetime(NOW - timedelta(hours=h))}
        for h in (30, 20, 10)
    ]  # fmt: skip
    for row in history:
        sandbox.salesforce.insert("LeadHistory", row)
    sandbox.salesforce.page_size = 1
    sandbox.salesforce.set_api_usage(89_998)  # of 100,000: the budget (0.9) is nearly spent
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = run(sandbox, url, MAPPING, salesforce={"max_api_share": 0.9})
    assert first.stopped and "cursor was kept" in first.stopped and first.status == "partial"
    assert 0 < first.pulled < 3
    cursor = Ledger.open(url).cursors.get("salesforce.LeadHistory")
    assert cursor is not None and cursor < NOW - timedelta(hours=5)
    sandbox.salesforce.set_api_usage(0)  # a new day
    second = run(sandbox, url, MAPPING, salesforce={"max_api_share": 0.9})
    assert second.stopped is None
    changes, _ = rows(url)
    assert len(changes) == 3 and len({c["changed_at"] for c in changes}) == 3


def test_a_stream_out_of_budget_before_its_first_page_stays_a_backfill(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.salesforce.insert(
        "LeadHistory",
        {"LeadId": LEAD, "Field": "Status", "OldValue": "Open", "NewValue": "MQL",
         "CreatedDate": sf_datetime(NOW - timedelta(hours=1))},
    )  # fmt: skip
    sandbox.salesforce.set_api_usage(95_000)  # of 100,000: past the budget (0.9) already
    url = f"sqlite:///{tmp_path / 'state.db'}"
    # The first call tells the usage: LeadHistory is read, OpportunityFieldHistory is not.
    first = run(sandbox, url, MAPPING, salesforce={"max_api_share": 0.9})
    assert first.stopped and first.pulled == 1
    cursors = Ledger.open(url).cursors
    assert cursors.get("salesforce.LeadHistory") is not None
    # No bookmark: the next run reads it as a first run (through Bulk, if it is large).
    assert cursors.get("salesforce.OpportunityFieldHistory") is None


def test_a_snapshot_read_stopped_by_the_budget_keeps_the_bookmark_of_the_rows_it_read(
    tmp_path: Path,
) -> None:
    ids = [f"00Q00000000001{i}AAA" for i in range(5)]
    mapping = snapshot_mapping(tmp_path)
    with Sandbox({"Lead": [lead(i) for i in ids]}) as box:
        url = f"sqlite:///{tmp_path / 'state.db'}"
        run(box, url, mapping)  # the leads' states recorded
        before = Ledger.open(url).cursors.get("salesforce.Lead")
        for n, i in enumerate(ids):  # touched, status unchanged: nothing to record
            box.salesforce.update("Lead", i, {"Email": f"n{n}@example.com"})
            time.sleep(0.01)
        box.salesforce.page_size = 1
        box.salesforce.set_api_usage(89_997)  # two more pages, then the budget (0.9) is spent
        time.sleep(1.1)  # the touches are a second past the bookmark
        second = run(box, url, mapping, salesforce={"max_api_share": 0.9, "overlap_seconds": 0})
        after = Ledger.open(url).cursors.get("salesforce.Lead")
    assert second.stopped
    assert before is not None and after is not None and after > before  # the next run goes on


def test_a_first_run_reads_from_the_configured_start_date(sandbox: Sandbox, tmp_path: Path) -> None:
    start = (NOW - timedelta(days=400)).date()
    sandbox.salesforce.insert(
        "LeadHistory",
        {"LeadId": LEAD, "Field": "Status", "OldValue": "Open", "NewValue": "MQL",
         "CreatedDate": sf_datetime(NOW - timedelta(days=200))},
    )  # fmt: skip
    url = f"sqlite:///{tmp_path / 'state.db'}"
    summary = run(sandbox, url, MAPPING, salesforce={"start_date": start.isoformat()})
    assert summary.since.startswith(start.isoformat())
    assert summary.pulled == 1  # older than the 90-day default, inside the start date


def test_check_online_tells_which_read_mode_works(sandbox: Sandbox, tmp_path: Path) -> None:
    from connector.check import online_checks

    sandbox.salesforce.tracked_fields["OpportunityFieldHistory"] = {"StageName"}
    url = f"sqlite:///{tmp_path / 'state.db'}"
    history = {
        c.name: c for c in online_checks(sandbox.settings(url, MAPPING), load_mapping(MAPPING))
    }
    assert history["salesforce Lead history mode"].ok
    advice = history["salesforce Opportunity history mode"]
    assert (
        not advice.ok
        and "Opportunity.Amount" in advice.detail
        and "mode: snapshot" in advice.detail
    )
    snapshot = snapshot_mapping(tmp_path)
    checks = online_checks(sandbox.settings(url, snapshot), load_mapping(snapshot))
    assert {c.name: c.ok for c in checks}["salesforce Opportunity snapshot mode"]


# A mass update (Data Loader, a Flow) may close both deals in one second.
@pytest.mark.parametrize("second_won_hours_ago", [2, 4], ids=["later", "same-second"])
def test_a_second_deal_won_through_the_same_contact_is_a_second_conversion(
    tmp_path: Path, second_won_hours_ago: int
) -> None:
    converted = lead(
        LEAD,
        "Closed - Converted",
        IsConverted=True,
        ConvertedOpportunityId=OPP,
        ConvertedContactId=CONTACT,
    )
    won = {"StageName": "Closed Won", "IsWon": True}
    tables = {
        "Lead": [converted],
        "Opportunity": [
            {"Id": OPP, **won, "Amount": 500.0},
            {"Id": CONTACT_OPP, **won, "Amount": 900.0},
        ],
        "OpportunityContactRole": [
            {"OpportunityId": CONTACT_OPP, "ContactId": CONTACT, "IsPrimary": True}
        ],
        "OpportunityFieldHistory": [
            {"OpportunityId": opp, "Field": "StageName", "OldValue": "Proposal",
             "NewValue": "Closed Won", "CreatedDate": sf_datetime(NOW - timedelta(hours=h))}
            for opp, h in ((OPP, 4), (CONTACT_OPP, second_won_hours_ago))
        ],
    }  # fmt: skip
    with Sandbox(tables) as box:
        run(box, f"sqlite:///{tmp_path / 'state.db'}", MAPPING)
        conversions = box.datamanager.conversions
    assert conversions[(WON_ACTION, f"{LEAD}:won:{OPP}")]["conversion_value"] == 500.0
    assert conversions[(WON_ACTION, f"{LEAD}:won:{CONTACT_OPP}")]["conversion_value"] == 900.0
