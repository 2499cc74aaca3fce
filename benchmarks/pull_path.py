"""The CPU a first sync's pull spends per change once the rows are read: mapping, what the
leads reached before, recording. No network in the timed part, so a change to one of them
shows in seconds, not in a whole `sync.py` run.

The demo dataset is served by the in-process Salesforce emulator and read once through
`SalesforceSource` (REST pages); the changes it gives are then put through what
`connector.pipeline` does with each chunk of 1,000: `translate`, `first_reached` with
`Changes.reached`, and `Changes.record` into a fresh SQLite ledger. Each round starts
with empty hash caches and a new ledger; the first round also pays for the first use of
the phone and email libraries. Printed: microseconds of CPU a change, per part, per round.

    uv run python benchmarks/pull_path.py [--leads 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from connector.core import CrmChange
from connector.ledger import Ledger
from connector.mapping import identifiers
from connector.mapping.once import first_reached
from connector.mapping.rules import Mapping, load_mapping
from connector.mapping.translate import translate
from connector.memory import collect_less
from connector.source.auth import connect
from connector.source.cursor import Cursor
from connector.source.salesforce import SalesforceSource
from connector.source.streams import declared

MAPPING = Path(__file__).resolve().parent.parent / "mappings" / "salesforce.yaml"
CHUNK = 1000  # connector.pipeline.RECORD_CHUNK
STREAM = "salesforce.LeadHistory"


def read_changes(leads: int, seed: int) -> list[CrmChange]:
    """Every stream's changes of a first sync (90 days back), read from the emulator."""
    from connector_sandbox.dataset import generate
    from connector_sandbox.stack import Sandbox

    now = datetime.now(UTC)
    with Sandbox(generate(n_leads=leads, seed=seed, now=now).tables()) as box:
        settings = box.settings("sqlite:///unused", MAPPING)
        settings.salesforce.start_date = (now - timedelta(days=90)).date()
        mapping = load_mapping(MAPPING)
        # REST pages only: Bulk's unordered rows would change what the hash caches keep.
        source = SalesforceSource(connect(settings.salesforce), mapping, bulk_threshold=10**9)
        changes: list[CrmChange] = []
        for stream in declared(mapping):
            changes.extend(source.pull(Cursor.resume(stream, None, settings.salesforce, now)))
    return changes


def one_round(changes: list[CrmChange], mapping: Mapping) -> dict[str, float]:
    """CPU seconds per part for all `changes`, chunk by chunk as a sync records them."""
    identifiers.forget_hashes()
    spent = {"translate": 0.0, "reached": 0.0, "record": 0.0}
    with tempfile.TemporaryDirectory(prefix="connector-pull-path-") as tmp:
        ledger = Ledger.open(f"sqlite:///{tmp}/state.db")
        run = ledger.runs.start()
        collect_less()
        for chunk in _chunks(changes, CHUNK):
            started = time.process_time()
            mapped = [translate(change, mapping, "US") for change in chunk]
            translated = time.process_time()
            earlier = ledger.changes.reached(m.change.lead_id for m in mapped)
            new = first_reached(mapped, earlier)
            reached = time.process_time()
            ledger.changes.record(run, new, STREAM, datetime.now(UTC))
            spent["translate"] += translated - started
            spent["reached"] += reached - translated
            spent["record"] += time.process_time() - reached
        ledger.db.engine.dispose()
    return spent


def _chunks(items: list[CrmChange], size: int) -> Iterator[list[CrmChange]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    changes = read_changes(args.leads, args.seed)
    mapping = load_mapping(MAPPING)
    print(f"{args.leads:,} leads: {len(changes):,} changes (REST order), µs of CPU a change")
    for number in range(1, args.rounds + 1):
        spent = one_round(changes, mapping)
        parts = ", ".join(f"{part} {1e6 * s / len(changes):.0f}" for part, s in spent.items())
        print(f"  round {number}: {1e6 * sum(spent.values()) / len(changes):.0f} ({parts})")


if __name__ == "__main__":
    main()
