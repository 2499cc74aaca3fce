"""End to end through the legacy Google Ads API path (`upload_api = ads_api`): the real
GoogleAdsClient against the emulator, asserting on what it received and on the ledger.

One scenario, run once for the module (two syncs are the expensive part):
1. a first sync, with one lead's click unknown to Google and one too fresh to import;
2. a won deal's amount is restated and another won deal reopened in Salesforce;
3. a second sync right after.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select

from connector.core import conversion_id
from connector.destinations.google_ads.legacy import conversion_date_time
from connector.ledger.schema import deliveries, stage_changes
from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector.summary import RunSummary
from connector_sandbox.dataset import generate, sf_datetime
from connector_sandbox.google_ads_api import StoredConversion
from connector_sandbox.stack import ACCOUNT_TIME_ZONE, OPERATING_ACCOUNT, Sandbox
from tests.conftest import MAPPING

NOW = datetime.now(UTC).replace(microsecond=0)
WON_ACTION = f"customers/{OPERATING_ACCOUNT}/conversionActions/700000004"
RESTATED_AMOUNT = 123456.0


@dataclass
class Scenario:
    box: Sandbox
    db: Path
    tables: dict[str, list[dict[str, Any]]]
    first: RunSummary
    second: RunSummary
    after_first: dict[tuple[str, str], StoredConversion]  # copies, by (action, order id)
    uploads_after_first: int
    not_found_gclid: str
    too_recent_gclid: str
    restated_order: str
    retracted_order: str
    log_text: str


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + " " + str(record.__dict__))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    tables = generate(n_leads=300, seed=5, now=NOW).tables()
    db = tmp_path_factory.mktemp("ads-api") / "connector.db"
    capture = _Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        with Sandbox({k: [dict(r) for r in v] for k, v in tables.items()}) as box:
            yield _play(box, db, tables, capture)
    finally:
        root.removeHandler(capture)
        root.setLevel(level)


def _play(
    box: Sandbox, db: Path, tables: dict[str, list[dict[str, Any]]], capture: _Capture
) -> Scenario:
    settings = box.settings(f"sqlite:///{db}", MAPPING, upload_api="ads_api")
    mapping = load_mapping(MAPPING)
    not_found, too_recent = _two_clicked_leads(tables)
    box.google_ads_api.mark_clicks(not_found=[not_found], too_recent=[too_recent])
    first = sync(settings, mapping, SyncOptions())
    after_first = {
        (c.conversion_action, c.order_id): StoredConversion(**vars(c))
        for c in box.google_ads_api.conversions
    }
    uploads = len(box.google_ads_api.upload_requests)
    restated, retracted = _two_delivered_won_deals(box, db, exclude={not_found, too_recent})
    _restate(box, restated, RESTATED_AMOUNT)
    _reopen(box, retracted)
    second = sync(settings, mapping, SyncOptions())
    lead_of = {str(r["ConvertedOpportunityId"]): str(r["Id"]) for r in tables["Lead"]}
    return Scenario(
        box=box,
        db=db,
        tables=tables,
        first=first,
        second=second,
        after_first=after_first,
        uploads_after_first=uploads,
        not_found_gclid=not_found,
        too_recent_gclid=too_recent,
        restated_order=f"{lead_of[str(restated['Id'])]}:won:{restated['Id']}",
        retracted_order=f"{lead_of[str(retracted['Id'])]}:won:{retracted['Id']}",
        log_text="\n".join(capture.lines),
    )


def _two_clicked_leads(tables: dict[str, list[dict[str, Any]]]) -> tuple[str, str]:
    """gclids of two leads with a recent MQL change that is sure to be sent."""
    recent = sf_datetime(NOW - timedelta(days=30))
    leads = {str(r["Id"]): r for r in tables["Lead"] if _sendable(r)}
    picked = [
        str(leads[str(h["LeadId"])]["GCLID__c"])
        for h in tables["LeadHistory"]
        if h["NewValue"] == "MQL" and str(h["CreatedDate"]) > recent and h["LeadId"] in leads
    ]
    return picked[0], picked[1]


def _sendable(lead: dict[str, Any]) -> bool:
    gclid = str(lead.get("GCLID__c") or "")
    return (
        bool(gclid)
        and " " not in gclid
        and "!" not in gclid
        and lead.get("Consent_Ad_User_Data__c") == "Granted"
        and lead.get("CurrencyIsoCode") in ("EUR", "USD", "GBP")
    )


def _two_delivered_won_deals(
    box: Sandbox, db: Path, exclude: set[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    changes, rows = ledger(db)
    delivered_won = {
        changes[r["change_id"]]["lead_id"]
        for r in rows
        if r["destination"] == "google_ads"
        and r["status"] == "delivered"
        and changes[r["change_id"]]["stage"] == "won"
    }
    leads = {str(r["Id"]): r for r in box.salesforce.records("Lead")}
    opportunities = {str(o["Id"]): o for o in box.salesforce.records("Opportunity")}
    won = [
        opportunities[str(leads[lead]["ConvertedOpportunityId"])]
        for lead in sorted(delivered_won)
        if leads[lead].get("GCLID__c") not in exclude
    ]
    assert len(won) >= 2, "the dataset needs two delivered won deals"
    return won[0], won[1]


def _restate(box: Sandbox, opportunity: dict[str, Any], amount: float) -> None:
    box.salesforce.insert(
        "OpportunityFieldHistory",
        {
            "OpportunityId": opportunity["Id"],
            "Field": "Amount",
            "OldValue": opportunity["Amount"],
            "NewValue": amount,
            "CreatedDate": sf_datetime(datetime.now(UTC) - timedelta(seconds=2)),
            "IsDeleted": False,
        },
    )
    box.salesforce.update("Opportunity", str(opportunity["Id"]), {"Amount": amount})


def _reopen(box: Sandbox, opportunity: dict[str, Any]) -> None:
    box.salesforce.insert(
        "OpportunityFieldHistory",
        {
            "OpportunityId": opportunity["Id"],
            "Field": "StageName",
            "OldValue": "Closed Won",
            "NewValue": "Negotiation",
            "CreatedDate": sf_datetime(datetime.now(UTC) - timedelta(seconds=1)),
            "IsDeleted": False,
        },
    )
    box.salesforce.update(
        "Opportunity",
        str(opportunity["Id"]),
        {"StageName": "Negotiation", "IsWon": False, "IsClosed": False},
    )


def ledger(db: Path) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        changes = {r.id: dict(r._mapping) for r in conn.execute(select(stage_changes))}
        rows = [dict(r._mapping) for r in conn.execute(select(deliveries))]
    engine.dispose()
    return changes, rows


def google_rows(db: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(delivery, its stage change) of every Google Ads delivery."""
    changes, rows = ledger(db)
    return [(r, changes[r["change_id"]]) for r in rows if r["destination"] == "google_ads"]


