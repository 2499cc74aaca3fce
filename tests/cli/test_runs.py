"""`connector runs`, and the log lines a sync writes: what an on-call engineer reads."""

from __future__ import annotations

import json
from pathlib import Path

from connector_sandbox.stack import Sandbox
from tests.cli.conftest import env_for, invoke


def test_a_sync_logs_its_start_each_destination_and_its_end(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    result = invoke("sync", "--json", env=env_for(sandbox, tmp_path))
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    by_message = {line["message"]: line for line in lines}
    assert {line.get("run_id") for line in lines} == {1}  # every line, the run's id
    start, end = by_message["run started"], by_message["run finished"]
    assert start["window_start"] == summary["since"] and start["window_end"]
    assert end["status"] == "ok" and end["new"] == summary["new"] > 0
    assert isinstance(end["duration_s"], float)
    for name, tally in summary["destinations"].items():
        line = by_message[f"destination {name} done"]
        assert line["delivered"] == tally["delivered"] == end["delivered"][name]


def test_text_logs_carry_the_same_fields(sandbox: Sandbox, tmp_path: Path) -> None:
    env = env_for(sandbox, tmp_path, CONNECTOR_LOG_FORMAT="text")
    result = invoke("sync", env=env)
    assert result.exit_code == 0, result.stderr
    finished = next(line for line in result.stderr.splitlines() if "run finished" in line)
    assert finished.startswith("INFO connector.sync: run finished  ")
    assert "status=ok" in finished and "run_id=1" in finished and "duration_s=" in finished


def test_runs_lists_recent_runs_in_the_words_of_the_table(sandbox: Sandbox, tmp_path: Path) -> None:
    env = env_for(sandbox, tmp_path)
    assert invoke("runs", env=env).stdout.startswith("no runs recorded yet in sqlite:///")
    first = json.loads(invoke("sync", "--json", env=env).stdout)
    invoke("sync", env=env)
    result = invoke("runs", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    newest, oldest = json.loads(result.stdout)["runs"]
    assert (newest["run"], oldest["run"]) == (2, 1)
    assert oldest["status"] == "ok" and oldest["new"] == first["new"] and newest["new"] == 0
    ads = first["destinations"]["google_ads"]["delivered"]
    assert oldest["delivered"]["google_ads"] == ads and newest["delivered"]["google_ads"] == 0
    assert isinstance(oldest["duration"], float) and oldest["error"] is None
    table = invoke("runs", "--limit", "1", env=env).stdout
    header, _rule, row = table.splitlines()[:3]
    assert len(header) > 80  # not a terminal: not wrapped at rich's default 80 columns
    for word in ("run", "started", "status", "duration", "pulled", "new", "delivered", "error"):
        assert word in header
    assert row.split()[0] == "2" and " ok " in row and "google_ads 0" in row


def test_a_dry_run_logs_its_start_and_end_too(sandbox: Sandbox, tmp_path: Path) -> None:
    payloads = str(tmp_path / "p.json")
    result = invoke(
        "sync", "--dry-run", "--payloads-file", payloads, env=env_for(sandbox, tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    lines = {json.loads(line)["message"]: json.loads(line) for line in result.stderr.splitlines()}
    assert lines["run started"]["dry_run"] and lines["run finished"]["dry_run"]
    assert "run_id" not in lines["run finished"]  # a dry run records no run
