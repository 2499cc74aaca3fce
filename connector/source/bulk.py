"""Large reads (backfills) through Salesforce Bulk API 2.0 query jobs, one CSV page at a time.

A REST query pages 2,000 records per call; a bulk query job pages up to
50,000 and costs a handful of calls for the whole job (create, a few status
polls, one call per page). The job runs through simple-salesforce's own
`client.bulk2`, which reuses the client's session: the pinned CA bundle and
instance URL of `connector.source.auth.connect` apply unchanged.

Pages are yielded as REST-shaped records so the callers that read
`client.query` pages can read these too. CSV carries no types, so the
mapping back is by rule: an empty cell is None, `true` / `false` are
booleans, everything else stays a string (datetimes and amounts are parsed
where they are used). A text field whose value is literally "true" would
therefore come back as a bool; none of the fields the connector reads can.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import SFBulk2Handler, SFBulk2Type
from simple_salesforce.exceptions import SalesforceError, SalesforceOperationError

from connector.errors import SourceError
from connector.source.errors import source_error

Record = dict[str, Any]
_CELLS: dict[str, Any] = {"": None, "true": True, "false": False}  # all else: text


def bulk_pages(
    client: Salesforce,
    sobject: str,
    soql: str,
    *,
    page_size: int = 50_000,
    include_deleted: bool = False,
    poll_seconds: int = 1,
) -> Iterator[Iterator[Record]]:
    """Run `soql` as a Bulk API 2.0 query job and yield its result pages as REST-shaped records.

    `sobject` is the FROM object (simple-salesforce addresses jobs by it);
    `include_deleted` runs a queryAll job. Memory follows `page_size`, not
    the row count: a page's records are made as they are iterated, from the
    client's one page of CSV text (two while the next page is fetched). `poll_seconds` is the
    client's `wait`: it sleeps that long before the first status poll, and
    between polls that plus e**n ms until the interval passes 2 s (one API call a poll).
    Raises SourceError, as the REST reader does, if the job cannot be run.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    handler = cast(SFBulk2Handler, client.bulk2)
    job = cast(SFBulk2Type, getattr(handler, sobject))
    run = job.query_all if include_deleted else job.query
    pages = run(soql, max_records=page_size, wait=poll_seconds)
    try:
        for text in pages:
            yield _records(str(text))
    except SalesforceError as exc:
        raise source_error(exc) from None
    except SalesforceOperationError:
        # Its message embeds the job's info; say only what happened.
        raise SourceError(
            f"the Salesforce bulk query job on {sobject} failed, was aborted or timed out; "
            "the cursor was kept, rerun later",
            retryable=True,
        ) from None
    except requests.RequestException as exc:
        raise SourceError(
            f"cannot reach Salesforce for the bulk query on {sobject}: {type(exc).__name__}",
            retryable=True,
        ) from None


def _records(text: str) -> Iterator[Record]:
    """One page of Bulk CSV (header row first) as REST-shaped records, made as they are
    read: a page holds its CSV text, never 50,000 records at once."""
    rows = csv.reader(_lines(text), strict=True)
    header = next(rows, None)
    if header is None:
        return
    shape = _Shape.of([(name.split("."), index) for index, name in enumerate(header)])
    for row in rows:
        yield shape.record(row)


def _lines(text: str) -> Iterator[str]:
    # Line by line, endings kept (csv needs them inside quoted cells), without
    # copying the page the way io.StringIO or splitlines would.
    start = 0
    while start < len(text):
        end = text.find("\n", start) + 1 or len(text)
        yield text[start:end]
        start = end


@dataclass(frozen=True)
class _Shape:
    """Where a record's fields and parents come from in a CSV row; built once per page."""

    fields: tuple[tuple[str, int], ...]  # field name, column
    parents: tuple[tuple[str, _Shape], ...]  # relationship name, its shape

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