def _adjusts(change: dict[str, Any]) -> bool:
    return bool(change["retracts"] or change["restatement"])


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- tests


def test_every_eligible_won_deal_arrives_once_with_value_currency_and_account_time(
    scenario: Scenario,
) -> None:
    zone = ZoneInfo(ACCOUNT_TIME_ZONE)
    won = [(d, c) for d, c in google_rows(scenario.db) if c["stage"] == "won" and not _adjusts(c)]
    sent = [(d, c) for d, c in won if d["status"] not in ("skipped",)]
    assert len(sent) >= 3
    orders = Counter(order for _, order in scenario.after_first)
    for d, c in sent:
        assert d["status"] == "delivered", (d["status"], d["reason"], d["last_error"])
        order = f"{c['lead_id']}:won:{c['opportunity_id']}"
        assert orders[order] == 1  # exactly once, whatever was resent
        stored = scenario.after_first[(WON_ACTION, order)]
        assert (stored.value, stored.currency) == (d["value"], d["currency"])
        assert stored.conversion_date_time == conversion_date_time(_utc(c["changed_at"]), zone)
        assert stored.conversion_date_time[-6:] in ("+01:00", "+02:00")


def test_every_delivered_row_is_one_conversion_and_nothing_else_arrived(
    scenario: Scenario,
) -> None:
    actions = f"customers/{OPERATING_ACCOUNT}/conversionActions/"
    delivered = {
        (actions + d["target"], conversion_id(c["lead_id"], c["stage"], c["opportunity_id"]))
        for d, c in google_rows(scenario.db)
        if d["status"] == "delivered" and not _adjusts(c)
    }
    stored = [(c.conversion_action, c.order_id) for c in scenario.box.google_ads_api.conversions]
    assert sorted(stored) == sorted(delivered)
    assert scenario.first.destinations["google_ads"].delivered == len(scenario.after_first)


