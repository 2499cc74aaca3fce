"""The Bulk API 2.0 reader against the emulator, through the real simple-salesforce client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from connector import stopping
from connector.errors import SourceError
from connector.source import bulk
from connector.source.bulk import bulk_pages
from connector.source.salesforce import parse_sf_datetime
from connector_sandbox.faults import Fault
from connector_sandbox.salesforce import SalesforceEmulator

LEAD, OTHER_LEAD = "00Q000000000001AAA", "00Q000000000002AAA"
ROWS = 25
SELECT = "SELECT Id, LeadId, NewValue, CreatedDate, Lead.Email, Lead.IsConverted, Lead.GCLID__c"
HISTORY = f"{SELECT} FROM LeadHistory ORDER BY Id"


def history_id(i: int) -> str:
    return f"017000000000{i:03d}AAA"


def org() -> dict[str, list[dict[str, Any]]]:
    leads = [
        {
            "Id": LEAD,
            "CreatedDate": "2026-11-01T08:00:00.000+0000",
            "Email": 'o"brien, jr.@example.com',
            "IsConverted": True,
            "GCLID__c": None,
        },
        {"Id": OTHER_LEAD, "CreatedDate": "2026-11-02T08:00:00.000+0000", "IsConverted": False},
    ]
    history = [
        {
            "Id": history_id(i),
            "LeadId": (LEAD, OTHER_LEAD, None)[i % 3],  # every third row lost its lead
            "Field": "Status",
            "OldValue": "Open",
            "NewValue": "MQL" if i % 2 else "Closed - Converted",
            "CreatedDate": f"2026-11-10T10:{i:02d}:00.000+0000",
        }
        for i in range(ROWS)
    ]
    return {"Lead": leads, "LeadHistory": history}


def read(client: Salesforce, soql: str = HISTORY, **options: Any) -> list[list[dict[str, Any]]]:
    return [
        list(page) for page in bulk_pages(client, "LeadHistory", soql, poll_seconds=0, **options)
    ]


def test_records_come_back_rest_shaped(client: Salesforce) -> None:
    (page,) = read(client)
    by_id = {r["Id"]: r for r in page}
    assert by_id[history_id(0)] == {
        "Id": history_id(0),
        "LeadId": LEAD,
        "NewValue": "Closed - Converted",
        "CreatedDate": "2026-11-10T10:00:00.000Z",
        "Lead": {"Email": 'o"brien, jr.@example.com', "IsConverted": True, "GCLID__c": None},
    }
    assert by_id[history_id(1)]["Lead"] == {"Email": None, "IsConverted": False, "GCLID__c": None}
    # No parent: REST sends "Lead": null, and so does the reader.
    assert by_id[history_id(2)]["Lead"] is None and by_id[history_id(2)]["LeadId"] is None


def test_records_match_the_rest_query(client: Salesforce) -> None:
    rest = client.query_all(HISTORY)["records"]
    (page,) = read(client)
    assert [_comparable(r) for r in page] == [_comparable(r) for r in rest]


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    # Bulk CSV and REST JSON differ only in the attributes and in how UTC is written.
    out = {k: v for k, v in record.items() if k != "attributes"}
    if isinstance(out.get("Lead"), dict):
        out["Lead"] = _comparable(out["Lead"])
    if isinstance(out.get("CreatedDate"), str):
        out["CreatedDate"] = parse_sf_datetime(out["CreatedDate"])
    return out


@pytest.mark.parametrize(("page_size", "sizes"), [(10, [10, 10, 5]), (5, [5] * 5), (25, [25])])
def test_page_sizes(client: Salesforce, page_size: int, sizes: list[int]) -> None:
    assert [len(p) for p in read(client, page_size=page_size)] == sizes


def test_the_next_page_is_asked_for_while_this_one_is_read(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    pages = bulk_pages(client, "LeadHistory", HISTORY, page_size=10, poll_seconds=0)
    first = next(pages)
    # Create, a poll, page 1, and page 2 asked for ahead; page 3 only once page 2 is taken.
    _wait_for(lambda: emulator.bulk_calls == {"LeadHistory": 4})
    assert len(list(first)) == 10
    assert emulator.bulk_calls == {"LeadHistory": 4}
    assert sum(len(list(p)) for p in pages) == ROWS - 10
    assert emulator.bulk_calls == {"LeadHistory": 5}  # each page asked for once


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_a_page_left_unread_stops_the_read_instead_of_losing_its_rows(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    pages = bulk_pages(client, "LeadHistory", HISTORY, page_size=10, poll_seconds=0)
    first = next(pages)
    next(first)  # its other nine rows are still on the wire
    with pytest.raises(RuntimeError, match="left unread"):
        next(pages)
    assert emulator.bulk_calls == {"LeadHistory": 4}  # page 2 was asked for, never handed out


@pytest.mark.parametrize("order", [(), ("CreatedDate", "Id")])
def test_the_last_page_left_unread_stops_the_read_too(
    client: Salesforce, order: tuple[str, ...]
) -> None:
    pages = bulk_pages(client, "LeadHistory", HISTORY, order=order, page_size=ROWS, poll_seconds=0)
    next(next(pages))
    with pytest.raises(RuntimeError, match="left unread"):
        next(pages)


def test_a_sorted_page_left_unread_stops_the_read_instead_of_shifting_its_rows(
    client: Salesforce,
) -> None:
    pages = bulk_pages(client, "LeadHistory", HISTORY, order=ORDER, page_size=10, poll_seconds=0)
    next(next(pages))  # its other nine rows would become the next page's first
    with pytest.raises(RuntimeError, match="left unread"):
        next(pages)


def test_the_first_poll_waits_for_the_rows_the_job_is_expected_to_hold(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.bulk_jobs.rows_per_second = ROWS / 0.2  # each job takes 0.2 s
    # 30,000 rows at ROWS_PER_SECOND (100,000) add 0.3 s before the first poll.
    pages = bulk_pages(client, "LeadHistory", HISTORY, poll_seconds=0.05, expected_rows=30_000)
    assert sum(len(list(p)) for p in pages) == ROWS
    assert emulator.bulk_calls == {"LeadHistory": 3}  # create, one poll, one page
    # Told nothing, the reader polls after 0.05 s, then 0.1 s later, ...: more than once.
    unsized = bulk_pages(client, "LeadHistory", HISTORY, poll_seconds=0.05)
    assert sum(len(list(p)) for p in unsized) == ROWS
    assert emulator.bulk_calls["LeadHistory"] > 3 + 3


def test_a_reset_connection_on_a_page_is_a_retryable_source_error(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.faults.push(Fault(reset=True, path_contains="/results"))
    with pytest.raises(SourceError) as reset:
        read(client)
    assert "cannot reach Salesforce" in str(reset.value) and reset.value.retryable


def test_include_deleted_reads_deleted_rows(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.delete("LeadHistory", history_id(7))
    live = {r["Id"] for p in read(client) for r in p}
    every = {r["Id"] for p in read(client, include_deleted=True) for r in p}
    assert history_id(7) not in live and every - live == {history_id(7)}


def test_an_incremental_history_query_runs_as_a_bulk_job(client: Salesforce) -> None:
    # The connector's shape: unquoted datetime literal, ORDER BY (allowed, unlike OFFSET).
    soql = (
        f"{SELECT} FROM LeadHistory WHERE Field = 'Status' AND CreatedDate >= 2026-11-10T10:20:00Z "
        "ORDER BY CreatedDate ASC, Id ASC"
    )
    (page,) = read(client, soql)
    assert [r["Id"] for r in page] == [history_id(i) for i in range(20, ROWS)]
    assert all(parse_sf_datetime(r["CreatedDate"]).minute >= 20 for r in page)


def test_an_empty_result_is_one_empty_page(client: Salesforce) -> None:
    assert read(client, f"{SELECT} FROM LeadHistory WHERE Field = 'Nope'") == [[]]


def test_a_query_bulk_refuses_is_a_source_error(client: Salesforce) -> None:
    with pytest.raises(SourceError) as refused:
        read(client, f"{HISTORY} OFFSET 5")
    assert "API_ERROR" in str(refused.value) and not refused.value.retryable


def test_an_expired_session_is_a_retryable_source_error(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.expire_sessions()
    with pytest.raises(SourceError) as expired:
        read(client)
    assert "INVALID_SESSION_ID" in str(expired.value) and expired.value.retryable


def test_a_failed_job_is_a_retryable_source_error(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.bulk_jobs.failure = "Query timed out: retried more than 15 times"
    with pytest.raises(SourceError) as failed:
        read(client)
    assert "failed" in str(failed.value) and failed.value.retryable
    assert "15 times" not in str(failed.value)  # the job's own text is not echoed


UNSORTED = f"{SELECT} FROM LeadHistory"  # no ORDER BY, as the connector asks (it stops chunking)
ORDER = ("CreatedDate", "Id")


def test_records_asked_for_in_order_come_sorted_in_pages_of_the_sizes_read(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    # Rows stamped before every other, added last: the job hands them out last.
    for i in range(5):
        emulator.insert("LeadHistory", _early_row(i))
    assert [r["Id"] for p in read(client, UNSORTED) for r in p][-1] == history_id(100)
    pages = read(client, UNSORTED, page_size=10, order=ORDER)
    assert [len(p) for p in pages] == [10, 10, 10]
    # As the same query's ORDER BY gives them, ties on CreatedDate broken by Id.
    by_rest = client.query_all(f"{UNSORTED} ORDER BY CreatedDate ASC, Id ASC")["records"]
    assert [r["Id"] for p in pages for r in p] == [r["Id"] for r in by_rest]
    assert [r["Id"] for r in pages[0][:3]] == [history_id(100), history_id(101), history_id(102)]


def _early_row(i: int) -> dict[str, Any]:
    minute = min(i, 3)  # the last two added share a minute: the smaller Id first
    return {
        "Id": history_id(100 + (4 - i)),
        "LeadId": LEAD,
        "Field": "Status",
        "NewValue": "MQL",
        "CreatedDate": f"2026-11-09T10:{3 - minute:02d}:00.000+0000",
    }


def test_an_empty_result_asked_for_in_order_is_one_empty_page(client: Salesforce) -> None:
    assert read(client, f"{UNSORTED} WHERE Field = 'Nope'", order=ORDER) == [[]]


def test_a_sort_field_the_query_does_not_select_is_a_source_error(client: Salesforce) -> None:
    with pytest.raises(SourceError) as missing:
        read(client, UNSORTED, order=("SystemModstamp", "Id"))
    assert "no SystemModstamp column" in str(missing.value) and not missing.value.retryable


@pytest.mark.parametrize("order", [(), ORDER])
def test_a_row_of_the_wrong_width_is_a_retryable_source_error(
    client: Salesforce, emulator: SalesforceEmulator, order: tuple[str, ...]
) -> None:
    csv_page = b'"Id","CreatedDate"\n"017000000000000AAA"\n'
    headers = {"Content-Type": "text/csv", "Sforce-Locator": "null"}
    emulator.faults.push(Fault(200, csv_page, headers, path_contains="/results"))
    with pytest.raises(SourceError) as short:
        read(client, UNSORTED, order=order)
    assert "not the CSV asked for" in str(short.value) and short.value.retryable


def test_told_to_stop_while_the_job_runs_it_hands_out_no_page(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.bulk_jobs.polls_before_complete = 100  # a job that would run for minutes
    started = time.monotonic()
    with _stop_after(0.2):
        pages = bulk_pages(client, "LeadHistory", UNSORTED, order=ORDER, poll_seconds=0.05)
        assert list(pages) == []
    assert time.monotonic() - started < 2  # within the next poll's wait, not after the job
    assert emulator.bulk_calls["LeadHistory"] < 10
    assert emulator.bulk_job_states == ["Aborted"]  # no longer working on the org's side


def test_a_job_that_outlasts_the_wait_limit_is_aborted_and_a_retryable_error(
    client: Salesforce, emulator: SalesforceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.bulk_jobs.polls_before_complete = 100
    monkeypatch.setattr(bulk, "WAIT_LIMIT_SECONDS", 0.2)
    with pytest.raises(SourceError, match="timed out") as raised:
        list(bulk_pages(client, "LeadHistory", UNSORTED, poll_seconds=0.05))
    assert raised.value.retryable
    assert emulator.bulk_job_states == ["Aborted"]


def test_a_job_that_cannot_be_aborted_still_stops_the_read(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.bulk_jobs.polls_before_complete = 100
    emulator.faults.push(Fault(status=503, method="PATCH"), times=1)
    with _stop_after(0.2):
        pages = bulk_pages(client, "LeadHistory", UNSORTED, order=ORDER, poll_seconds=0.05)
        assert list(pages) == []
    assert emulator.bulk_job_states == ["InProgress"]  # left to end by itself


def test_told_to_stop_while_pages_are_spilled_it_hands_out_no_page(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    # Each result page takes 0.3 s to come; the stop comes while the first is on its way.
    slow = Fault(delay_seconds=0.3, then_serve=True, path_contains="/results")
    emulator.faults.push(slow, times=3)
    with _stop_after(0.15):
        assert read(client, UNSORTED, order=ORDER, page_size=10) == []


@contextmanager
def _stop_after(seconds: float) -> Iterator[None]:
    """A stop requested `seconds` from now (what SIGTERM's handler does); gone afterwards."""
    timer = threading.Timer(seconds, stopping.request)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        stopping.reset()
