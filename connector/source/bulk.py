"""Large reads (backfills) through Salesforce Bulk API 2.0 query jobs, one CSV page at a time.

A REST query pages 2,000 records per call; a bulk query job pages up to
50,000 and costs a handful of calls for the whole job (create, a few status
polls, one call per page). The job is created and polled through the
client's `restful` calls, and its result pages are read from the wire as
they are iterated, through the client's own session: the pinned CA bundle,
timeout and instance URL of `connector.source.auth.connect` apply unchanged.
simple-salesforce's `bulk2` reader would hand each page over as one string
(decoded from the bytes it read, and kept while it fetches the next page):
up to four copies of a 50,000-row page at once, the largest thing a backfill
held.

Pages are yielded as REST-shaped records so the callers that read
`client.query` pages can read these too. CSV carries no types, so the
mapping back is by rule: an empty cell is None, `true` / `false` are
booleans, everything else stays a string (datetimes and amounts are parsed
where they are used). A text field whose value is literally "true" would
therefore come back as a bool; none of the fields the connector reads can.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from typing import Any, cast

import requests
import urllib3
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.util import call_salesforce

from connector import stopping
from connector.errors import SourceError
from connector.source.ahead import read_ahead
from connector.source.errors import source_error
from connector.source.spill import Row, Spill

log = logging.getLogger(__name__)
Record = dict[str, Any]
_CELLS: dict[str, Any] = {"": None, "true": True, "false": False}  # all else: text
MAX_POLL_SECONDS = 2.0  # the longest wait between two status polls
# The first poll waits for the rows the job is expected to hold at this rate, on top of
# poll_seconds: a large job is then found complete at its first poll (one API call) more
# often, and a job slower than this is polled every MAX_POLL_SECONDS, as before.
ROWS_PER_SECOND = 100_000
WAIT_LIMIT_SECONDS = 3 * 3600.0  # a job still running after this is given up (the run retries)
_ENDED = {"Failed": "failed", "Aborted": "was aborted"}


def bulk_pages(
    client: Salesforce,
    sobject: str,
    soql: str,
    *,
    order: Sequence[str] = (),
    page_size: int = 50_000,
    include_deleted: bool = False,
    poll_seconds: float = 1,
    expected_rows: int = 0,
    on_call: Callable[[], object] = lambda: None,
) -> Iterator[Iterator[Record]]:
    """Run `soql` as a Bulk API 2.0 query job and yield its result pages as REST-shaped records.

    `sobject` is the FROM object (for messages); `include_deleted` runs a queryAll job.
    Memory follows neither `page_size` nor the row count: a page's records are parsed
    from the response as they are iterated, and the next page's request is sent while
    this one is read. Read each page to its end before asking for the next: a page left
    unread raises RuntimeError (its rows would be lost). With `order` (fields of the
    query, none of a parent), the records come sorted by those fields, ascending, as
    the same query's ORDER BY would give them: the job's every page goes through a
    scratch file (`connector.source.spill`) first, and as many pages come out, of the
    same sizes. Told to stop (`connector.stopping`) while the job runs or its pages are
    read into the scratch file, it hands out no page. `poll_seconds` is the wait before
    the first status poll, plus the time `expected_rows` take at ROWS_PER_SECOND; each
    later one waits twice as long as the one before, up to MAX_POLL_SECONDS (one API call
    a poll). `on_call` is called before each API call the job makes (create, polls,
    result pages, an abort), so the caller can count them.
    Raises SourceError, as the REST reader does, if the job cannot be run.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    try:
        job = _create(client, soql, include_deleted, on_call)
        wait = poll_seconds + expected_rows / ROWS_PER_SECOND
        if not _wait(client, sobject, job, wait, on_call):
            return  # told to stop (SIGTERM): no rows, so the cursor stays where it was
        # The next page is asked for while this one is read: its locator is in this one's
        # headers, and its body waits on the wire (not in memory) until it is read.
        with closing(read_ahead(_results(client, job, page_size, on_call))) as pages:
            read = _one_read_at_a_time(pages)
            yield from _in_order(read, order) if order else (iter(page) for page in read)
    except SalesforceError as exc:
        raise source_error(exc) from None
    except requests.RequestException as exc:
        raise _unreachable(sobject, exc) from None


