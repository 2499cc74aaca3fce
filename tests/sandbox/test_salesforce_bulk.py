"""Bulk API 2.0 query jobs on the Salesforce emulator, driven by simple-salesforce's bulk2 (TLS)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import Operation, SFBulk2Type
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from connector_sandbox.salesforce import SalesforceEmulator

LEAD, OTHER_LEAD = "00Q000000000001AAA", "00Q000000000002AAA"
HISTORY_ROWS = 25
TRICKY_COMPANY = 'Müller, "Rhein" & Söhne\nGmbH'
HISTORY = "SELECT Id, LeadId, NewValue, CreatedDate FROM LeadHistory ORDER BY Id"


def org() -> dict[str, list[dict[str, Any]]]:
    leads = [
        {
            "Id": LEAD,
            "CreatedDate": "2026-11-01T08:00:00.000+0000",
            "Email": "buyer@example.com",
            "Company": TRICKY_COMPANY,
            "IsConverted": True,
        },
        {"Id": OTHER_LEAD, "CreatedDate": "2026-11-02T08:00:00.000+0000", "IsConverted": False},
    ]
    history = [
        {
            "Id": f"017000000000{i:03d}AAA",
            "LeadId": (LEAD, OTHER_LEAD, None)[i % 3],  # every third row lost its lead
            "Field": "Status",
            "OldValue": "Open",
            "NewValue": "MQL",
            "CreatedDate": f"2026-11-10T10:{i:02d}:00.000+0000",
        }
        for i in range(HISTORY_ROWS)
    ]
    return {"Lead": leads, "LeadHistory": history}


def bulk(client: Salesforce, sobject: str = "LeadHistory") -> SFBulk2Type:
    handler: Any = client.bulk2
    job: SFBulk2Type = getattr(handler, sobject)
    return job


def pages(client: Salesforce, soql: str, max_records: int = 50_000) -> list[str]:
    # wait=0: the client's first status poll comes at once, later ones after a few ms.
    return [str(page) for page in bulk(client).query(soql, max_records=max_records, wait=0)]


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_pages_follow_the_locator_until_null(client: Salesforce, tmp_path: Path) -> None:
    results = bulk(client).download(HISTORY, str(tmp_path), max_records=10, wait=0)
    assert [r["number_of_records"] for r in results] == [10, 10, 5]
    locators = [r["locator"] for r in results]
    assert locators[0] and locators[1] and locators[0] != locators[1]
    assert locators[2] == ""  # the client's reading of `Sforce-Locator: null`
    ids = [row[0] for r in results for row in rows(Path(r["file"]).read_text("utf-8"))[1:]]
    rest_ids = [r["Id"] for r in client.query_all(HISTORY)["records"]]
    assert ids == rest_ids  # same order as REST, nothing lost or repeated at page edges


def test_csv_is_quoted_dotted_with_empty_nulls_and_lowercase_booleans(client: Salesforce) -> None:
    soql = (
        "SELECT Id, LeadId, CreatedDate, Lead.Email, Lead.Company, Lead.IsConverted "
        "FROM LeadHistory WHERE Id IN ('017000000000000AAA', '017000000000001AAA', "
        "'017000000000002AAA') ORDER BY Id"
    )
    (text,) = pages(client, soql)
    assert text.startswith('"Id","LeadId","CreatedDate","Lead.Email","Lead.Company"')
    assert text.endswith('""\n')  # every cell quoted, null as an empty cell, LF line ends
    header, with_lead, other_lead, orphan = rows(text)
    assert header[3:] == ["Lead.Email", "Lead.Company", "Lead.IsConverted"]
    assert with_lead == [
        "017000000000000AAA",
        LEAD,
        "2026-11-10T10:00:00.000Z",  # Bulk CSV writes UTC as Z
        "buyer@example.com",
        TRICKY_COMPANY,  # comma, quotes and a newline survive RFC 4180 quoting
        "true",
    ]
    assert other_lead[1:] == [OTHER_LEAD, "2026-11-10T10:01:00.000Z", "", "", "false"]
    assert orphan[1:] == ["", "2026-11-10T10:02:00.000Z", "", "", ""]


def test_a_job_polled_early_says_in_progress(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.bulk_jobs.polls_before_complete = 1
    jobs = bulk(client)._client  # the job-level calls query() makes, one by one
    job = jobs.create_job(Operation.query, HISTORY)
    assert job["state"] == "UploadComplete" and job["object"] == "LeadHistory"
    with pytest.raises(SalesforceGeneralError) as early:
        jobs.get_query_results(job["id"])
    assert early.value.status == 412 and early.value.content[0]["errorCode"] == "JOB_NOT_COMPLETE"
    assert jobs.get_job(job["id"], True)["state"] == "InProgress"
    info = jobs.get_job(job["id"], True)
    assert info["state"] == "JobComplete" and info["numberRecordsProcessed"] == HISTORY_ROWS


def test_a_job_takes_time_to_process_its_rows(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.bulk_jobs.rows_per_second = HISTORY_ROWS / 0.3  # the job takes 0.3 s
    jobs = bulk(client)._client
    job = jobs.create_job(Operation.query, HISTORY)
    assert jobs.get_job(job["id"], True)["state"] == "InProgress"
    time.sleep(0.3)
    assert jobs.get_job(job["id"], True)["state"] == "JobComplete"


def test_the_client_polls_until_complete(client: Salesforce, emulator: SalesforceEmulator) -> None:
    emulator.bulk_jobs.polls_before_complete = 3
    assert len(rows(pages(client, HISTORY)[0])) == HISTORY_ROWS + 1
    # create + 3 polls answered InProgress + the JobComplete one + one page of results
    assert emulator.bulk_calls == {"LeadHistory": 6}


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM LeadHistory ORDER BY Id LIMIT 5 OFFSET 10", "API_ERROR"),
        ("SELECT Id FROM LeadHistory OFFSET 0", "API_ERROR"),
        ("SELECT COUNT() FROM LeadHistory", "API_ERROR"),
        ("SELECT Id, Nope__c FROM LeadHistory", "INVALID_FIELD"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
        (
            "SELECT Id FROM LeadHistory WHERE CreatedDate > '2026-01-01T00:00:00Z'",
            "INVALID_QUERY_FILTER_OPERATOR",
        ),
    ],
)
def test_queries_bulk_refuses_fail_when_the_job_is_created(
    client: Salesforce, soql: str, code: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as refused:
        pages(client, soql)
    error = refused.value.content[0]
    assert error["errorCode"] == code
    if code == "API_ERROR":
        assert error["message"].endswith("not supported in Bulk Query")


def test_order_by_and_limit_are_allowed(client: Salesforce) -> None:
    (text,) = pages(client, "SELECT Id FROM LeadHistory ORDER BY Id DESC LIMIT 3")
    assert [r[0] for r in rows(text)] == ["Id", *(f"017000000000{i:03d}AAA" for i in (24, 23, 22))]


def test_query_all_includes_deleted_rows(client: Salesforce, emulator: SalesforceEmulator) -> None:
    emulator.delete("LeadHistory", "017000000000004AAA")
    live = rows(pages(client, HISTORY)[0])[1:]
    every = rows(next(bulk(client).query_all(HISTORY, wait=0)))[1:]
    assert len(live) == HISTORY_ROWS - 1 and len(every) == HISTORY_ROWS
    assert "017000000000004AAA" in {r[0] for r in every} - {r[0] for r in live}


def test_every_call_counts_against_the_daily_limit(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    before = emulator.api_usage
    assert len(pages(client, HISTORY, max_records=10)) == 3
    # create, the JobComplete poll, three pages
    assert emulator.bulk_calls == {"LeadHistory": 5}
    assert emulator.api_usage - before == 5
    assert emulator.query_calls == {}  # REST query counters are separate


def test_over_the_daily_limit_a_job_is_refused(
    client: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.set_api_usage(emulator.api_limit)
    with pytest.raises(SalesforceRefusedRequest) as refused:
        pages(client, HISTORY)
    assert refused.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_an_aborted_job_has_no_results_and_a_deleted_one_is_gone(client: Salesforce) -> None:
    jobs = bulk(client)._client
    job_id = jobs.create_job(Operation.query, HISTORY)["id"]
    assert jobs.abort_job(job_id, True)["state"] == "Aborted"
    assert jobs.get_job(job_id, True)["state"] == "Aborted"
    with pytest.raises(SalesforceGeneralError):
        jobs.get_query_results(job_id)
    url = f"{client.bulk2_url}query/{job_id}"
    # simple-salesforce's delete_job expects a JSON body; Salesforce answers 204 without one.
    assert client.session.delete(url, headers=client.headers, timeout=5).status_code == 204
    assert client.session.get(url, headers=client.headers, timeout=5).status_code == 404
