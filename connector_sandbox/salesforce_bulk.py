"""Bulk API 2.0 query jobs for the Salesforce emulator, as simple-salesforce's `bulk2` runs them.

`sf.bulk2.<Object>.query(soql, max_records=N)` (simple-salesforce 1.12.10)
POSTs `/services/data/vXX.X/jobs/query` with `{"operation", "query",
"columnDelimiter", "lineEnding"}`, polls `GET /jobs/query/{id}` until the state
is `JobComplete`, then GETs `/jobs/query/{id}/results?maxRecords=N[&locator=L]`
until the `Sforce-Locator` header says `null`. `bulk2.<Object>.query_all` does
the same with `operation: queryAll` (deleted rows included).

The SOQL is parsed and checked when the job is created, as Salesforce does:
a bad field is a 400 with the usual SOQL error code. On top of that Bulk API
2.0 refuses OFFSET and aggregate functions such as COUNT() (GROUP BY is
already outside the emulator's SOQL subset); those get a 400 `API_ERROR`
with a "... not supported in Bulk Query" message in the style Salesforce uses
for compound fields (the exact wording is the emulator's). ORDER BY and LIMIT
are allowed: on a real org they only disable PK chunking.

A job keeps the matching records by reference (a list of pointers into the
store) and renders each page of CSV only when asked, so a 200,000-row job
costs the emulator a list, not 200,000 projected copies. The flip side: a
record changed after the job was created shows its new values, where
Salesforce would serve the snapshot it took.

CSV as Salesforce writes it: a header row in the selected order with parent
fields dotted (`Lead.Email`), every cell quoted, null as an empty cell,
booleans `true` / `false`, datetimes with a `Z` (`2026-11-20T14:03:11.000Z`).
A job takes time, as a real one does: it reports `InProgress` until
`rows_per_second` would have processed its rows since it was created
(200,000 a second, so 0.5 s for 100,000 rows), and on its first
`polls_before_complete` status polls whatever the time (0 unless a test asks
for polling). With `failure` set it then ends `Failed` (as a real job does
after a query timeout). Every HTTP call counts against the
emulator's daily API usage (the caller does that) and in `calls`, per object.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector_sandbox.dataset import sf_datetime, sf_id
from connector_sandbox.salesforce import NEWEST_VERSION, _not_found, _sf_error
from connector_sandbox.server import Request, Response
from connector_sandbox.soql import (
    FieldPath,
    OrgStore,
    Query,
    Record,
    SoqlError,
    Step,
    parse_soql,
    select_rows,
    tokenize,
)

BULK_QUERY_SINCE = 47  # query jobs exist from API v47.0
_JOBS_KEPT = 64  # oldest job dropped beyond this: a long-running demo server stays bounded
_DEFAULT_MAX_RECORDS = 50_000  # when the client sends no maxRecords
_DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
_LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
_PENDING = ("UploadComplete", "InProgress")
ROWS_PER_SECOND = 200_000  # how fast a job is processed after it is created


@dataclass
class _Job:
    id: str
    operation: str  # query, queryAll
    sobject: str
    version: str
    delimiter: str  # the job's names: COMMA, LF, ...
    line_ending: str
    created: str
    header: list[str]
    paths: list[FieldPath]
    rows: list[Record]  # the matching store records themselves, in result order
    state: str = "UploadComplete"
    polls: int = 0
    ready_at: float = 0.0  # time.monotonic() once the job has processed its rows
    error: str | None = None  # errorMessage of a Failed job


class BulkQueryJobs:
    """The `/jobs/query` resources of one emulated org; callers hold the emulator's lock."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.polls_before_complete = 0  # status polls answered InProgress whatever the time
        self.rows_per_second = ROWS_PER_SECOND
        self.failure: str | None = None  # set: jobs end Failed with this errorMessage
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._calls: dict[str, int] = {}
        self._serial = 0

    def clear(self) -> None:
        self._jobs.clear()
        self._calls.clear()
        self.polls_before_complete = 0
        self.rows_per_second = ROWS_PER_SECOND
        self.failure = None

    @property
    def calls(self) -> dict[str, int]:
        """Bulk query HTTP calls (create, status, results, abort, delete) per object (a copy)."""
        return dict(self._calls)

    @property
    def states(self) -> list[str]:
        return [job.state for job in self._jobs.values()]

    def serve(self, store: OrgStore, request: Request, major: int, rest: str) -> Response:
        """Answer one request under `/services/data/vNN.0/jobs/query`."""
        if not BULK_QUERY_SINCE <= major <= NEWEST_VERSION:
            return _not_found()
        version = f"{major}.0"
        match = re.fullmatch(r"/jobs/query(?:/(\w+)(/results)?)?/?", rest)
        if match is None:
            return _not_found()
        job_id, results = match[1], match[2]
        if job_id is None:
            if request.method != "POST":
                return _not_found()
            return self._create(store, request, version)
        job = self._jobs.get(job_id)
        if job is None:
            return _not_found()
        self._calls[job.sobject] = self._calls.get(job.sobject, 0) + 1
        return self._on_job(store, request, job, results is not None)

    def _on_job(self, store: OrgStore, request: Request, job: _Job, results: bool) -> Response:
        if results:
            if request.method != "GET":
                return _not_found()
            return self._results(store, request, job)
        if request.method == "GET":
            self._advance(job)
            return Response(200, self._info(job, detailed=True))
        if request.method == "PATCH":
            return self._abort(request, job)
        if request.method == "DELETE":
            del self._jobs[job.id]
            return Response(204)
        return _not_found()

    # job creation
    def _create(self, store: OrgStore, request: Request, version: str) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _sf_error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        if not isinstance(body, dict):
            return _sf_error(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        problem = _bad_options(body)
        if problem is not None:
            return _sf_error(400, "INVALIDJOB", problem)
        soql = str(body.get("query") or "")
        try:
            job = self._plan(store, soql, body, version)
        except SoqlError as exc:
            return _sf_error(400, exc.code, exc.message)
        self._jobs[job.id] = job
        while len(self._jobs) > _JOBS_KEPT:
            self._jobs.popitem(last=False)
        return Response(200, self._info(job, detailed=False))

    def _plan(self, store: OrgStore, soql: str, body: dict[str, Any], version: str) -> _Job:
        """Parse, check and evaluate the query; the result keeps record references only."""
        query = parse_soql(soql)
        counted = store.object_name(query.sobject) or query.sobject
        self._calls[counted] = self._calls.get(counted, 0) + 1
        _check_bulk_limits(query, soql)
        sobject, paths, rows = select_rows(
            store, query, soql, include_deleted=body["operation"] == "queryAll"
        )
        self._serial += 1
        return _Job(
            id=sf_id("750", 8_000_000 + self._serial),
            operation=body["operation"],
            sobject=sobject,
            version=version,
            delimiter=body.get("columnDelimiter") or "COMMA",
            line_ending=body.get("lineEnding") or "LF",
            created=sf_datetime(datetime.now(UTC)),
            header=[_column(path) for path in paths],
            paths=paths,
            rows=rows,
            ready_at=time.monotonic() + len(rows) / self.rows_per_second,
        )

    # job status
    def _advance(self, job: _Job) -> None:
        # A status poll finds a pending job InProgress until its rows are processed.
        if job.state not in _PENDING:
            return
        job.polls += 1
        if job.polls <= self.polls_before_complete or time.monotonic() < job.ready_at:
            job.state = "InProgress"
        elif self.failure is not None:
            job.state, job.error = "Failed", self.failure
        else:
            job.state = "JobComplete"

    def _abort(self, request: Request, job: _Job) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            return _sf_error(400, "INVALIDJOBSTATE", "A query job can only be set to Aborted")
        if job.state not in _PENDING:
            detail = f"Job is already {job.state} and can no longer be aborted"
            return _sf_error(400, "INVALIDJOBSTATE", detail)
        job.state = "Aborted"
        return Response(200, self._info(job, detailed=False))

    def _info(self, job: _Job, *, detailed: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.sobject,
            "createdById": self.user_id,
            "createdDate": job.created,
            "systemModstamp": job.created,
            "state": job.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(job.version),
            "lineEnding": job.line_ending,
            "columnDelimiter": job.delimiter,
        }
        if detailed:
            complete = job.state == "JobComplete"
            info |= {
                "jobType": "V2Query",
                "numberRecordsProcessed": len(job.rows) if complete else 0,
                "retries": 0,
                "totalProcessingTime": 0,
                "isPkChunkingSupported": True,
            }
            if job.error is not None:
                info["errorMessage"] = job.error
        return info

    # results
    def _results(self, store: OrgStore, request: Request, job: _Job) -> Response:
        if job.state != "JobComplete":
            current = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", job.state).upper()
            detail = (
                "can only download query results of successfully completed bulk job with "
                f"status: JOB_COMPLETE. Current status: {current}"
            )
            return _sf_error(412, "JOB_NOT_COMPLETE", detail)
        page = _max_records(request.query.get("maxRecords"))
        start = _offset(request.query.get("locator"), len(job.rows))
        if page is None:
            detail = "maxRecords must be a positive integer"
            return _sf_error(400, "INVALID_QUERY_PARAMETER", detail)
        if start is None:
            return _sf_error(400, "INVALID_LOCATOR", "The locator is not valid for this job")
        end = min(start + page, len(job.rows))
        headers = {
            "Sforce-Locator": _locator(end) if end < len(job.rows) else "null",
            "Sforce-NumberOfRecords": str(end - start),
        }
        payload = _csv_page(store, job, start, end)
        return Response(200, raw=payload, headers=headers, content_type="text/csv")


# --------------------------------------------------------------------------- query evaluation


def _bad_options(body: dict[str, Any]) -> str | None:
    if body.get("operation") not in ("query", "queryAll"):
        return f"Invalid operation for a query job: {body.get('operation')!r}"
    if (body.get("columnDelimiter") or "COMMA") not in _DELIMITERS:
        return f"Invalid columnDelimiter: {body.get('columnDelimiter')!r}"
    if (body.get("lineEnding") or "LF") not in _LINE_ENDINGS:
        return f"Invalid lineEnding: {body.get('lineEnding')!r}"
    return None


def _check_bulk_limits(query: Query, soql: str) -> None:
    """Refuse what Bulk API 2.0 refuses and the REST query endpoint allows."""
    # The parser reads OFFSET into `query.offset`, where an explicit OFFSET 0 would not show.
    if any(t.kind == "ident" and t.text.upper() == "OFFSET" for t in tokenize(soql)):
        raise SoqlError("API_ERROR", "OFFSET not supported in Bulk Query")
    if query.count_only:
        detail = "Aggregate functions such as COUNT() not supported in Bulk Query"
        raise SoqlError("API_ERROR", detail)


def _column(path: FieldPath) -> str:
    return ".".join([*(step.relationship for step in path.steps), path.field])


# --------------------------------------------------------------------------- CSV pages


def _csv_page(store: OrgStore, job: _Job, start: int, end: int) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        delimiter=_DELIMITERS[job.delimiter],
        lineterminator=_LINE_ENDINGS[job.line_ending],
        quoting=csv.QUOTE_ALL,
    )
    writer.writerow(job.header)
    # Each distinct relationship chain (e.g. LeadHistory -> Lead) is followed once per
    # row, not once per selected parent field.
    chains = list(dict.fromkeys(path.steps for path in job.paths))
    columns = [(chains.index(path.steps), path.field, path.type) for path in job.paths]
    for index in range(start, end):
        record = job.rows[index]
        sources = [_follow(store, record, chain) for chain in chains]
        writer.writerow([_cell(_get(sources[at], name), kind) for at, name, kind in columns])
    return buffer.getvalue().encode("utf-8")


def _follow(store: OrgStore, record: Record, steps: tuple[Step, ...]) -> Record | None:
    current: Record | None = record
    for step in steps:
        current = store.parent(current, step) if current is not None else None
    return current


def _get(record: Record | None, name: str) -> Any:
    return None if record is None else record.get(name)


def _cell(value: Any, field_type: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if field_type == "datetime" and isinstance(value, str) and value.endswith("+0000"):
        return value[:-5] + "Z"  # Bulk CSV writes UTC as Z, REST JSON as +0000
    return str(value)


def _locator(offset: int) -> str:
    # Opaque to clients; Salesforce's look the same (base64 of a position, e.g. MTAwMDA).
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(locator: str | None, total: int) -> int | None:
    """Where a page starts: 0 without a locator, None for a locator this job never gave out."""
    if locator is None or locator in ("", "null"):
        return 0
    try:
        text = base64.urlsafe_b64decode(locator + "=" * (-len(locator) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and 0 < int(text) < total else None


def _max_records(text: str | None) -> int | None:
    if text is None:
        return _DEFAULT_MAX_RECORDS
    return int(text) if text.isdigit() and int(text) > 0 else None
