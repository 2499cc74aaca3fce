"""A LeadHistory backfill through Bulk API 2.0: throughput, and memory bounded by one page.

    uv run python benchmarks/bulk_backfill.py [--changes 200000] [--page-sizes 10000,50000]

Starts the Salesforce emulator in this process with `--changes` LeadHistory
rows (four status changes per lead, each lead carrying the mapping's
fields), then reads them with `connector.source.bulk.bulk_pages` over TLS
through simple-salesforce, sorted by CreatedDate as the connector reads them
(every row goes through the reader's scratch file on disk first): once a
quarter of the rows, once all of them, for each page size. Each read runs
twice: timed without tracing, then measured under tracemalloc (which slows
Python down, so its time is not reported). The output ends with what each
figure measures (LEGEND): the point is that the peak does not follow the
number of rows read. The reader parses a page off the response as it arrives,
so what still follows the page size is mostly the in-process emulator's
rendering of it.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from simple_salesforce.api import Salesforce

from connector.mapping.rules import load_mapping
from connector.source.auth import connect
from connector.source.bulk import bulk_pages
from connector_sandbox.dataset import sf_datetime
from connector_sandbox.salesforce import SalesforceEmulator

MAPPING = Path(__file__).resolve().parent.parent / "mappings" / "salesforce.yaml"
START = datetime(2026, 1, 1, tzinfo=UTC)
ORDER = ("CreatedDate", "Id")  # the connector's LeadHistory order
STEP = timedelta(seconds=10)  # one status change every 10 s, in store order
PATH = ("Open", "MQL", "SQL", "Closed - Converted")
MIB = 1024 * 1024

Rows = dict[str, list[dict[str, Any]]]
LEGEND = """\
seconds, rows/s: an untraced read (job creation, polls, every page fetched, parsed, put
  through the scratch file that sorts the rows, and read back).
tracemalloc peak: Python memory allocated during a second, traced read of the same rows:
  the reader's page (CSV text and records) plus the emulator thread's rendering of one
  page and its job's row list (8 bytes a row); the org loaded before is not counted.
ru_maxrss growth: how much the read raised the process's high-water mark (which already
  holds the emulator's org), so later runs show only what exceeds earlier peaks."""


@dataclass
class Result:
    rows: int
    pages: int
    seconds: float
    peak_mib: float = 0.0
    rss_growth_mib: float = 0.0