def _create(
    client: Salesforce, soql: str, include_deleted: bool, on_call: Callable[[], object]
) -> str:
    body = {
        "operation": "queryAll" if include_deleted else "query",
        "query": soql,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    }
    on_call()
    job = cast(dict[str, Any], client.restful("jobs/query", method="POST", json=body))
    return str(job["id"])


def _wait(
    client: Salesforce, sobject: str, job: str, poll_seconds: float, on_call: Callable[[], object]
) -> bool:
    """Poll the job until it is complete (True), or the run is told to stop (False); a
    failed, aborted or endless job is a SourceError."""
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    delay = poll_seconds
    while True:
        if stopping.wait(delay):  # a large job can take minutes: stop within the grace period
            _abort(client, sobject, job, on_call)
            return False
        on_call()
        state = cast(dict[str, Any], client.restful(f"jobs/query/{job}")).get("state")
        if state == "JobComplete":
            return True
        if state in _ENDED or time.monotonic() > deadline:
            if state not in _ENDED:
                _abort(client, sobject, job, on_call)
            # A failed job's errorMessage may quote the query's data: say only what happened.
            what = _ENDED.get(str(state), "timed out")
            raise SourceError(
                f"the Salesforce bulk query job on {sobject} {what}; "
                "the cursor was kept, rerun later",
                retryable=True,
            )
        delay = min(MAX_POLL_SECONDS, delay * 2)


def _abort(client: Salesforce, sobject: str, job: str, on_call: Callable[[], object]) -> None:
    """Stop a job this run gives up on, so that it stops working on the org's side; best
    effort (one call): the job may have ended meanwhile, and Salesforce drops jobs anyway
    after 7 days."""
    on_call()
    try:
        client.restful(f"jobs/query/{job}", method="PATCH", json={"state": "Aborted"})
    except (SalesforceError, requests.RequestException) as exc:
        log.info(
            "the Bulk query job on %s was left to end by itself: %s",
            sobject,
            type(exc).__name__,
            extra={"job": job},
        )


def _results(
    client: Salesforce, job: str, page_size: int, on_call: Callable[[], object]
) -> Iterator[_Page]:
    locator: str | None = ""
    while locator is not None:
        on_call()
        page, locator = _page(client, job, locator, page_size)
        yield page


def _one_read_at_a_time(pages: Iterator[_Page]) -> Iterator[_Page]:
    """`pages`, each only once the one before was read to its end (checked before the next
    is taken, so no further request goes out for a caller that skipped rows)."""
    last: _Page | None = None
    while last is None or last.done:
        if (last := next(pages, None)) is None:
            return
        yield last
    raise RuntimeError("a Bulk result page was left unread before the next")


def _page(client: Salesforce, job: str, locator: str, page_size: int) -> tuple[_Page, str | None]:
    """One result page, its body not read yet, and the next page's locator (None: last)."""
    params: dict[str, Any] = {"maxRecords": page_size}
    if locator:
        params["locator"] = locator
    response = call_salesforce(
        url=f"{client.base_url}jobs/query/{job}/results",
        method="GET",
        session=client.session,
        headers={**client.headers, "Accept": "text/csv"},
        params=params,
        stream=True,
    )
    following = response.headers.get("Sforce-Locator") or "null"
    return _Page(response), None if following == "null" else following


class _Page:
    """One page of Bulk CSV (header row first), parsed into REST-shaped records as they are
    read off the response: never the page's text, let alone 50,000 records, at once."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self.done = False

    def close(self) -> None:
        """Give the response's connection back unread (a page fetched ahead, never read)."""
        self._response.close()

    def __iter__(self) -> Iterator[Record]:
        lines = self.lines()
        header = next(lines, None)
        if header is not None:
            shape = _Shape.of_header(header)
            for row in lines:
                yield shape.record(row)

    def lines(self) -> Iterator[list[str]]:
        """The page's CSV rows, its header first, read off the response as they are iterated."""
        with closing(self._response) as response:
            raw = cast(urllib3.HTTPResponse, response.raw)
            raw.decode_content = True  # a gzip-encoded body, as requests would decode it
            raw.auto_close = False  # the wrapper reads its end as EOF, not as a closed file
            text = io.TextIOWrapper(cast(Any, raw), encoding="utf-8", newline="")  # endings kept
            try:
                rows = csv.reader(text, strict=True)
                header = next(rows, None)
                if header is not None:
                    yield header
                    for row in rows:
                        if len(row) != len(header):
                            raise _not_csv()
                        yield row
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _unreachable("its result page", exc) from None
            except (csv.Error, UnicodeDecodeError):
                raise _not_csv() from None
        self.done = True


