"""A sync with nothing new costs a constant number of ledger statements and at most
three Salesforce calls, whatever the ledger holds (counted, not timed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector.summary import RunSummary
from connector_sandbox.dataset import generate
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING
from tests.ledger.test_statements import counted

NOW = datetime.now(UTC).replace(microsecond=0)


def idle_run_cost(leads: int, state_url: str) -> tuple[int, int, int]:
    """(changes recorded, ledger statements, Salesforce calls) of a run with nothing new."""
    with Sandbox(generate(n_leads=leads, seed=5, now=NOW).tables()) as box:
        settings = box.settings(state_url, MAPPING)
        mapping = load_mapping(MAPPING)
        first = sync(settings, mapping, SyncOptions())
        sync(settings, mapping, SyncOptions())  # settles Google's status of the first uploads
        with counted() as statements:
            idle: RunSummary = sync(settings, mapping, SyncOptions())
    assert idle.new == 0 and first.new > 0
    return first.new, len(statements), idle.source_calls


def test_a_run_with_nothing_new_costs_the_same_for_n_and_10n_changes(tmp_path: Path) -> None:
    small = idle_run_cost(30, f"sqlite:///{tmp_path / 'small.db'}")
    large = idle_run_cost(300, f"sqlite:///{tmp_path / 'large.db'}")
    assert large[0] >= 8 * small[0]  # about ten times the changes recorded
    assert large[1] == small[1], (small, large)
    assert large[2] == small[2] <= 3, (small, large)
