"""`connector reconcile` and `connector channels` in-process, against the emulators."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app
from connector.ledger import Ledger
from connector_sandbox.ga4 import GA4Emulator
from connector_sandbox.ga4_data import GA4DataEmulator, WebLeadHit
from connector_sandbox.tls import sandbox_ca
from tests.analytics.conftest import NOW, PROPERTY_ID, SINCE, UNTIL, change, deliver, settings_for
from tests.conftest import MAPPING


def test_cli_reconcile_exits_0_or_4_with_the_differences_and_channels_stores_lookups(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, tmp_path: Path, cli: CliRunner
) -> None:
    complete, gappy = Ledger.open(_url(tmp_path, "ok")), Ledger.open(_url(tmp_path, "gap"))
    deliver(complete, settings_for(mp, data_emulator), [change("00QA", "qualify_lead", 2)])
    stale = settings_for(mp, data_emulator, api_secret="stale-secret")
    deliver(gappy, stale, [change("00QB", "working_lead", 2)])
    days = ["--since", SINCE.isoformat(), "--until", UNTIL.isoformat()]
    ok = cli.invoke(app, ["reconcile", *days, "--json"], env=_env(data_emulator, tmp_path, "ok"))
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["status"] == "ok"
    gap = cli.invoke(app, ["reconcile", *days], env=_env(data_emulator, tmp_path, "gap"))
    assert gap.exit_code == 4, gap.output
    rows = {line.split()[2]: line for line in gap.stdout.splitlines() if "_lead" in line}
    assert "+1" in rows["working_lead"] and "missing in GA4" in rows["working_lead"]
    # GA4 also counts the other ledger's event, which this ledger never sent.
    assert "-1" in rows["qualify_lead"] and "extra in GA4" in rows["qualify_lead"]
    bad = cli.invoke(
        app, ["reconcile", "--since", "last week"], env=_env(data_emulator, tmp_path, "ok")
    )
    assert bad.exit_code == 2 and "--since must be a date" in bad.output


def test_cli_channels_looks_up_new_leads_and_stores_them(
    data_emulator: GA4DataEmulator, tmp_path: Path, cli: CliRunner
) -> None:
    leads = Ledger.open(_url(tmp_path, "leads"))
    leads.changes.record(leads.runs.start(), [change("00QL1", "qualify_lead", 1)], "test", NOW)
    data_emulator.seed_web_hits([WebLeadHit("00QL1", NOW - timedelta(days=5), "Paid Search")])
    result = cli.invoke(app, ["channels", "--json"], env=_env(data_emulator, tmp_path, "leads"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"looked_up": 1, "found": 1, "channels": {"Paid Search": 1}}
    assert leads.channels.get()["00QL1"].channel_group == "Paid Search"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """`connector` in-process (a subprocess spends seconds importing client libraries)."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [k for k in os.environ if k.startswith("CONNECTOR_")]:
        monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield CliRunner()
    root.handlers[:], root.level = handlers, level  # the command points logging at its stderr


def _url(directory: Path, name: str) -> str:
    return f"sqlite:///{directory / name}.db"


def _env(data: GA4DataEmulator, directory: Path, ledger: str) -> dict[str, str]:
    return {
        "CONNECTOR_STATE_URL": _url(directory, ledger),
        "CONNECTOR_MAPPING_PATH": str(MAPPING),
        "CONNECTOR_GA4__PROPERTY_ID": PROPERTY_ID,
        "CONNECTOR_GA4__DATA_API_ENDPOINT": data.url,
        "CONNECTOR_GA4__DATA_API_CA_BUNDLE": str(sandbox_ca().bundle_path),
        "CONNECTOR_GA4__ANONYMOUS_CREDENTIALS": "true",
    }