def org(changes: int) -> Rows:
    """`changes` LeadHistory rows, four per lead, oldest first; plain literals: loads fast."""
    leads = [_lead(i) for i in range((changes + len(PATH) - 1) // len(PATH))]
    history = [
        {
            "Id": f"0175g{j:010d}AAA",
            "LeadId": leads[j // len(PATH)]["Id"],
            "Field": "Status",
            "OldValue": PATH[j % len(PATH) - 1] if j % len(PATH) else None,
            "NewValue": PATH[j % len(PATH)],
            "CreatedDate": sf_datetime(START + j * STEP),
            "IsDeleted": False,
        }
        for j in range(changes)
    ]
    return {"Lead": leads, "LeadHistory": history}


def _lead(i: int) -> dict[str, Any]:
    clicked = i % 3 != 0
    return {
        "Id": f"00Q5g{i:010d}AAA",
        "CreatedDate": sf_datetime(START + i * len(PATH) * STEP),
        "IsDeleted": False,
        "Status": PATH[-1],
        "Email": f"Lead.{i}+crm@Example.com",
        "Phone": f"+49 621 {i:07d}",
        "Company": f'Rhein "{i % 97}" Daten, GmbH',  # quotes and a comma: CSV quoting
        "GCLID__c": f"Cj0KCQiA{i:012d}_gclid" if clicked else None,
        "GBRAID__c": None,
        "WBRAID__c": None,
        "GA_Client_ID__c": f"{1_000_000 + i}.{1_767_225_600 + i}",
        "CurrencyIsoCode": "EUR",
        "LeadSource": "Web" if clicked else "Trade Show",
        "UTM_Source__c": "google" if clicked else None,
        "UTM_Medium__c": "cpc" if clicked else None,
        "UTM_Campaign__c": "nonbrand_crm_emea" if clicked else None,
        "Consent_Ad_User_Data__c": "Granted",
        "Consent_Ad_Personalization__c": "Granted" if i % 5 else "Denied",
        "IsConverted": True,
    }


def history_soql(since: datetime) -> str:
    """The connector's LeadHistory query with the mapping's lead fields riding along.

    Without ORDER BY: on a real org it disables PK chunking for bulk jobs. The
    reader sorts the rows itself (`ORDER`), through its scratch file, as the
    connector's does; here they are stored in CreatedDate order, as most of a real
    job's rows come.
    """
    fields = dict.fromkeys(["CreatedDate", *load_mapping(MAPPING).lead_fields().values()])
    parent = ", ".join(f"Lead.{name}" for name in fields)
    return (
        f"SELECT Id, LeadId, OldValue, NewValue, CreatedDate, {parent} FROM LeadHistory "
        f"WHERE Field = 'Status' AND CreatedDate >= {since.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )


def read(client: Salesforce, soql: str, page_size: int) -> Result:
    started = time.perf_counter()
    rows = pages = 0
    for page in bulk_pages(
        client, "LeadHistory", soql, order=ORDER, page_size=page_size, poll_seconds=0
    ):
        rows += sum(1 for _ in page)  # a page's records are made as they are read
        pages += 1
        del page  # a consumer that keeps no page while the next one is fetched
    return Result(rows, pages, time.perf_counter() - started)


def measured(run: Callable[[], Result]) -> Result:
    gc.collect()
    rss_before = _maxrss_mib()
    tracemalloc.start()
    try:
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result.peak_mib = peak / MIB
    result.rss_growth_mib = _maxrss_mib() - rss_before
    return result


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200_000, help="LeadHistory rows to load")
    parser.add_argument("--page-sizes", default="10000,50000", help="comma-separated maxRecords")
    args = parser.parse_args()
    page_sizes = [int(size) for size in args.page_sizes.split(",")]

    started = time.perf_counter()
    data = org(args.changes)
    leads = len(data["Lead"])
    with SalesforceEmulator(data, api_limit=10_000_000) as emulator:
        del data  # the emulator keeps its own copy
        print(
            f"loaded {args.changes:,} LeadHistory rows and {leads:,} leads in "
            f"{time.perf_counter() - started:.1f} s; ru_maxrss {_maxrss_mib():,.0f} MiB "
            "(mostly the emulator's copy of the org)"
        )
        client = connect(emulator.login_settings())
        print(f"{'rows':>9} {'page size':>9} {'pages':>5} {'seconds':>8} {'rows/s':>9}", end="")
        print(f" {'tracemalloc peak':>16} {'ru_maxrss growth':>16}")
        # A quarter of the rows (the latest changes) and all of them, per page size.
        quarter = START + (args.changes - args.changes // 4) * STEP
        for page_size in page_sizes:
            for since in (quarter, START):
                print(_line(compare(client, history_soql(since), page_size), page_size))
        print(f"Bulk API calls per object: {emulator.bulk_calls}")
    print(LEGEND)


def compare(client: Salesforce, soql: str, page_size: int) -> Result:
    """Timed without tracing, then measured under tracemalloc; one result with both."""
    timed = read(client, soql, page_size)
    memory = measured(partial(read, client, soql, page_size))
    assert (memory.rows, memory.pages) == (timed.rows, timed.pages)
    timed.peak_mib, timed.rss_growth_mib = memory.peak_mib, memory.rss_growth_mib
    return timed


def _line(result: Result, page_size: int) -> str:
    rate = result.rows / result.seconds
    return (
        f"{result.rows:>9,} {page_size:>9,} {result.pages:>5} {result.seconds:>8.2f} "
        f"{rate:>9,.0f} {result.peak_mib:>12.1f} MiB {result.rss_growth_mib:>12.1f} MiB"
    )


if __name__ == "__main__":
    main()
