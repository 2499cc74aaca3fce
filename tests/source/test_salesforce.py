"""A lead's whole journey, lead to won deal, under its persistent id (real simple-salesforce)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from simple_salesforce.api import Salesforce
from sqlalchemy import create_engine, select

from connector.errors import SourceError
from connector.ledger.schema import deliveries, stage_changes
from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector.settings import SalesforceSettings
from connector.source.auth import connect
from connector.source.cursor import Cursor
from connector.source.salesforce import SalesforceSource
from connector.source.streams import LEAD_HISTORY, OPPORTUNITY_HISTORY, Stream
from connector_sandbox.dataset import sf_datetime
from connector_sandbox.faults import Fault
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING

NOW = datetime.now(UTC).replace(microsecond=0)
LEAD, OPP, ORPHAN = "00Q000000000001AAA", "006000000000001AAA", "006000000000002AAA"
GCLID = "Cj0KCQiA-journeyTest_1234567890"
CLOSED_ON = (NOW - timedelta(days=4)).date().isoformat()  # signed before it was recorded won


def at(hours_ago: float) -> str:
    return sf_datetime(NOW - timedelta(hours=hours_ago))


def journey() -> dict[str, list[dict[str, object]]]:
    lead = {
        "Id": LEAD,
        "CreatedDate": at(200),
        "IsDeleted": False,
        "Email": "Buyer.One@Example.com",
        "Phone": "+49 621 53399982",
        "Status": "Closed - Converted",
        "LeadSource": "Web",
        "IsConverted": True,
        "ConvertedOpportunityId": OPP,
        "CurrencyIsoCode": "EUR",
        "GCLID__c": GCLID,
        "GA_Client_ID__c": "111.222",
        "Consent_Ad_User_Data__c": "Granted",
        "Consent_Ad_Personalization__c": "Granted",
    }
    history = [
        ("Open", "MQL", 150),
        ("MQL", "SQL", 100),
        ("SQL", "Closed - Converted", 60),
    ]
    opp = {
        "Id": OPP,
        "Name": "Deal",
        "StageName": "Closed Won",
        "Amount": 30000.0,
        "CurrencyIsoCode": "GBP",
        "IsClosed": True,
        "IsWon": True,
        "CloseDate": CLOSED_ON,
        "CreatedDate": at(60),
        "IsDeleted": False,
    }
    orphan = {**opp, "Id": ORPHAN, "Name": "Contact deal"}
    opp_history = [
        (OPP, "StageName", "Prospecting", "Proposal", 40),
        (OPP, "StageName", "Proposal", "Closed Won", 30),
        (OPP, "Amount", 25000.0, 30000.0, 10),
        (ORPHAN, "StageName", "Negotiation", "Closed Won", 20),
    ]
    return {
        "Lead": [lead],
        "LeadHistory": [
            {
                "Id": f"017000000000{i:03d}AAA",
                "LeadId": LEAD,
                "Field": "Status",
                "OldValue": old,
                "NewValue": new,
                "CreatedDate": at(hours),
                "IsDeleted": False,
            }
            for i, (old, new, hours) in enumerate(history)
        ],
        "Opportunity": [opp, orphan],
        "OpportunityFieldHistory": [
            {
                "Id": f"017000000001{i:03d}AAA",
                "OpportunityId": opp_id,
                "Field": field,
                "OldValue": old,
                "NewValue": new,
                "CreatedDate": at(hours),
                "IsDeleted": False,
            }
            for i, (opp_id, field, old, new, hours) in enumerate(opp_history)
        ],
    }


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(journey()) as box:
        yield box


def test_the_whole_journey_arrives_under_one_lead_id(sandbox: Sandbox, sqlite_url: str) -> None:
    sync(sandbox.settings(sqlite_url, MAPPING), load_mapping(MAPPING), SyncOptions())
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        changes = [r._mapping for r in conn.execute(select(stage_changes))]
        rows = [r._mapping for r in conn.execute(select(deliveries))]
    by_stage = [(c["lead_id"], c["stage"]) for c in sorted(changes, key=lambda c: c["changed_at"])]
    assert by_stage == [
        (LEAD, "mql"),
        (LEAD, "sql"),
        (LEAD, "opportunity"),
        (LEAD, "opportunity"),
        (LEAD, "won"),
        (ORPHAN, "won"),
        (LEAD, "won"),
    ]
    # Won with the opportunity's amount and currency, read after the Amount changed: the
    # restatement to that same amount changes nothing and is not sent (nor sent to GA4).
    won = sandbox.datamanager.conversions[("700000004", f"{LEAD}:won:{OPP}")]
    assert won["conversion_value"] == 30000.0 and won["currency"] == "GBP"
    assert sandbox.datamanager.adjustments == 0
    restated = [c["id"] for c in changes if c["restatement"]]
    assert [
        (r["destination"], r["status"], r["reason"]) for r in rows if r["change_id"] in restated
    ] == [("google_ads", "skipped", "value_unchanged")]
    assert [e["name"] for e in sandbox.ga4.accepted].count("close_convert_lead") == 1
    assert len(sandbox.datamanager.conversions) == 4
    orphan_rows = [r for r in rows if r["reason"] == "no_source_lead"]
    assert len(orphan_rows) == 2  # recorded for both destinations, sent nowhere


def deal_attributes(state_url: str) -> list[tuple[str, object, object, object]]:
    """(stage, deal_amount, deal_currency, close_date) of each recorded change of OPP."""
    engine = create_engine(state_url)
    sc = stage_changes.c
    query = select(sc.stage, sc.attributes).where(sc.opportunity_id == OPP)
    with engine.connect() as conn:
        found = conn.execute(query.order_by(sc.changed_at)).all()
    engine.dispose()
    keys = ("deal_amount", "deal_currency", "close_date")
    return [(stage, *(attrs.get(k) for k in keys)) for stage, attrs in found]


def test_every_opportunity_change_records_the_deal_as_read(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    sync(sandbox.settings(sqlite_url, MAPPING), load_mapping(MAPPING), SyncOptions())
    # History rows carry the opportunity as it is now (parent fields): the open stage too,
    # so the report can value the pipeline; the CloseDate is the one the deal converts at.
    assert deal_attributes(sqlite_url) == [
        ("opportunity", 30000.0, "GBP", CLOSED_ON),
        ("won", 30000.0, "GBP", CLOSED_ON),
        ("won", 30000.0, "GBP", CLOSED_ON),  # the restatement
    ]


def test_a_sync_costs_its_pages_per_object(sandbox: Sandbox, sqlite_url: str) -> None:
    settings = sandbox.settings(sqlite_url, MAPPING)
    sync(settings, load_mapping(MAPPING), SyncOptions())
    first = sandbox.salesforce.query_calls
    # A backfill: ceil(N / 2000) pages, the first one's totalSize choosing REST over Bulk.
    assert first["LeadHistory"] == 1 and first["OpportunityFieldHistory"] == 1
    sync(settings, load_mapping(MAPPING), SyncOptions())
    second = sandbox.salesforce.query_calls
    # An incremental sync with nothing new: one query per object.
    assert second["LeadHistory"] == 2 and second["OpportunityFieldHistory"] == 2


def test_a_large_first_run_streams_through_bulk_api_with_the_same_result(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    settings = sandbox.settings(sqlite_url, MAPPING, salesforce={"bulk_threshold": 2})
    sync(settings, load_mapping(MAPPING), SyncOptions())
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        changes = list(conn.execute(select(stage_changes.c.lead_id, stage_changes.c.stage)))
    assert sorted(map(tuple, changes)) == sorted(
        [(LEAD, s) for s in ("mql", "sql", "opportunity", "opportunity", "won", "won")]
        + [(ORPHAN, "won")]
    )
    # The first REST page's totalSize chose Bulk API 2.0; the rows came as bulk query jobs.
    assert sandbox.salesforce.query_calls["LeadHistory"] == 1
    assert sandbox.salesforce.bulk_calls["LeadHistory"] >= 3  # create, poll, results
    assert sandbox.salesforce.bulk_calls["OpportunityFieldHistory"] >= 3
    won = sandbox.datamanager.conversions[("700000004", f"{LEAD}:won:{OPP}")]
    assert won["conversion_value"] == 30000.0
    # Bulk API 2.0 answers CSV text: the deal's amount and CloseDate are read the same.
    assert ("won", 30000.0, "GBP", CLOSED_ON) in deal_attributes(sqlite_url)
    # The bookmark moved to the newest change only once the whole job was read.
    from connector.ledger import Ledger

    cursor = Ledger.open(sqlite_url).cursors.get("salesforce.LeadHistory")
    assert cursor == NOW - timedelta(hours=60)


def test_a_deal_won_and_priced_in_one_save_is_one_won_conversion(sqlite_url: str) -> None:
    tables = journey()
    same_second = at(5)
    history = [
        {"Id": f"01700000000900{i}AAA", "OpportunityId": OPP, "Field": field, "OldValue": old,
         "NewValue": new, "CreatedDate": same_second, "IsDeleted": False}
        # The amount row sorts first by Id: it must not be taken for a restatement.
        for i, (field, old, new) in enumerate(
            [("Amount", 1000.0, 30000.0), ("StageName", "Proposal", "Closed Won")]
        )
    ]  # fmt: skip
    tables["OpportunityFieldHistory"] = history
    with Sandbox(tables) as box:
        sync(box.settings(sqlite_url, MAPPING), load_mapping(MAPPING), SyncOptions())
        won = box.datamanager.conversions[("700000004", f"{LEAD}:won:{OPP}")]
    assert won["conversion_value"] == 30000.0
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        stages = [r.stage for r in conn.execute(select(stage_changes.c.stage))]
    assert stages.count("won") == 1


# One stream's pull, read straight from the source ----------------------------------------


def login(box: Sandbox) -> SalesforceSettings:
    return box.settings("sqlite://", MAPPING).salesforce


def source(box: Sandbox, **options: Any) -> SalesforceSource:
    return SalesforceSource(connect(login(box)), load_mapping(MAPPING), **options)


def backfill(stream: Stream = LEAD_HISTORY) -> Cursor:
    return Cursor.resume(stream, None, SalesforceSettings(), NOW)


def test_a_pull_reports_its_calls_and_api_usage_and_moves_only_its_cursor(
    sandbox: Sandbox,
) -> None:
    reader = source(sandbox, bulk_threshold=100)
    leads, opportunities = backfill(), backfill(OPPORTUNITY_HISTORY)
    pull = reader.pull(leads)
    assert pull.stats.calls == 0 and leads.position is None  # nothing read before iteration
    assert [c.new_status for c in pull] == ["MQL", "SQL", "Closed - Converted"]
    # A backfill's first page said REST, and was the only one: what the emulator counted too.
    assert pull.stats.calls == 1 == sandbox.salesforce.query_calls["LeadHistory"]
    assert pull.stats.api_usage == (sandbox.salesforce.api_usage, sandbox.salesforce.api_limit)
    assert pull.stats.stopped is None
    assert leads.bookmark == NOW - timedelta(hours=60) and opportunities.position is None
    second = reader.pull(opportunities)
    assert len(list(second)) == 4 and second.stats.calls > 1  # its page, lookups
    assert pull.stats.calls == 1  # each pull keeps its own counts
    assert opportunities.bookmark == NOW - timedelta(hours=10)


def test_a_bulk_pull_counts_every_call_of_its_job(sandbox: Sandbox) -> None:
    pull = source(sandbox, bulk_threshold=1).pull(backfill())
    assert len(list(pull)) == 3
    # The first REST page (its totalSize chose Bulk), then the job: create, polls, pages.
    sent = (
        sandbox.salesforce.query_calls["LeadHistory"] + sandbox.salesforce.bulk_calls["LeadHistory"]
    )
    assert sandbox.salesforce.bulk_calls["LeadHistory"] >= 3 and pull.stats.calls == sent


def test_a_large_read_after_the_first_run_goes_through_bulk_too(sandbox: Sandbox) -> None:
    # A bookmark (a backfill stopped after its first chunk, a catch-up after an outage):
    # the first page's totalSize chooses Bulk all the same, and the changes are the REST read's.
    bookmarked = Cursor.resume(LEAD_HISTORY, NOW - timedelta(days=30), SalesforceSettings(), NOW)
    by_rest = [c.new_status for c in source(sandbox).pull(bookmarked)]
    rest_calls = sandbox.salesforce.query_calls["LeadHistory"]
    bookmarked = Cursor.resume(LEAD_HISTORY, NOW - timedelta(days=30), SalesforceSettings(), NOW)
    by_bulk = [c.new_status for c in source(sandbox, bulk_threshold=1).pull(bookmarked)]
    assert by_bulk == by_rest == ["MQL", "SQL", "Closed - Converted"]
    assert sandbox.salesforce.query_calls["LeadHistory"] == rest_calls + 1  # its first page
    assert sandbox.salesforce.bulk_calls["LeadHistory"] >= 3  # create, poll, results
    assert bookmarked.bookmark == NOW - timedelta(hours=60)


def test_a_failing_page_is_retried_by_the_retry_policy(sandbox: Sandbox) -> None:
    sleeps: list[float] = []
    sandbox.salesforce.faults.push(Fault(status=503, path_contains="/query"), times=2)
    pull = source(sandbox, sleep=sleeps.append).pull(backfill())
    assert len(list(pull)) == 3
    assert len(sleeps) == 2 and pull.stats.calls == 1  # a call is a page, however many tries


def test_a_page_failing_on_every_try_is_a_retryable_source_error(sandbox: Sandbox) -> None:
    sleeps: list[float] = []
    sandbox.salesforce.faults.push(Fault(status=503, path_contains="/query"), times=3)
    leads = backfill()
    with pytest.raises(SourceError) as failed:
        list(source(sandbox, attempts=3, sleep=sleeps.append).pull(leads))
    assert failed.value.retryable and "(503) after retries" in str(failed.value)
    assert len(sleeps) == 2 and leads.position is None
    assert "/query" not in str(failed.value)  # no URL or body echoed


def test_an_expired_session_logs_in_again_once_for_the_same_page(sandbox: Sandbox) -> None:
    logins: list[Salesforce] = []

    def reconnect() -> Salesforce:
        logins.append(connect(login(sandbox)))
        return logins[-1]

    reader = source(sandbox, reconnect=reconnect)
    sandbox.salesforce.expire_sessions()
    assert len(list(reader.pull(backfill()))) == 3 and len(logins) == 1
    without = source(sandbox)
    sandbox.salesforce.expire_sessions()
    with pytest.raises(SourceError, match="INVALID_SESSION_ID") as expired:
        list(without.pull(backfill()))
    assert expired.value.retryable


def test_the_generated_org_signs_some_deals_before_they_are_recorded_won() -> None:
    from connector_sandbox.dataset import generate

    data = generate(n_leads=1500, seed=7, now=NOW)
    last_change: dict[str, str] = {}
    for row in data.opportunity_history:  # in time order
        if row["Field"] == "StageName":
            last_change[row["OpportunityId"]] = row["CreatedDate"][:10]
    closed = [o for o in data.opportunities if o["IsClosed"] and o["Id"] in last_change]
    assert closed and all(
        o["CreatedDate"][:10] <= o["CloseDate"] <= last_change[o["Id"]] for o in closed
    )
    assert any(o["CloseDate"] < last_change[o["Id"]] for o in closed)
    open_ = [o for o in data.opportunities if not o["IsClosed"]]
    assert all(o["CloseDate"] > NOW.date().isoformat() for o in open_)  # expected close
