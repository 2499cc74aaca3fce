"""Every exit code of `connector sync`, as a scheduler sees it, with the message beside it."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from connector import exit_codes
from connector.ledger import Ledger
from connector_sandbox.datamanager import refusal_fault
from connector_sandbox.dataset import sf_datetime
from connector_sandbox.faults import Fault
from connector_sandbox.stack import Sandbox
from tests.sandbox_env import fresh, generated
from tests.test_cli import assert_no_secret, connector, env_for

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with generated(n_leads=120, seed=5) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(box: Sandbox) -> Sandbox:
    return fresh(box)


def permission_denied() -> Fault:
    return refusal_fault(403, "PERMISSION_DENIED", "The caller does not have permission.")


def test_a_tls_handshake_failure_leaves_the_json_logs_one_object_per_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # gRPC's C core logs a failed handshake itself, in a line of its own format.
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    env = env_for(sandbox, tmp_path, CONNECTOR_GOOGLE_ADS__DATAMANAGER_CA_BUNDLE=str(other))
    env["CONNECTOR_LOG_FORMAT"] = "json"
    env.pop("GRPC_VERBOSITY", None)
    result = connector("sync", "--json", env=env, cwd=tmp_path)
    assert result.returncode == exit_codes.DESTINATION_NEEDS_FIX, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(json.loads(line) for line in lines)


def test_a_destination_needing_a_fix_exits_5_says_what_to_fix_and_keeps_its_rows(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.datamanager.faults.randomly(1.0, [permission_denied()])
    result = connector("sync", "--json", env=env_for(sandbox, tmp_path), cwd=tmp_path)
    assert result.returncode == exit_codes.DESTINATION_NEEDS_FIX, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "needs_fix"
    problem = summary["destination_errors"]["google_ads"]
    assert "403" in problem and "access to Google Ads account" in problem
    assert "destination stopped for this run" in result.stderr  # logged, at ERROR
    assert summary["destinations"]["ga4"]["delivered"] > 0  # the other destination went on
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'connector.db'}", readonly=True)
    counts = ledger.queue.counts()["google_ads"]
    assert "rejected" not in counts and counts["pending"] > 0  # nothing burnt
    assert_no_secret(result)

    sandbox.datamanager.faults.clear()
    again = connector("sync", "--json", env=env_for(sandbox, tmp_path), cwd=tmp_path)
    assert again.returncode in (exit_codes.OK, exit_codes.ROWS_REJECTED), again.stderr
    assert "google_ads was stopped in run 1" in again.stderr  # the retry says so
    assert "trying again" in again.stderr
    assert json.loads(again.stdout)["destinations"]["google_ads"]["delivered"] == counts["pending"]


def test_an_unreachable_salesforce_exits_3(sandbox: Sandbox, tmp_path: Path) -> None:
    env = env_for(
        sandbox,
        tmp_path,
        CONNECTOR_SALESFORCE__LOGIN_URL="https://127.0.0.1:9",
        CONNECTOR_SALESFORCE__TIMEOUT_SECONDS="1",
    )
    result = connector("sync", env=env, cwd=tmp_path)
    assert result.returncode == exit_codes.UNAVAILABLE
    assert "Salesforce login" in result.stderr and "Traceback" not in result.stderr


def test_a_hung_salesforce_query_times_out_and_exits_3(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.salesforce.faults.randomly(1.0, [Fault(delay_seconds=3, path_contains="/query")])
    env = env_for(sandbox, tmp_path, CONNECTOR_SALESFORCE__TIMEOUT_SECONDS="1")
    started = time.monotonic()
    result = connector("sync", env=env, cwd=tmp_path)
    assert result.returncode == exit_codes.UNAVAILABLE, result.stderr
    assert "cursor was kept" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 120


def test_a_broken_state_store_exits_3_naming_the_setting_without_a_traceback(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "connector.db").write_bytes(b"this is not a database" * 100)
    result = connector("sync", env=env_for(sandbox, tmp_path, CONNECTOR_LOG_LEVEL="INFO"),
                       cwd=tmp_path)  # fmt: skip
    assert result.returncode == exit_codes.UNAVAILABLE
    assert "CONNECTOR_STATE_URL" in result.stderr and "not a database" in result.stderr
    assert "Traceback" not in result.stderr


def test_rejected_rows_exit_7_and_are_listed_and_requeued(sandbox: Sandbox, tmp_path: Path) -> None:
    # A status change the CRM dates an hour ahead (a clock off): Google would refuse it.
    now = datetime.now(UTC)
    lead = sandbox.salesforce.insert(
        "Lead",
        {
            "CreatedDate": sf_datetime(now - timedelta(days=1)),
            "Status": "MQL",
            "GCLID__c": "Cj0KCQiA-clockAhead_123456789",
            "GA_Client_ID__c": "123456789.1700000000",
            "Consent_Ad_User_Data__c": "Granted",
        },
    )
    history = {"LeadId": lead, "Field": "Status", "OldValue": "Open", "NewValue": "MQL"}
    ahead = sf_datetime(now + timedelta(hours=1))
    sandbox.salesforce.insert("LeadHistory", history | {"CreatedDate": ahead})
    env = env_for(sandbox, tmp_path)
    first = connector("sync", "--json", env=env, cwd=tmp_path)
    summary = json.loads(first.stdout)
    rejected = sum(sum(t["rejected"].values()) for t in summary["destinations"].values())
    assert rejected > 0, summary["destinations"]
    assert first.returncode == exit_codes.ROWS_REJECTED
    listed = connector("failures", "--json", env=env, cwd=tmp_path)
    failures = json.loads(listed.stdout)["failures"]
    assert len(failures) == rejected and {f["status"] for f in failures} == {"rejected"}
    as_csv = connector("failures", "--csv", env=env, cwd=tmp_path)
    assert as_csv.stdout.splitlines()[0].startswith("id,destination,target,status,reason")
    one = failures[0]
    requeued = connector("retry", str(one["id"]), "--json", env=env, cwd=tmp_path)
    assert json.loads(requeued.stdout) == {"requeued": 1}
    again = connector("sync", "--json", env=env, cwd=tmp_path)
    assert json.loads(again.stdout)["new"] == 0


def test_rows_that_keep_failing_become_dead_letters(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.ga4.faults.randomly(1.0, [Fault(503)])
    env = env_for(sandbox, tmp_path, CONNECTOR_MAX_ATTEMPTS="1", CONNECTOR_RETRY_BUDGET="0")
    result = connector("sync", "--json", env=env, cwd=tmp_path)
    summary = json.loads(result.stdout)
    assert summary["destinations"]["ga4"]["dead"] > 0
    assert result.returncode == exit_codes.ROWS_REJECTED, result.stderr
    listed = json.loads(connector("failures", "--json", "--reason", "attempts_exhausted",
                                  env=env, cwd=tmp_path).stdout)  # fmt: skip
    assert listed["count"] == summary["destinations"]["ga4"]["dead"]
    assert {f["destination"] for f in listed["failures"]} == {"ga4"}


def test_the_api_budget_stops_early_with_exit_4(sandbox: Sandbox, tmp_path: Path) -> None:
    env = env_for(sandbox, tmp_path, CONNECTOR_SALESFORCE__MAX_API_SHARE="0.000001")
    result = connector("sync", "--json", env=env, cwd=tmp_path)
    assert result.returncode == exit_codes.STOPPED_EARLY, result.stderr
    assert json.loads(result.stdout)["stopped"]


# SYS_tgkill: one thread of another process gets the signal.
TGKILL = {"x86_64": 234, "aarch64": 131}


def signal_one_thread(pid: int, signum: int, *, main: bool) -> None:
    """`signum` to the main thread, or to a worker thread that does not block it: the kernel
    may hand a process's signal to any such thread, and only the main thread runs Python's
    handlers, so a main thread blocked until the delivery ends would notice it only then."""
    if not main:
        if platform.machine() not in TGKILL:
            pytest.skip(f"no tgkill number known for {platform.machine()}")
        pid_tid = (pid, next(t for t in _threads(pid) if t != pid and _takes(pid, t, signum)))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(TGKILL[platform.machine()], *pid_tid, signum) != 0:
            raise OSError(ctypes.get_errno(), f"tgkill {pid_tid}")
        return
    os.kill(pid, signum)


def _threads(pid: int) -> list[int]:
    return sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task"))


def _takes(pid: int, tid: int, signum: int) -> bool:
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    blocked = int(re.search(r"^SigBlk:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    return not blocked & (1 << (signum - 1))


@pytest.mark.parametrize("main", [True, False], ids=["main thread", "a worker thread"])
def test_sigterm_settles_the_request_in_flight_then_exits(
    sandbox: Sandbox, tmp_path: Path, main: bool
) -> None:
    # Slow enough that the run is still sending when the signal comes, even on a busy machine.
    sandbox.datamanager.faults.randomly(1.0, [Fault(delay_seconds=1.0, then_serve=True)])
    env = env_for(
        sandbox, tmp_path, CONNECTOR_LOG_LEVEL="INFO", CONNECTOR_GOOGLE_ADS__BATCH_SIZE="3"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "sync", "--json"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while sandbox.datamanager.requests < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    signal_one_thread(process.pid, signal.SIGTERM, main=main)
    out, err = process.communicate(timeout=120)
    assert process.returncode == exit_codes.STOPPED_EARLY, err
    assert "SIGTERM" in json.loads(out)["stopped"]
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'connector.db'}", readonly=True)
    counts = ledger.queue.counts()["google_ads"]
    assert "in_flight" not in counts and counts["pending"] > 0  # settled or released
    assert counts["delivered"] == len(sandbox.datamanager.conversions)  # none lost in the air


def test_a_refused_postgresql_store_exits_3_without_its_password(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = "postgresql+psycopg://connector:hunter2-secret@127.0.0.1:9/connector"
    result = connector("sync", env=env_for(sandbox, tmp_path, CONNECTOR_STATE_URL=url),
                       cwd=tmp_path)  # fmt: skip
    assert result.returncode == exit_codes.UNAVAILABLE, result.stderr
    assert "CONNECTOR_STATE_URL" in result.stderr and "127.0.0.1:9" in result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
