"""A won deal's life in Google Ads over several runs: won, restated, reopened (retracted).

The real clients against the emulators; the Data Manager emulator shows what
Google would hold per (conversion action, transaction id), and the ledger what
the connector recorded, including Google's request status counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connector.ledger import Ledger
from connector.ledger.schema import deliveries, stage_changes
from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector.summary import RunSummary
from connector_sandbox.dataset import OPP_OPEN_STAGES, WON, generate, sf_datetime
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING

NOW = datetime.now(UTC).replace(microsecond=0)
WON_ACTION = "700000004"
GCLID = "Cj0KCQiA-adjust-{}-abcdEFGH"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(generate(n_leads=400, seed=11, now=NOW).tables()) as box:
        yield box


def run(box: Sandbox, state_url: str) -> RunSummary:
    return sync(box.settings(state_url, MAPPING), load_mapping(MAPPING), SyncOptions())


def open_deals(box: Sandbox, count: int) -> list[tuple[str, str]]:
    """(opportunity id, lead id) of open deals, their leads made sendable to Google Ads."""
    leads = {
        str(r["ConvertedOpportunityId"]): str(r["Id"])
        for r in box.salesforce.records("Lead")
        if r.get("ConvertedOpportunityId")
    }
    opportunities = [
        str(o["Id"])
        for o in box.salesforce.records("Opportunity")
        if o["StageName"] in OPP_OPEN_STAGES and str(o["Id"]) in leads
    ]
    deals = [(opp, leads[opp]) for opp in opportunities[:count]]
    for n, (opp, lead) in enumerate(deals):
        box.salesforce.update(
            "Lead",
            lead,
            {"GCLID__c": GCLID.format(n), "Consent_Ad_User_Data__c": "Granted"}
            | {"CurrencyIsoCode": "EUR", "IsDeleted": False},
        )
        box.salesforce.update(
            "Opportunity", opp, {"CurrencyIsoCode": "EUR", "StageName": "Negotiation"}
        )
    return deals


def after(previous: datetime) -> datetime:
    """Now, but a whole second after `previous`: CRM times have one-second precision."""
    return max(datetime.now(UTC).replace(microsecond=0), previous + timedelta(seconds=1))


def history(box: Sandbox, opp: str, field: str, old: Any, new: Any, at: datetime) -> None:
    row = {"OpportunityId": opp, "Field": field, "OldValue": old, "NewValue": new}
    box.salesforce.insert(
        "OpportunityFieldHistory", row | {"CreatedDate": sf_datetime(at), "IsDeleted": False}
    )


def win(box: Sandbox, opp: str, amount: float, at: datetime) -> None:
    closed = {"StageName": WON, "IsWon": True, "IsClosed": True, "Amount": amount}
    box.salesforce.update("Opportunity", opp, closed)
    history(box, opp, "StageName", "Negotiation", WON, at)


def restate(box: Sandbox, opp: str, old: float, new: float, at: datetime) -> None:
    box.salesforce.update("Opportunity", opp, {"Amount": new})
    history(box, opp, "Amount", old, new, at)


def reopen(box: Sandbox, opp: str, at: datetime) -> None:
    box.salesforce.update(
        "Opportunity", opp, {"StageName": "Negotiation", "IsWon": False, "IsClosed": False}
    )
    history(box, opp, "StageName", WON, "Negotiation", at)


def google_ads_rows(state_url: str, lead: str) -> list[tuple[str, str, str | None]]:
    """(stage, status, reason) of a lead's Google Ads deliveries, in time order."""
    d, sc = deliveries.c, stage_changes.c
    query = (
        select(sc.stage, d.status, d.reason)
        .join_from(deliveries, stage_changes, d.change_id == sc.id)
        .where(sc.lead_id == lead, d.destination == "google_ads")
        .order_by(sc.changed_at)
    )
    with Ledger.open(state_url).db.engine.connect() as conn:
        return [(r.stage, r.status, r.reason) for r in conn.execute(query)]


def test_won_restated_reopened_and_a_retraction_with_nothing_to_retract(
    sandbox: Sandbox, state_url: str
) -> None:
    (deal, lead), (other_deal, other_lead) = open_deals(sandbox, 2)
    key = (WON_ACTION, f"{lead}:won:{deal}")
    won_at = NOW - timedelta(minutes=10)

    # Run 1: the deal is won once, with value, currency and the time it was won.
    win(sandbox, deal, 5000.0, won_at)
    first = run(sandbox, state_url)
    assert first.status == "ok"
    conversion = sandbox.datamanager.conversions[key]
    assert (conversion["conversion_value"], conversion["currency"]) == (5000.0, "EUR")
    assert conversion["event_timestamp"] == won_at
    sent_first = {r["request_id"] for r in Ledger.open(state_url).requests.all("google_ads")}
    assert sent_first

    # Run 2: the amount changes: an adjustment of the same transaction id, not a second one.
    restated_at = after(won_at)
    restate(sandbox, deal, 5000.0, 7500.0, restated_at)
    second = run(sandbox, state_url)
    conversion = sandbox.datamanager.conversions[key]
    assert (conversion["original_value"], conversion["conversion_value"]) == (5000.0, 7500.0)
    assert [a["conversion_value"] for a in conversion["adjustments"]] == [7500.0]
    assert [
        e["is_adjustment"] for e in sandbox.datamanager.accepted if e["transaction_id"] == key[1]
    ] == [False, True]
    # ... and it checks the first run's requests: Google is still processing them.
    assert second.request_status["google_ads"]["checked"] == len(sent_first)
    assert second.request_status["google_ads"]["finished"] == 0

    # Run 3: the deal is reopened and retracted (value 0); a deal never won here is not.
    reopen(sandbox, deal, after(restated_at))
    reopen(sandbox, other_deal, after(restated_at))
    third = run(sandbox, state_url)
    conversion = sandbox.datamanager.conversions[key]
    assert conversion["conversion_value"] == 0.0
    assert [a["conversion_value"] for a in conversion["adjustments"]] == [7500.0, 0.0]
    assert (WON_ACTION, f"{other_lead}:won:{other_deal}") not in sandbox.datamanager.conversions
    assert google_ads_rows(state_url, lead)[-3:] == [
        ("won", "delivered", None),
        ("won", "delivered", None),
        ("opportunity", "delivered", None),
    ]
    assert google_ads_rows(state_url, other_lead)[-1] == (
        "opportunity",
        "skipped",
        "nothing_to_retract",
    )
    assert third.destinations["google_ads"].skipped["nothing_to_retract"] == 1

    # Google's verdict on the first run's requests is now in the ledger.
    finished = {
        r["request_id"]: r
        for r in Ledger.open(state_url).requests.all("google_ads")
        if r["processed"] is not None
    }
    assert set(finished) >= sent_first
    for request_id in sent_first:
        request = finished[request_id]
        assert request["processed"] == request["events"]
        assert 0 < request["matched"] <= request["processed"]
    totals = third.request_status["google_ads"]
    assert totals["finished"] >= len(sent_first) and totals["processed"] > 0
