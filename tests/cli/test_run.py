"""`connector run --every`: runs on an interval, backs off after failures, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import typer

from connector.cli.run import next_wait, parse_interval
from connector.ledger import Ledger
from connector_sandbox.stack import Sandbox
from tests.cli.conftest import env_for, invoke


def run_until(
    env: dict[str, str], runs: int, *, every: str = "1s", to_worker: bool = False
) -> list[dict[str, Any]]:
    """`connector run --every <every>` in-process until `runs` runs ended, then SIGTERM, as a
    container stop would: to the process, or `to_worker`, to a thread other than the main
    one, as the kernel may choose; its JSON log lines."""
    timeout = 60
    returned = threading.Event()
    ledger = Ledger.open(env["CONNECTOR_STATE_URL"], readonly=True)

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not returned.is_set():
            if len([r for r in ledger.runs.recent(10) if r.finished_at]) >= runs:
                break
            time.sleep(0.2)
        if returned.is_set():  # never after the command restored the default handler
            return
        if to_worker:
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = invoke("run", "--every", every, "--jitter", "0", env=env)
    finally:
        returned.set()
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stderr.splitlines()]


def test_runs_every_interval_and_stops_cleanly_on_sigterm(sandbox: Sandbox, tmp_path: Path) -> None:
    env = env_for(sandbox, tmp_path)
    lines = run_until(env, 2)
    runs = json.loads(invoke("runs", "--json", env=env).stdout)["runs"]
    assert [r["status"] for r in runs[-2:]] == ["ok", "ok"]
    messages = [line["message"] for line in lines]
    assert messages.count("run finished") >= 2 and messages[-1] == "stopped"
    waits = [line for line in lines if line["message"].startswith("next run in")]
    assert waits and all(w["consecutive_failures"] == 0 and w["interval_s"] == 1 for w in waits)


def test_sigterm_to_any_thread_ends_the_wait_between_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    # Only the main thread runs Python's handlers: it must not sleep out the hour first (the
    # suite's timeout would end this test).
    lines = run_until(env_for(sandbox, tmp_path), 1, every="1h", to_worker=True)
    (waited,) = [line for line in lines if line["message"].startswith("next run in")]
    assert waited["interval_s"] == 3600 and lines[-1]["message"] == "stopped"


def test_a_failed_run_backs_off(sandbox: Sandbox, tmp_path: Path) -> None:
    # Salesforce unreachable (a refused login would be a configuration error: the loop stops).
    env = env_for(
        sandbox,
        tmp_path,
        CONNECTOR_SALESFORCE__LOGIN_URL="https://127.0.0.1:9",
        CONNECTOR_SALESFORCE__TIMEOUT_SECONDS="1",
    )
    lines = run_until(env, 2)
    errors = [line for line in lines if line["level"] == "error"]
    assert errors and "Salesforce login" in errors[0]["message"] and errors[0]["exit_code"] == 3
    waits = [line for line in lines if line["message"].startswith("next run in")]
    assert [w["consecutive_failures"] for w in waits[:2]] == [1, 2]
    assert [w["interval_s"] for w in waits[:2]] == [2, 4]


def test_a_configuration_error_stops_the_loop_with_exit_2(tmp_path: Path) -> None:
    env = {"CONNECTOR_GA4__MEASUREMENT_ID": "UA-1", "CONNECTOR_LOG_FORMAT": "json"}
    assert invoke("run", "--every", "1s", env=env).exit_code == 2
    bad = invoke("run", "--every", "soon")
    assert bad.exit_code == 2 and "--every" in bad.output


def test_intervals_and_backoff() -> None:
    assert parse_interval("15m").total_seconds() == 900
    assert parse_interval("1h30m").total_seconds() == 5400
    assert parse_interval("90").total_seconds() == 90
    with pytest.raises(typer.BadParameter):
        parse_interval("0s")
    rng = random.Random(1)
    assert [next_wait(60, n, 0, rng) for n in range(4)] == [60, 120, 240, 240]
    assert all(54 <= next_wait(60, 0, 0.1, rng) <= 66 for _ in range(100))
