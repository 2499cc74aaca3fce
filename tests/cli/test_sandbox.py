"""`connector sandbox`: emulators in the foreground, an env file every command can use."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connector.ledger import Ledger
from connector.report import Period
from tests.cli.conftest import invoke


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text("utf-8").splitlines() if "=" in line)
    return {key: shlex.split(value)[0] for key, value in pairs if not key.startswith("#")}


def test_the_sandbox_serves_the_demo_dataset_and_its_ad_costs_until_sigterm(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector",
            "sandbox",
            "--leads",
            "60",
            "--env-file",
            str(env_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert env_file.exists(), proc.stderr.read() if proc.stderr else ""
        assert env_file.stat().st_mode & 0o077 == 0  # sandbox credentials, still not world-read
        env = {**read_env(env_file), "CONNECTOR_LOG_FORMAT": "json"}
        dry = invoke(
            "sync", "--dry-run", "--json", "--payloads-file", str(tmp_path / "p.json"), env=env
        )
        assert dry.exit_code == 0, dry.stderr
        synced = invoke("sync", "--json", env=env)
        assert synced.exit_code == 0, synced.stderr
        assert json.loads(synced.stdout)["new"] == json.loads(dry.stdout)["new"] > 0
        (run,) = json.loads(invoke("runs", "--json", env=env).stdout)["runs"]
        assert run["status"] == "ok"
        costs = _costs_as_typed(env_file)
        assert costs["cost"] > 0 and costs["campaign_days"] >= 5  # five campaigns, daily
        assert 0 < costs["clicks_found"] <= costs["clicks_looked_up"]
        period = Period.parse(None, None)
        stored = Ledger.open(env["CONNECTOR_STATE_URL"], readonly=True).costs
        assert len(stored.costs(period.since, period.until)) == costs["campaign_days"]
        assert len(stored.clicks()) == costs["clicks_found"]
        report = invoke("report", "--format", "json", env=env)
        assert report.exit_code == 0, report.stderr
        section = json.loads(report.stdout)["google_ads_costs"]
        assert any(c["cost"] and c["leads"] for c in section["campaigns"])  # clicks joined
        (paid,) = section["channels"]
        assert paid["cost"] == pytest.approx(costs["cost"], abs=0.01)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "set -a; . " in out and "sync --dry-run" in out and "emulators stopped" in out
    assert "connector costs" in out


def _costs_as_typed(env_file: Path) -> dict[str, Any]:
    """`connector costs --json` in a shell that sourced the env file as printed: its settings
    alone reach the Google Ads API emulator (a process of its own, so gRPC reads that CA)."""
    shell = f"set -a; . {shlex.quote(str(env_file))}; set +a; "
    shell += f"{shlex.quote(sys.executable)} -m connector costs --json"
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "GRPC_"))}
    done = subprocess.run(
        ["/bin/sh", "-c", shell], env=bare, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result