def test_a_restated_amount_arrives_as_a_restatement_not_a_second_conversion(
    scenario: Scenario,
) -> None:
    api = scenario.box.google_ads_api
    stored = api.conversion(scenario.restated_order)
    assert stored is not None
    before = scenario.after_first[(WON_ACTION, scenario.restated_order)]
    assert before.value != RESTATED_AMOUNT
    assert (stored.value, stored.adjustments) == (RESTATED_AMOUNT, ["RESTATEMENT"])
    assert stored.conversion_date_time == before.conversion_date_time
    (adjustment,) = [
        a
        for request in api.adjustment_requests
        for a in request.conversion_adjustments
        if a.order_id == scenario.restated_order
    ]
    assert adjustment.adjustment_type.name == "RESTATEMENT"
    assert adjustment.adjustment_date_time > before.conversion_date_time  # same zone: text order
    resent = [
        c.order_id
        for request in api.upload_requests[scenario.uploads_after_first :]
        for c in request.conversions
    ]
    assert scenario.restated_order not in resent
    assert Counter(c.order_id for c in api.conversions)[scenario.restated_order] == 1


def test_a_reopened_won_deal_arrives_as_a_retraction(scenario: Scenario) -> None:
    stored = scenario.box.google_ads_api.conversion(scenario.retracted_order)
    assert stored is not None and stored.retracted and stored.adjustments == ["RETRACTION"]
    retractions = [
        d for d, c in google_rows(scenario.db) if c["retracts"] == scenario.retracted_order
    ]
    assert [d["status"] for d in retractions] == ["delivered"]
    assert retractions[0]["target"] == "700000004"


def test_one_bad_event_does_not_hold_back_the_others(scenario: Scenario) -> None:
    rows = google_rows(scenario.db)
    bad = [d for d, c in rows if c["attributes"].get("gclid") == scenario.not_found_gclid]
    assert bad and {(d["status"], d["reason"]) for d in bad} == {("rejected", "click_not_found")}
    others = [
        d
        for d, c in rows
        if c["attributes"].get("gclid") not in (scenario.not_found_gclid, scenario.too_recent_gclid)
    ]
    assert {d["status"] for d in others} <= {"delivered", "skipped"}


def test_a_too_recent_click_stays_pending_and_is_not_resent_right_away(
    scenario: Scenario,
) -> None:
    rows = [
        d
        for d, c in google_rows(scenario.db)
        if c["attributes"].get("gclid") == scenario.too_recent_gclid
    ]
    assert rows and {d["status"] for d in rows} == {"pending"}
    for d in rows:
        assert d["attempts"] == 1 and "TOO_RECENT_EVENT" in d["last_error"]
        wait = _utc(d["not_before"]) - NOW
        assert timedelta(hours=5, minutes=50) < wait < timedelta(hours=6, minutes=10)
    # Held back until not_before: the second run neither sends nor counts them.
    assert scenario.first.status == "partial" and scenario.second.status == "ok"
    sent = [
        c.gclid
        for request in scenario.box.google_ads_api.upload_requests
        for c in request.conversions
    ]
    assert sent.count(scenario.too_recent_gclid) == len(rows)  # the first run only


