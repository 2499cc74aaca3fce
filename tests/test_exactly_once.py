"""Exactly once in real operation: real `connector sync` processes killed, overlapped, faulted.

The emulators run in this process; every sync is a subprocess, as a scheduler runs it.
CI runs a short crash loop; `CONNECTOR_TEST_LONG=1 uv run pytest tests/test_exactly_once.py`
runs the long one (30+ kills over a larger dataset).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from connector.ledger.schema import deliveries, stage_changes
from connector_sandbox.faults import Fault
from connector_sandbox.stack import Sandbox
from tests.conftest import POSTGRES_URL, _postgres_database
from tests.sandbox_env import fresh, generated
from tests.test_cli import env_for

LONG = os.environ.get("CONNECTOR_TEST_LONG") == "1"
KILLS = 32 if LONG else 6
LEADS = 1500 if LONG else 250
DUPLICATED = re.compile(r"(\d+) ga4 events may be duplicated")
# Whole sync processes, several per test: far slower than a unit test, never a hang.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with generated(n_leads=LEADS, seed=11) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(box: Sandbox) -> Sandbox:
    return fresh(box)


def start(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "sync", "--json", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, str]:
    process = start(env, cwd, *args)
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def settle_everything(env: dict[str, str], cwd: Path, reported: list[int]) -> None:
    """Rerun until nothing is left pending (faults may need a few runs), then once more:
    that run reads Google's status of the last run's requests."""
    for _ in range(8):
        code, _out, err = run(env, cwd)
        reported.extend(int(n) for n in DUPLICATED.findall(err))
        assert code in (0, 3, 7), err[-2000:]
        if code != 3:
            code, _out, err = run(env, cwd)
            reported.extend(int(n) for n in DUPLICATED.findall(err))
            assert code in (0, 7), err[-2000:]
            return
    raise AssertionError("rows still pending after 8 runs")


def rows(state_url: str) -> list[dict[str, Any]]:
    engine = create_engine(state_url)
    query = select(deliveries, stage_changes).join(
        stage_changes, deliveries.c.change_id == stage_changes.c.id
    )
    with engine.connect() as conn:
        found = [dict(r._mapping) for r in conn.execute(query)]
    engine.dispose()
    return found


def outcome(state_url: str) -> Counter[tuple[str, str, str | None]]:
    """The final state: (destination, status, reason) counts over every delivery row."""
    return Counter((r["destination"], r["status"], r["reason"]) for r in rows(state_url))


def assert_exactly_once(box: Sandbox, state_url: str, reported_duplicates: int) -> None:
    found = rows(state_url)
    assert not [r for r in found if r["status"] in ("pending", "in_flight")]
    # Google Ads: every delivered conversion is in the emulator, keyed by its transaction id
    # (a resend is the same conversion), and nothing else arrived.
    ads = {
        (r["target"], transaction_id(r))
        for r in found
        if r["destination"] == "google_ads" and r["status"] == "delivered"
    }
    assert set(box.datamanager.conversions) == ads
    # GA4: no delivered event is missing; duplicates at most what was reported in flight.
    sent = Counter(
        (e["name"], e["params"].get("lead_id"), e["params"].get("lead_status"))
        for e in box.ga4.accepted
    )
    delivered = Counter(
        (r["target"], r["lead_id"], r["crm_status"])
        for r in found
        if r["destination"] == "ga4" and r["status"] == "delivered"
    )
    assert not delivered - sent, "a delivered GA4 event never arrived"
    assert not set(sent) - set(delivered), "GA4 got an event the ledger does not hold"
    duplicates = sum((sent - delivered).values())
    assert duplicates <= reported_duplicates


def transaction_id(row: dict[str, Any]) -> str:
    if row["retracts"]:
        return str(row["retracts"])
    base = f"{row['lead_id']}:{row['stage']}"
    return f"{base}:{row['opportunity_id']}" if row["opportunity_id"] else base


def test_sigkill_at_random_points_loses_nothing_and_says_what_may_be_doubled(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path, CONNECTOR_LEASE_SECONDS="1", CONNECTOR_LOG_LEVEL="INFO")
    state_url = env["CONNECTOR_STATE_URL"]
    # Latency on every upload, so that kills land while requests are in the air.
    for emulator in (sandbox.datamanager, sandbox.ga4):
        emulator.faults.randomly(1.0, [Fault(delay_seconds=0.02, then_serve=True)], seed=1)
    rng = random.Random(7)
    reported: list[int] = []
    for _ in range(KILLS):
        process = start(env, tmp_path)
        time.sleep(rng.uniform(0.5, 4.0))
        process.send_signal(signal.SIGKILL)
        _out, err = process.communicate(timeout=60)
        reported.extend(int(n) for n in DUPLICATED.findall(err))
    for emulator in (sandbox.datamanager, sandbox.ga4):
        emulator.faults.clear()
    settle_everything(env, tmp_path, reported)
    assert_exactly_once(sandbox, state_url, sum(reported))


def test_two_overlapping_runs_on_sqlite_take_turns_and_send_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path, CONNECTOR_LOG_LEVEL="INFO")
    first, second = start(env, tmp_path, "--wait", "120"), start(env, tmp_path, "--wait", "120")
    results = [p.communicate(timeout=300) for p in (first, second)]
    assert {first.returncode, second.returncode} <= {0, 7}, results
    assert_exactly_once(sandbox, env["CONNECTOR_STATE_URL"], 0)


def test_a_second_run_exits_6_naming_the_run_that_holds_the_store(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path, CONNECTOR_LOG_LEVEL="INFO")
    # Every GA4 request slowed: the holder is still sending when the second run starts.
    sandbox.ga4.faults.randomly(1.0, [Fault(delay_seconds=0.5, then_serve=True)])
    holder = start(env, tmp_path)
    time.sleep(1.5)  # the holder is past its start: it holds the lock
    code, out, err = run(env, tmp_path)
    holder.communicate(timeout=300)
    assert code == 6, err
    assert f"pid {holder.pid}" in err and "another run holds the state store" in err
    assert json.loads(out)["status"] == "failed"


@pytest.mark.skipif(not POSTGRES_URL, reason="needs the PostgreSQL server .ci/run starts")
@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_workers_on_postgresql_share_the_work_exactly_once(
    sandbox: Sandbox, tmp_path: Path, workers: int
) -> None:
    database = _postgres_database()
    url = next(database)
    try:
        env = env_for(sandbox, tmp_path, CONNECTOR_STATE_URL=url, CONNECTOR_LOG_LEVEL="INFO")
        processes = [start(env, tmp_path) for _ in range(workers)]  # a fresh database: all race
        results = [p.communicate(timeout=300) for p in processes]
        for p, (_out, err) in zip(processes, results, strict=True):
            assert p.returncode in (0, 3, 7), err[-2000:]
            assert "Traceback" not in err
        settle_everything(env, tmp_path, [])
        assert_exactly_once(sandbox, url, 0)
    finally:
        next(database, None)


def test_a_fifth_of_requests_failing_reaches_the_fault_free_state(
    box: Sandbox, tmp_path: Path
) -> None:
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    clean.mkdir()
    faulty.mkdir()
    for emulator in (box.salesforce, box.datamanager, box.ga4):
        emulator.reset()
    env = env_for(box, clean, CONNECTOR_LOG_LEVEL="INFO")
    settle_everything(env, clean, [])
    expected = outcome(env["CONNECTOR_STATE_URL"])

    for emulator in (box.salesforce, box.datamanager, box.ga4):
        emulator.reset()
    faults = [
        Fault(429, headers={"Retry-After": "0"}),
        Fault(503),
        Fault(500),
        Fault(delay_seconds=2.5),  # past the client's timeout: a timeout
        Fault(reset=True),  # a connection reset
    ]
    for seed, emulator in enumerate((box.salesforce, box.datamanager, box.ga4)):
        emulator.faults.randomly(0.2, faults, seed=seed)
    env = env_for(
        box,
        faulty,
        CONNECTOR_LOG_LEVEL="INFO",
        CONNECTOR_GA4__TIMEOUT_SECONDS="1",
        CONNECTOR_GOOGLE_ADS__TIMEOUT_SECONDS="1",
        CONNECTOR_SALESFORCE__TIMEOUT_SECONDS="1",
    )
    reported: list[int] = []
    try:
        for _ in range(3):
            code, _out, err = run(env, faulty)
            reported.extend(int(n) for n in DUPLICATED.findall(err))
            assert code in (0, 3, 7) and "Traceback" not in err, err[-2000:]
    finally:
        for emulator in (box.salesforce, box.datamanager, box.ga4):
            emulator.faults.clear()
    settle_everything(env, faulty, reported)
    assert outcome(env["CONNECTOR_STATE_URL"]) == expected
    assert_exactly_once(box, env["CONNECTOR_STATE_URL"], sum(reported))
