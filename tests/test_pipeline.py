"""End to end: the real clients against the emulators, asserting on what they received
and on what the ledger holds."""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from connector import stopping
from connector.delivery import CLAIM_PAGE
from connector.destinations.ga4.events import BACKDATE_SAFE
from connector.errors import SourceError
from connector.ledger.schema import deliveries, stage_changes
from connector.mapping.rules import load_mapping
from connector.pipeline import OPPORTUNITY_STREAM, STREAM, SyncOptions, sync
from connector.settings import Settings
from connector_sandbox.datamanager import (
    INGEST_PATH,
    STATUS_PATH,
    status_body,
    unavailable_fault,
)
from connector_sandbox.dataset import generate, sf_datetime
from connector_sandbox.faults import Fault
from connector_sandbox.ga4 import rate_limited_fault
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING, POSTGRES_URL, _postgres_database
from tests.source.test_lookups import org as deal_org

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def data_tables() -> dict[str, list[dict[str, object]]]:
    return generate(n_leads=400, seed=11, now=NOW).tables()


@pytest.fixture
def sandbox(data_tables: dict[str, list[dict[str, object]]]) -> Iterator[Sandbox]:
    tables = {name: [dict(r) for r in rows] for name, rows in data_tables.items()}
    with Sandbox(tables) as box:
        yield box


def settings_for(box: Sandbox, state_url: str) -> Settings:
    return box.settings(state_url, MAPPING)


def run(settings: Settings, **options: object) -> object:
    return sync(settings, load_mapping(MAPPING), SyncOptions(**options))  # type: ignore[arg-type]


