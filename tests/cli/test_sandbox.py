"""`connector sandbox`: emulators in the foreground, an env file every command can use."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.conftest import invoke


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text("utf-8").splitlines() if "=" in line)
    return {key: shlex.split(value)[0] for key, value in pairs if not key.startswith("#")}


def test_the_sandbox_serves_the_demo_dataset_until_sigterm(tmp_path: Path) -> None:
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
        assert json.loads(invoke("report", "--json", env=env).stdout)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "set -a; . " in out and "sync --dry-run" in out and "emulators stopped" in out
