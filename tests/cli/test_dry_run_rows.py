"""`sync --dry-run`: one row per planned delivery, in the table and under `rows` in --json."""

from __future__ import annotations

import json
from pathlib import Path

from connector_sandbox.stack import Sandbox
from tests.cli.conftest import env_for, invoke

KINDS = {"gclid", "gbraid", "wbraid", "ga_client_id", "email", "phone"}


def test_a_dry_run_lists_its_rows_with_identifier_kinds_only(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path)
    payloads = str(tmp_path / "payloads.json")
    result = invoke("sync", "--dry-run", "--json", "--payloads-file", payloads, env=env)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert rows and {r["result"] for r in rows} <= {"valid", "skipped", "rejected", "pending"}
    assert {k for r in rows for k in r["identifiers"]} <= KINDS
    nurture = [r for r in rows if r["reason"] == "unknown_stage"]
    assert nurture and all(r["destination"] is None for r in nurture)
    sent = next(r for r in rows if r["result"] == "valid")
    assert sent["target"] and sent["time"] and sent["identifiers"]
    for row in rows:  # kinds, never values: no hash or click id in the rows
        assert all(len(str(v)) < 64 for v in row.values() if isinstance(v, str))

    lead = sent["lead_id"]
    limited = invoke(
        "sync", "--dry-run", "--json", "--lead", lead, "--payloads-file", payloads, env=env
    )
    only = json.loads(limited.stdout)["rows"]
    assert only and {r["lead_id"] for r in only} == {lead}

    table = invoke("sync", "--dry-run", "--lead", lead, "--payloads-file", payloads, env=env)
    assert table.exit_code == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if "identifiers" in line)
    for word in ("lead_id", "stage", "target", "time", "value", "result", "reason"):
        assert word in header
    assert lead in table.stdout


def test_lead_without_dry_run_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    result = invoke("sync", "--lead", "00Q1", env=env_for(sandbox, tmp_path))
    assert result.exit_code == 2
