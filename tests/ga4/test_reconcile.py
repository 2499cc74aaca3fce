"""`reconcile` and `connector reconcile`: the ledger's delivered GA4 events against GA4's counts."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app
from connector.ga4_data import Difference, GA4Data, reconcile, window
from connector.ledger.store import Ledger
from connector_sandbox.ga4 import GA4Emulator
from connector_sandbox.ga4_data import GA4DataEmulator, WebLeadHit
from connector_sandbox.tls import sandbox_ca
from tests.conftest import MAPPING
from tests.ga4.conftest import NOW, PROPERTY_ID, change, deliver, settings_for

SINCE, UNTIL = (NOW - timedelta(days=3)).date(), NOW.date()


def day(hours_ago: float) -> date:
    return (NOW - timedelta(hours=hours_ago)).date()


def test_everything_delivered_is_counted_so_there_is_no_difference(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    changes = [change(f"00Q{i}", "qualify_lead", 1 + i, client_id=f"{i}.1") for i in range(5)]
    deliver(ledger, settings_for(mp, data_emulator), changes)
    result = reconcile(ledger, client, SINCE, UNTIL)
    assert result.differences == []
    assert sum(result.delivered.values()) == sum(result.reported.values()) == 5


def test_a_planted_gap_is_found(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    deliver(ledger, settings_for(mp, data_emulator), [change("00QA", "working_lead", 5)])
    # A wrong api_secret: /mp/collect still answers 2xx, so the ledger says delivered,
    # but GA4 drops both events. Only reconciliation can notice.
    lost = [change("00QB", "working_lead", 30), change("00QC", "close_convert_lead", 30)]
    deliver(ledger, settings_for(mp, data_emulator, api_secret="stale-secret"), lost)
    assert mp.wrong_secret == 1 and ledger.counts()["ga4"] == {"delivered": 3}
    result = reconcile(ledger, client, SINCE, UNTIL)
    assert result.differences == [
        Difference("close_convert_lead", day(30), delivered=1, reported=0),
        Difference("working_lead", day(30), delivered=1, reported=0),
    ]
    assert {d.kind for d in result.differences} == {"missing_in_ga4"}
    assert result.as_dict()["status"] == "differences"


def test_a_change_too_old_to_backdate_is_reconciled_on_the_day_it_was_sent(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    old = change("00QOLD", "qualify_lead", 80)  # beyond the 72 h window: sent "now"
    deliver(ledger, settings_for(mp, data_emulator), [old], too_old="send_now")
    assert "timestamp_micros" not in mp.received_bodies[0]
    result = reconcile(ledger, client, day(80), UNTIL)
    assert result.differences == []
    assert result.reported == {("qualify_lead", NOW.date()): 1}


def test_events_sent_by_others_show_as_extra(
    data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    data_emulator.seed_web_hits([WebLeadHit("00QW", NOW - timedelta(hours=2))])
    result = reconcile(ledger, client, SINCE, UNTIL, events=["generate_lead", "qualify_lead"])
    (extra,) = result.differences
    assert (extra.event_name, extra.delivered, extra.reported) == ("generate_lead", 0, 1)
    assert extra.kind == "extra_in_ga4"


def test_window_defaults_to_the_seven_days_before_today() -> None:
    first, last = window(None, None)
    assert (last - first).days == 6 and last < date.today() + timedelta(days=1)
    assert window("2026-11-01", "2026-11-03") == (date(2026, 11, 1), date(2026, 11, 3))
    with pytest.raises(ValueError, match="--since"):
        window("2026-11-04", "2026-11-03")
    with pytest.raises(ValueError, match="--until must be a date"):
        window(None, "yesterday")


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
    leads.record(leads.start_run(), [change("00QL1", "qualify_lead", 1)], "test", NOW)
    data_emulator.seed_web_hits([WebLeadHit("00QL1", NOW - timedelta(days=5), "Paid Search")])
    result = cli.invoke(app, ["channels", "--json"], env=_env(data_emulator, tmp_path, "leads"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"looked_up": 1, "found": 1, "channels": {"Paid Search": 1}}
    assert leads.channels()["00QL1"].channel_group == "Paid Search"


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