def _in_order(pages: Iterator[_Page], order: Sequence[str]) -> Iterator[Iterator[Record]]:
    """The records of `pages` sorted by the `order` fields: every page is read into a
    spill, then pages of the sizes read are handed out."""
    with closing(Spill()) as spill:
        spilled = _spill(pages, order, spill)
        if spilled is not None:
            header, sizes = spilled
            yield from _sorted_pages(_Shape.of_header(header), spill.rows(), sizes)


def _spill(
    pages: Iterator[_Page], order: Sequence[str], spill: Spill
) -> tuple[list[str], list[int]] | None:
    """Every page's rows into `spill`: the job's header and its page sizes; None for a job
    of no header, or when told to stop (no row handed out yet: the cursor stays put)."""
    header: list[str] | None = None
    columns: list[int] = []
    sizes: list[int] = []
    while not stopping.requested():
        if (page := next(pages, None)) is None:
            return None if header is None else (header, sizes)
        lines = page.lines()
        if (first := next(lines, None)) is None:
            sizes.append(0)  # not even a header: a job of no rows
            continue
        if header is None:
            header, columns = first, _columns(first, order)
        elif first != header:
            raise _not_csv()  # every page of a job has the job's header
        held = spill.count
        spill.add(("\x1f".join([row[i] for i in columns]), row) for row in lines)
        sizes.append(spill.count - held)
    return None


def _sorted_pages(
    shape: _Shape, rows: Iterator[Row], sizes: list[int]
) -> Iterator[Iterator[Record]]:
    """Pages of `sizes` of `rows`, each to be read to its end before the next is taken, as
    the job's own pages: a page cut short would shift its rows into the later ones."""
    handed = due = 0

    def page(size: int) -> Iterator[Record]:
        nonlocal handed
        for row in islice(rows, size):
            handed += 1
            yield shape.record(row)

    for size in sizes:
        yield page(size)
        due += size
        if handed < due:
            raise RuntimeError("a Bulk result page was left unread before the next")


def _columns(header: list[str], order: Sequence[str]) -> list[int]:
    if missing := [name for name in order if name not in header]:
        raise SourceError(
            f"the Bulk result has no {', '.join(missing)} column to sort by", retryable=False
        )
    return [header.index(name) for name in order]


def _not_csv() -> SourceError:
    return SourceError(
        "Salesforce sent a Bulk result page that is not the CSV asked for; "
        "the cursor was kept, rerun later",
        retryable=True,
    )


def _unreachable(what: str, exc: Exception) -> SourceError:
    return SourceError(
        f"cannot reach Salesforce for the bulk query on {what}: {type(exc).__name__}",
        retryable=True,
    )


@dataclass(frozen=True)
class _Shape:
    """Where a record's fields and parents come from in a CSV row; built once per page."""

    fields: tuple[tuple[str, int], ...]  # field name, column
    parents: tuple[tuple[str, _Shape], ...]  # relationship name, its shape

    @classmethod
    def of_header(cls, header: list[str]) -> _Shape:
        return cls.of([(name.split("."), i) for i, name in enumerate(header)])

    @classmethod
    def of(cls, columns: list[tuple[list[str], int]]) -> _Shape:
        fields = tuple((path[0], index) for path, index in columns if len(path) == 1)
        nested: dict[str, list[tuple[list[str], int]]] = {}
        for path, index in columns:
            if len(path) > 1:
                nested.setdefault(path[0], []).append((path[1:], index))
        return cls(fields, tuple((name, cls.of(sub)) for name, sub in nested.items()))

    def record(self, row: list[str]) -> Record:
        record: Record = {name: _CELLS.get(row[index], row[index]) for name, index in self.fields}
        for name, shape in self.parents:
            parent = shape.record(row)
            # REST sends `"Lead": null` when a row has no parent; CSV only shows empty
            # cells, so a parent whose every selected field is empty becomes None.
            record[name] = None if all(v is None for v in parent.values()) else parent
        return record