def test_no_clear_text_email_or_phone_reaches_google_the_ledger_or_the_logs(
    scenario: Scenario,
) -> None:
    sent = b"\n".join(scenario.box.google_ads_api.received_bytes).decode("latin-1")
    stored = scenario.db.read_bytes().decode("latin-1")
    emails = [str(r["Email"]).strip() for r in scenario.tables["Lead"] if r.get("Email")]
    phones = [str(r["Phone"]).strip() for r in scenario.tables["Lead"] if r.get("Phone")]
    for value in [*emails, *phones]:
        if len(value) >= 6:
            assert value not in sent and value not in stored and value not in scenario.log_text
    hashed = [
        u.hashed_email
        for request in scenario.box.google_ads_api.upload_requests
        for c in request.conversions
        for u in c.user_identifiers
        if u.hashed_email
    ]
    assert hashed and all(len(h) == 64 for h in hashed)  # the test looked at real identifiers


@pytest.mark.parametrize("upload_api", ["ads_api", "datamanager"])
def test_a_deal_won_again_after_a_retraction_counts_again(tmp_path: Path, upload_api: str) -> None:
    """Legacy: a retracted conversion is dead, so the new win is a new order id. Data Manager:
    the same transaction id is restated from 0 back to the deal's value."""
    lead_id, opp_id = "00Q000000000001AAA", "006000000000001AAA"
    lead = {
        "Id": lead_id,
        "CreatedDate": sf_datetime(NOW - timedelta(days=5)),
        "Status": "Closed - Converted",
        "IsConverted": True,
        "ConvertedOpportunityId": opp_id,
        "GCLID__c": "Cj0KCQiA-wonAgain_1234567890",
        "Consent_Ad_User_Data__c": "Granted",
        "CurrencyIsoCode": "EUR",
    }
    opp = {"Id": opp_id, "StageName": "Proposal", "Amount": 800.0, "CurrencyIsoCode": "EUR"}
    clock = iter(NOW - timedelta(hours=4) + timedelta(minutes=m) for m in range(10))

    def stage(box: Sandbox, old: str, new: str, **changes: Any) -> None:
        row = {"OpportunityId": opp_id, "Field": "StageName", "OldValue": old, "NewValue": new}
        box.salesforce.insert(
            "OpportunityFieldHistory", {**row, "CreatedDate": sf_datetime(next(clock))}
        )
        box.salesforce.update("Opportunity", opp_id, {"StageName": new, **changes})

    with Sandbox({"Lead": [lead], "Opportunity": [opp]}) as box:
        settings = box.settings(
            f"sqlite:///{tmp_path / 'state.db'}", MAPPING, upload_api=upload_api
        )
        mapping = load_mapping(MAPPING)
        stage(box, "Proposal", "Closed Won", IsWon=True)
        sync(settings, mapping, SyncOptions())
        stage(box, "Closed Won", "Negotiation", IsWon=False)
        sync(settings, mapping, SyncOptions())
        stage(box, "Negotiation", "Closed Won", IsWon=True, Amount=950.0)
        sync(settings, mapping, SyncOptions())
        first_life = box.google_ads_api.conversion(f"{lead_id}:won:{opp_id}")
        second_life = box.google_ads_api.conversion(f"{lead_id}:won:{opp_id}:1")
        restated = box.datamanager.conversions.get(("700000004", f"{lead_id}:won:{opp_id}"))
    if upload_api == "datamanager":
        assert restated is not None and restated["conversion_value"] == 950.0
        assert [a["conversion_value"] for a in restated["adjustments"]] == [0.0, 950.0]
        return
    assert first_life is not None and first_life.retracted
    assert second_life is not None and not second_life.retracted
    assert second_life.value == 950.0