def ledger_rows(state_url: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    engine = create_engine(state_url)
    with engine.connect() as conn:
        changes = [dict(r._mapping) for r in conn.execute(select(stage_changes))]
        rows = [dict(r._mapping) for r in conn.execute(select(deliveries))]
    engine.dispose()
    return changes, rows


def test_sync_delivers_every_pending_row_once_and_a_rerun_sends_nothing(
    sandbox: Sandbox, state_url: str
) -> None:
    settings = settings_for(sandbox, state_url)
    first = run(settings)
    assert first.status == "ok"  # type: ignore[attr-defined]
    changes, rows = ledger_rows(state_url)
    delivered = Counter(r["destination"] for r in rows if r["status"] == "delivered")
    assert delivered["google_ads"] == len(sandbox.datamanager.conversions) > 0
    assert delivered["ga4"] == len(sandbox.ga4.accepted) > 0
    assert not [r for r in rows if r["status"] == "pending"]

    requests_before = (sandbox.datamanager.requests, sandbox.ga4.requests)
    second = run(settings)
    assert second.new == 0  # type: ignore[attr-defined]
    assert (sandbox.datamanager.requests, sandbox.ga4.requests) == requests_before
    assert len(ledger_rows(state_url)[0]) == len(changes)


def test_every_google_ads_conversion_carries_its_lead_and_stage(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    run(settings_for(sandbox, sqlite_url))
    for (action, transaction_id), event in sandbox.datamanager.conversions.items():
        lead_id, stage, *opportunity = transaction_id.split(":")
        assert bool(opportunity) == (stage == "won")  # opportunity stages: per opportunity
        assert lead_id.startswith("00Q")
        actions = {"mql": "700000001", "sql": "700000002", "opportunity": "700000003"}
        assert {**actions, "won": "700000004"}[stage] == action
        assert event["currency"] in {"EUR", "USD", "GBP"}


def test_ga4_requests_group_a_clients_events_in_time_order(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    run(settings_for(sandbox, sqlite_url))
    per_client = Counter(e["client_id"] for e in sandbox.ga4.accepted)
    assert sandbox.ga4.requests == sum(math.ceil(n / 25) for n in per_client.values())
    for body in sandbox.ga4.received_bodies:
        times = [e.get("timestamp_micros", 0) for e in json.loads(body)["events"]]
        assert times == sorted(times)


def test_a_backfills_events_too_old_for_ga4_are_skipped_when_recorded_never_claimed(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    started = datetime.now(UTC)
    run(settings_for(sandbox, sqlite_url))
    changes, rows = ledger_rows(sqlite_url)
    at = {c["id"]: c["changed_at"].replace(tzinfo=UTC) for c in changes}  # type: ignore[union-attr]
    ga4 = [r for r in rows if r["destination"] == "ga4"]
    old = [r for r in ga4 if started - at[r["change_id"]] > BACKDATE_SAFE]
    # Skipped as they were recorded, never claimed: too old, unless skipped for another reason.
    assert all(r["attempts"] == 0 and r["status"] == "skipped" for r in old)
    reasons = Counter(r["reason"] for r in old)
    assert reasons["too_old_for_ga4"] > len(old) / 2, reasons
    sent = [e["timestamp_micros"] / 1e6 for e in sandbox.ga4.accepted]
    assert sent and min(sent) > (started - BACKDATE_SAFE).timestamp()


def test_no_clear_text_email_or_phone_leaves_or_is_stored(
    sandbox: Sandbox, sqlite_url: str, data_tables: dict[str, list[dict[str, object]]]
) -> None:
    run(settings_for(sandbox, sqlite_url))
    sent = "\n".join(sandbox.datamanager.received_bodies + sandbox.ga4.received_bodies)
    stored = Path(sqlite_url.removeprefix("sqlite:///")).read_bytes().decode("latin-1")
    emails = [str(r["Email"]).strip() for r in data_tables["Lead"] if r.get("Email")]
    phones = [str(r["Phone"]).strip() for r in data_tables["Lead"] if r.get("Phone")]
    for value in [*emails, *phones]:
        if len(value) >= 6:
            assert value not in sent and value not in stored
    hashed = hashlib.sha256(b"x").hexdigest()
    assert hashed not in sent  # sanity: the test looks at real bodies
    # Data Manager's requests in protobuf text format: hashed identifiers did travel.
    assert "email_address: " in sent or "phone_number: " in sent


def test_dry_run_changes_no_state_and_sends_nothing(
    sandbox: Sandbox, sqlite_url: str, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, sqlite_url)
    sandbox.salesforce.insert("LeadHistory", _history_row(sandbox, minutes_ago=1))
    run(settings)  # a real run first, so the store exists and holds a cursor
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    before = db.read_bytes()
    accepted = (len(sandbox.datamanager.accepted), len(sandbox.ga4.accepted))
    new_row = _history_row(sandbox, minutes_ago=0)
    sandbox.salesforce.insert("LeadHistory", new_row)

    payloads = tmp_path / "out" / "payloads.json"
    summary = run(settings, dry_run=True, payloads_path=payloads)

    assert db.read_bytes() == before
    assert (len(sandbox.datamanager.accepted), len(sandbox.ga4.accepted)) == accepted
    assert summary.new == 1  # type: ignore[attr-defined]
    written = json.loads(payloads.read_text())
    assert written["google_ads"][0]["validateOnly"] is True
    assert sandbox.datamanager.validated_requests >= 1


def test_dry_run_on_a_fresh_store_creates_no_file(sandbox: Sandbox, sqlite_url: str) -> None:
    summary = run(settings_for(sandbox, sqlite_url), dry_run=True)
    assert summary.new > 0  # type: ignore[attr-defined]
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()
    assert sandbox.datamanager.accepted == [] and sandbox.ga4.accepted == []


def test_transient_errors_are_retried(sandbox: Sandbox, sqlite_url: str) -> None:
    sandbox.datamanager.faults.push(unavailable_fault(), times=2)
    sandbox.ga4.faults.push(rate_limited_fault(retry_after_seconds=1), times=1)
    summary = run(settings_for(sandbox, sqlite_url))
    assert summary.status == "ok"  # type: ignore[attr-defined]
    assert len(sandbox.datamanager.conversions) > 0


def test_a_rejected_event_is_set_aside_and_the_rest_delivered(
    sandbox: Sandbox, sqlite_url: str, data_tables: dict[str, list[dict[str, object]]]
) -> None:
    recent = sf_datetime(NOW - timedelta(days=30))
    leads = {str(r["Id"]): r for r in data_tables["Lead"] if _sendable(r)}
    lead = next(
        leads[str(h["LeadId"])]
        for h in data_tables["LeadHistory"]
        if h["NewValue"] == "MQL" and str(h["CreatedDate"]) > recent and h["LeadId"] in leads
    )
    sandbox.datamanager.reject(gclids=[str(lead["GCLID__c"])])
    run(settings_for(sandbox, sqlite_url))
    _, rows = ledger_rows(sqlite_url)
    rejected = [r for r in rows if r["destination"] == "google_ads" and r["status"] == "rejected"]
    assert rejected and all("google_ads" in str(r["reason"]) for r in rejected)
    delivered = [r for r in rows if r["destination"] == "google_ads" and r["status"] == "delivered"]
    assert len(delivered) == len(sandbox.datamanager.conversions) > 0


def test_a_change_written_inside_the_overlap_window_arrives_once(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    settings = settings_for(sandbox, sqlite_url)
    run(settings)
    cursor = _cursor(sqlite_url)
    # Committed late, stamped a second before the cursor: the overlap must catch it.
    late = _history_row(sandbox, at=cursor - timedelta(seconds=1))
    sandbox.salesforce.insert("LeadHistory", late)
    conversions = len(sandbox.datamanager.conversions)
    second = run(settings)
    third = run(settings)
    assert second.new == 1 and third.new == 0  # type: ignore[attr-defined]
    assert len(sandbox.datamanager.conversions) == conversions + 1


def test_rows_read_again_in_the_overlap_window_cost_no_lead_lookup(sqlite_url: str) -> None:
    # 100 deals, two stage changes each, 10 s apart: the 300 s window holds the last 31 rows.
    with Sandbox(deal_org(100)) as box:
        settings = settings_for(box, sqlite_url)
        run(settings)
        lookups = box.salesforce.query_calls["Lead"]
        again = run(settings)
        # Recorded already: read again, but neither looked up nor mapped again.
        assert box.salesforce.query_calls["Lead"] == lookups
        assert (again.pulled, again.new) == (31, 0)  # type: ignore[attr-defined]
        # A row committed late inside the window is still found, and its deal's lead with it.
        late = dict(box.salesforce.records("OpportunityFieldHistory")[0])
        late |= {"Id": "0179LATE0000001AAA", "OldValue": "Closed Won", "NewValue": "Closed Lost"}
        bookmark = _cursor(sqlite_url, OPPORTUNITY_STREAM)
        late["CreatedDate"] = sf_datetime(bookmark - timedelta(seconds=1))
        box.salesforce.insert("OpportunityFieldHistory", late)
        third = run(settings)
        assert box.salesforce.query_calls["Lead"] == lookups + 1
        assert (third.pulled, third.new) == (32, 1)  # type: ignore[attr-defined]


def test_salesforce_limit_stops_the_run_and_keeps_the_cursor(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    settings = settings_for(sandbox, sqlite_url)
    run(settings)
    cursor = _cursor(sqlite_url)
    body = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    sandbox.salesforce.faults.push(Fault(status=403, body=body, path_contains="/query"))
    with pytest.raises(SourceError, match="REQUEST_LIMIT_EXCEEDED"):
        run(settings)
    assert _cursor(sqlite_url) == cursor


def _cursor(state_url: str, stream: str = STREAM) -> datetime:
    from connector.ledger import Ledger

    value = Ledger.open(state_url).cursors.get(stream)
    assert value is not None
    return value


def _good_gclid(lead: dict[str, object]) -> bool:
    gclid = lead.get("GCLID__c")
    return bool(gclid) and " " not in str(gclid) and "!" not in str(gclid)


def _sendable(lead: dict[str, object]) -> bool:
    return (
        _good_gclid(lead)
        and bool(lead.get("GA_Client_ID__c"))
        and lead.get("Consent_Ad_User_Data__c") == "Granted"
        and lead.get("CurrencyIsoCode") in ("EUR", "USD", "GBP")
    )


def _history_row(
    box: Sandbox, *, minutes_ago: int = 0, at: datetime | None = None
) -> dict[str, object]:
    """A new MQL status change for a lead that has a usable gclid and GA client id."""
    leads = box.salesforce.records("Lead")
    # A new lead, a copy of a sendable one: a stage reached again would be sent nowhere.
    lead = {**next(r for r in leads if _sendable(r)), "Status": "Open"}
    lead["Id"] = f"00Q9{len(leads):011d}AAA"
    box.salesforce.insert("Lead", lead)
    when = at or datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "LeadId": lead["Id"],
        "Field": "Status",
        "OldValue": "Open",
        "NewValue": "MQL",
        "CreatedDate": sf_datetime(when),
        "IsDeleted": False,
    }


@pytest.fixture(scope="module")
def two_pages_tables() -> dict[str, list[dict[str, object]]]:
    # Enough leads for more than one claim page of Google Ads rows (CLAIM_PAGE, 2,000).
    return generate(n_leads=5000, seed=11, now=NOW).tables()


@pytest.fixture
def two_pages(two_pages_tables: dict[str, list[dict[str, object]]]) -> Iterator[Sandbox]:
    tables = {name: [dict(r) for r in rows] for name, rows in two_pages_tables.items()}
    with Sandbox(tables) as box:
        yield box


def ads_pages(box: Sandbox, state_url: str) -> Settings:
    """Google Ads requests of 500 rows, one at a time: its claim pages are CLAIM_PAGE rows
    (a page is a request's rows times the requests in the air, at least CLAIM_PAGE)."""
    settings = settings_for(box, state_url)
    ads = settings.google_ads.model_copy(update={"batch_size": 500, "max_concurrency": 1})
    return settings.model_copy(update={"google_ads": ads})


def test_pages_claimed_ahead_are_each_delivered_once(two_pages: Sandbox, state_url: str) -> None:
    assert run(ads_pages(two_pages, state_url)).status == "ok"  # type: ignore[attr-defined]
    _, rows = ledger_rows(state_url)
    delivered = [r for r in rows if r["destination"] == "google_ads" and r["status"] == "delivered"]
    assert len(delivered) > CLAIM_PAGE  # a second page, claimed while the first was sent
    assert len(delivered) == len(two_pages.datamanager.conversions)
    # None sent twice, and no request short but the last: ready rows past a page's last
    # whole request open the next page's first one.
    assert two_pages.datamanager.requests == math.ceil(len(delivered) / 500)
    assert not [r for r in rows if r["status"] in ("pending", "in_flight")]


def test_rows_google_would_refuse_are_taken_out_before_requests_are_cut(
    two_pages: Sandbox, state_url: str
) -> None:
    settings = ads_pages(two_pages, state_url)
    # From 120 days back: the oldest conversions are past Google's 90-day window.
    start = (NOW - timedelta(days=120)).date()
    salesforce = settings.salesforce.model_copy(update={"start_date": start})
    run(settings.model_copy(update={"salesforce": salesforce}))
    _, rows = ledger_rows(state_url)
    expired = [r for r in rows if r["reason"] == "expired_event"]
    assert len(expired) > 100 and {r["status"] for r in expired} == {"rejected"}
    bodies = two_pages.datamanager.received_bodies
    sizes = [len(re.findall(r"^events \{", body, re.MULTILINE)) for body in bodies]
    assert len(sizes) > 4 and set(sizes[:-1]) == {500}  # every request full but the last


def test_a_page_claimed_ahead_goes_back_when_its_destination_stops(
    two_pages: Sandbox, sqlite_url: str
) -> None:
    body = status_body(403, "PERMISSION_DENIED", "The caller does not have permission.")
    fault = Fault(status=403, body=body, path_contains=INGEST_PATH)
    two_pages.datamanager.faults.randomly(1.0, [fault])
    summary = run(ads_pages(two_pages, sqlite_url))
    assert "google_ads" in summary.destination_errors  # type: ignore[attr-defined]
    assert two_pages.datamanager.requests == 1  # the first request stopped the destination
    _, rows = ledger_rows(sqlite_url)
    ads = Counter(r["status"] for r in rows if r["destination"] == "google_ads")
    # The second page, claimed ahead meanwhile, went back with the first, untried.
    assert "in_flight" not in ads and ads["pending"] > CLAIM_PAGE
    assert not [r for r in rows if r["destination"] == "google_ads" and r["attempts"]]


@pytest.mark.parametrize("batch_size", [500, CLAIM_PAGE], ids=["mid-page", "page-end"])
def test_a_page_claimed_ahead_goes_back_when_the_run_is_told_to_stop(
    two_pages: Sandbox, sqlite_url: str, batch_size: int
) -> None:
    # Each request takes 0.5 s: the next page is claimed ahead while this one is sent.
    # With a page per request, the stop is found between pages, not between requests.
    slow = Fault(delay_seconds=0.5, then_serve=True, path_contains=INGEST_PATH)
    two_pages.datamanager.faults.randomly(1.0, [slow])
    settings = ads_pages(two_pages, sqlite_url)
    ads_settings = settings.google_ads.model_copy(update={"batch_size": batch_size})
    ads = _stopped_once_sending(
        two_pages, settings.model_copy(update={"google_ads": ads_settings}), "google_ads"
    )
    # Settled, or back in the queue untried: no row waits out a lease for the next run.
    assert "in_flight" not in ads and ads["pending"] > 0
    assert ads["delivered"] == len(two_pages.datamanager.conversions)


def test_a_stop_inside_the_queues_last_ga4_chunk_says_the_run_stopped(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    # GA4 alone, its whole queue one chunk: the stop comes while that chunk's requests are
    # in the air, and the requests not sent yet go back with no outcome.
    sandbox.ga4.faults.randomly(1.0, [Fault(delay_seconds=0.5, then_serve=True)])
    settings = settings_for(sandbox, sqlite_url)
    no_ads = settings.google_ads.model_copy(update={"operating_account_id": ""})
    ga4 = _stopped_once_sending(sandbox, settings.model_copy(update={"google_ads": no_ads}), "ga4")
    assert "in_flight" not in ga4 and ga4["pending"] > 0


def test_a_stop_while_a_backfills_bulk_job_runs_keeps_the_stream_a_backfill(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    from connector.ledger import Ledger

    settings = sandbox.settings(sqlite_url, MAPPING, salesforce={"bulk_threshold": 2})
    sandbox.salesforce.bulk_jobs.polls_before_complete = 1_000  # a job that runs for minutes
    stopper = threading.Thread(target=_stop_once_bulk_polled, args=(sandbox,), daemon=True)
    stopper.start()
    try:
        stopped = run(settings)
    finally:
        stopper.join()
        stopping.reset()
    assert "SIGTERM" in stopped.stopped  # type: ignore[attr-defined]
    assert ledger_rows(sqlite_url) == ([], [])
    assert Ledger.open(sqlite_url).cursors.get(STREAM) is None  # no bookmark: still a backfill

    sandbox.salesforce.bulk_jobs.polls_before_complete = 0
    jobs = sandbox.salesforce.bulk_calls["LeadHistory"]
    assert run(settings).status == "ok"  # type: ignore[attr-defined]
    assert sandbox.salesforce.bulk_calls["LeadHistory"] > jobs + 2  # through Bulk again
    assert ledger_rows(sqlite_url)[0]


def test_a_salesforce_failure_while_told_to_stop_ends_as_stopped_not_failed(
    sandbox: Sandbox, sqlite_url: str
) -> None:
    from connector.ledger import Ledger

    # The first query's 503 comes after the stop: not tried again, and the run says it
    # stopped (exit 4, run again later), not that Salesforce failed.
    sandbox.salesforce.faults.push(Fault(status=503, delay_seconds=0.5, path_contains="/query"))
    stopper = threading.Thread(target=_stop_once_taken, args=(sandbox,), daemon=True)
    stopper.start()
    try:
        stopped = run(settings_for(sandbox, sqlite_url))
    finally:
        stopper.join()
        stopping.reset()
    assert stopped.status == "partial" and "SIGTERM" in stopped.stopped  # type: ignore[attr-defined]
    assert stopped.exit_code == 4  # type: ignore[attr-defined]
    assert ledger_rows(sqlite_url) == ([], [])
    assert Ledger.open(sqlite_url).cursors.get(STREAM) is None  # the cursor stayed

    assert run(settings_for(sandbox, sqlite_url)).status == "ok"  # type: ignore[attr-defined]
    assert ledger_rows(sqlite_url)[0]


def _stop_once_taken(box: Sandbox) -> None:
    deadline = time.monotonic() + 60
    while len(box.salesforce.faults) and time.monotonic() < deadline:
        time.sleep(0.02)
    stopping.request()  # while the faulted request waits out its delay


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("CONNECTOR_TEST_POSTGRES_URL not set (.ci/run starts a PostgreSQL server)")
    yield from _postgres_database()


def test_a_worker_that_reaches_a_stream_another_pulled_meanwhile_reads_on_from_there(
    data_tables: dict[str, list[dict[str, object]]], postgres_url: str
) -> None:
    from connector.ledger import Ledger

    tables = {name: [dict(r) for r in rows] for name, rows in data_tables.items()}
    with Sandbox(tables) as box:
        settings = settings_for(box, postgres_url)
        # Both runs first ask Google about an earlier request; the late one waits there,
        # having read the bookmarks (none yet), while the other pulls every stream.
        Ledger.open(postgres_url).requests.save("google_ads", {"request-before": 1})
        box.datamanager.faults.push(
            Fault(delay_seconds=5, then_serve=True, path_contains=STATUS_PATH)
        )
        late: list[object] = []
        worker = threading.Thread(target=lambda: late.append(run(settings)), daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while len(box.datamanager.faults) and time.monotonic() < deadline:
            time.sleep(0.02)
        first = run(settings)
        worker.join(60)
    assert first.new > 0  # type: ignore[attr-defined]
    # From the first one's bookmark (its overlap window), not a second backfill.
    assert late[0].new == 0  # type: ignore[attr-defined]
    assert late[0].pulled < first.pulled / 4  # type: ignore[attr-defined]


def _stop_once_bulk_polled(box: Sandbox) -> None:
    deadline = time.monotonic() + 60
    while box.salesforce.bulk_calls.get("LeadHistory", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stopping.request()


def _stopped_once_sending(box: Sandbox, settings: Settings, destination: str) -> Counter[str]:
    """Run, told to stop once `destination`'s first request arrives; the run must say it
    stopped. The statuses of the destination's rows."""
    api = "ga4" if destination == "ga4" else "datamanager"
    threading.Thread(target=_stop_once_sending, args=(box, api), daemon=True).start()
    try:
        summary = run(settings)
    finally:
        stopping.reset()
    assert summary.stopped  # type: ignore[attr-defined]
    _, rows = ledger_rows(settings.state_url)
    return Counter(str(r["status"]) for r in rows if r["destination"] == destination)


def _stop_once_sending(box: Sandbox, api: str) -> None:
    deadline = time.monotonic() + 60
    while getattr(box, api).requests < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    stopping.request()  # what SIGTERM's handler does
