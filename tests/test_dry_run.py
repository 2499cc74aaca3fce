"""The dry run plans exactly like a run (issue 11): the same waves, plans, batches, order
ids, adjustments and retraction counts, with only the sends validate-only and nothing
written. Real clients against the emulators; the store is compared byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector.summary import RunSummary
from connector_sandbox.dataset import sf_datetime
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING

NOW = datetime.now(UTC).replace(microsecond=0)
LEAD, OPP = "00Q000000000031AAA", "006000000000031AAA"
ORDER = f"{LEAD}:won:{OPP}"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    lead = {
        "Id": LEAD,
        "CreatedDate": sf_datetime(NOW - timedelta(days=5)),
        "Status": "Closed - Converted",
        "IsConverted": True,
        "ConvertedOpportunityId": OPP,
        "GCLID__c": "Cj0KCQiA-dryRunPlan_1234567890",
        "GA_Client_ID__c": "987654321.1700000000",
        "Consent_Ad_User_Data__c": "Granted",
        "CurrencyIsoCode": "EUR",
    }
    opp = {"Id": OPP, "StageName": "Closed Won", "IsWon": True, "Amount": 950.0}
    opp["CurrencyIsoCode"] = "EUR"
    history = [
        ("StageName", "Proposal", "Closed Won"),
        ("Amount", 800.0, 850.0),
        ("StageName", "Closed Won", "Negotiation"),
        ("StageName", "Negotiation", "Closed Won"),
        ("Amount", 850.0, 950.0),  # the amount the wins carry (read now): value_unchanged
    ]
    rows = [
        {"OpportunityId": OPP, "Field": field, "OldValue": old, "NewValue": new}
        | {"CreatedDate": sf_datetime(NOW - timedelta(hours=4) + timedelta(minutes=n))}
        for n, (field, old, new) in enumerate(history)
    ]
    tables = {"Lead": [lead], "Opportunity": [opp], "OpportunityFieldHistory": rows}
    with Sandbox(tables) as sandbox:
        yield sandbox


def run(box: Sandbox, db: Path, **options: Any) -> RunSummary:
    settings = box.settings(f"sqlite:///{db}", MAPPING, upload_api="ads_api")
    return sync(settings, load_mapping(MAPPING), SyncOptions(**options))


def sent(box: Sandbox) -> tuple[list[str], list[tuple[str, str]]]:
    """Order ids of the click conversions, and (type, order id) of the adjustments."""
    api = box.google_ads_api
    orders = [c.order_id for r in api.upload_requests for c in r.conversions]
    adjusted = [
        (a.adjustment_type.name, a.order_id)
        for r in api.adjustment_requests
        for a in r.conversion_adjustments
    ]
    return orders, adjusted


def payload_orders(payloads: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    orders, adjusted = [], []
    for request in payloads["google_ads"]:
        orders += [c["orderId"] for c in request.get("conversions", [])]
        adjusted += [
            (a["adjustmentType"], a["orderId"]) for a in request.get("conversionAdjustments", [])
        ]
    return orders, adjusted


def test_a_dry_run_plans_what_the_run_then_sends(box: Sandbox, tmp_path: Path) -> None:
    """Won, restated, retracted, won again (a new order id), in one pull: a wave each."""
    db, payloads = tmp_path / "state.db", tmp_path / "payloads.json"

    dry = run(box, db, dry_run=True, payloads_path=payloads)
    validated = sent(box)
    assert box.google_ads_api.conversions == [] and not db.exists()
    real = run(box, db)

    assert (dry.status, real.status) == ("ok", "ok")  # no DUPLICATE_ORDER_ID: exit 0
    planned = payload_orders(json.loads(payloads.read_text()))
    orders, adjusted = sent(box)
    assert planned == (orders[len(validated[0]) :], adjusted[len(validated[1]) :])
    assert planned == ([ORDER, f"{ORDER}:1"], [("RESTATEMENT", ORDER), ("RETRACTION", ORDER)])
    # Validate-only: the conversions were checked; their adjustments (of conversions Google
    # does not hold yet) are planned and written to the payloads file, not sent.
    assert validated == ([ORDER, f"{ORDER}:1"], [])
    for name in ("google_ads", "ga4"):
        assert dry.destinations[name].as_dict() == real.destinations[name].as_dict()


def test_a_dry_run_after_a_run_reads_the_store_and_leaves_it_as_it_was(
    box: Sandbox, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    run(box, db)
    before = db.read_bytes()
    stamp = sf_datetime(NOW - timedelta(minutes=5))
    again = {"OpportunityId": OPP, "Field": "Amount", "OldValue": 950.0, "NewValue": 990.0}
    box.salesforce.insert("OpportunityFieldHistory", again | {"CreatedDate": stamp})
    box.salesforce.update("Opportunity", OPP, {"Amount": 990.0})

    dry = run(box, db, dry_run=True)

    assert db.read_bytes() == before
    # Planned from the store: a restatement of the delivered second life, sent to validate.
    assert dry.new == 1 and dry.destinations["google_ads"].delivered == 1
    (request,) = box.google_ads_api.adjustment_requests[-1:]
    assert request.validate_only
    assert [a.order_id for a in request.conversion_adjustments] == [f"{ORDER}:1"]
