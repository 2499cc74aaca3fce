"""The `connector` command as a user runs it: a subprocess, settings from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app
from connector_sandbox.google_ads_api import DEVELOPER_TOKEN
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING, REPO
from tests.sandbox_env import SECRETS, generated, sandbox_env


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with generated(n_leads=150, seed=3) as box:
        yield box


def env_for(box: Sandbox, state: Path, **extra: str) -> dict[str, str]:
    """The process environment, with every CONNECTOR_ setting pointing at `box`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env |= sandbox_env(box, f"sqlite:///{state / 'connector.db'}")
    env["CONNECTOR_LOG_LEVEL"] = "DEBUG"
    env.update(extra)
    return env


def connector(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    for secret in SECRETS:
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_sync_from_environment_prints_json_and_never_a_secret(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    result = connector("sync", "--json", env=env_for(sandbox, tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "ok" and summary["new"] > 0
    assert summary["destinations"]["google_ads"]["delivered"] > 0
    assert_no_secret(result)
    again = connector("sync", "--json", env=env_for(sandbox, tmp_path), cwd=tmp_path)
    assert json.loads(again.stdout)["new"] == 0


def test_a_refused_login_exits_2_with_a_clear_message_and_no_secret(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path, CONNECTOR_SALESFORCE__PASSWORD="wrong-but-secret-pw")
    result = connector("sync", env=env, cwd=tmp_path)
    assert result.returncode == 2  # a setting to fix: a scheduler alerts, it does not retry
    assert "Salesforce login" in result.stderr and "invalid_grant" in result.stderr
    assert "wrong-but-secret-pw" not in result.stdout + result.stderr
    assert_no_secret(result)


def test_bad_setting_names_the_variable_and_exits_2(sandbox: Sandbox, tmp_path: Path) -> None:
    env = env_for(sandbox, tmp_path, CONNECTOR_GA4__MEASUREMENT_ID="UA-12345")
    result = connector("sync", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "CONNECTOR_GA4__MEASUREMENT_ID" in result.stderr
    assert_no_secret(result)


def test_missing_credentials_are_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env["CONNECTOR_MAPPING_PATH"] = str(MAPPING)
    result = connector("check", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "CONNECTOR_SALESFORCE__USERNAME" in result.stdout


def test_dry_run_json_names_the_payload_file(sandbox: Sandbox, tmp_path: Path) -> None:
    payloads = tmp_path / "payloads.json"
    result = connector(
        "sync",
        "--dry-run",
        "--json",
        "--payloads-file",
        str(payloads),
        env=env_for(sandbox, tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["payloads_file"] == str(payloads)
    assert payloads.exists() and not (tmp_path / "connector.db").exists()
    assert_no_secret(result)


def test_a_payloads_file_that_cannot_be_written_is_exit_2_naming_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path)
    args = ("sync", "--dry-run", "--json", "--payloads-file", str(tmp_path))  # a directory
    result = connector(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert json.loads(result.stdout)["status"] == "failed"
    assert "--payloads-file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [[], ["sync"], ["demo"], ["check"], ["runs"], ["sandbox"]])
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = connector(*command, "--help", env=dict(os.environ), cwd=tmp_path)
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_demo_runs_to_completion_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env.update({"CONNECTOR_GA4__API_SECRET": "env-secret-never-shown"})
    result = connector(
        "demo", "--leads", "200", "--state-dir", str(tmp_path / "s"), "--json", env=env, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["first_sync"]["new"] > 0 and out["second_sync"]["new"] == 0
    assert out["emulators"]["google_ads_conversions"] > 0
    assert "env-secret-never-shown" not in result.stdout + result.stderr
    assert_no_secret(result)


def test_check_online_validates_a_sample_per_target(sandbox: Sandbox, tmp_path: Path) -> None:
    # The Google Ads account is checked with OAuth alone; a leftover token is never shown.
    env = env_for(sandbox, tmp_path, CONNECTOR_GOOGLE_ADS__DEVELOPER_TOKEN=DEVELOPER_TOKEN)
    result = connector("check", "--online", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["salesforce"]["ok"]
    assert checks["ga4 qualify_lead"]["ok"] and checks["google_ads 700000004"]["ok"]
    account = checks["google_ads account"]
    assert (
        account["status"] == "ok" and "time zone Europe/Berlin, currency EUR" in account["detail"]
    )
    for name in ("customer data terms", "enhanced conversions for leads"):
        assert checks[f"google_ads {name}"]["status"] == "ok"
    for action in ("700000001", "700000002", "700000003", "700000004"):
        line = checks[f"google_ads conversion action {action}"]
        assert line["status"] == "ok" and "UPLOAD_CLICKS, ENABLED" in line["detail"]
    assert_no_secret(result)
    assert DEVELOPER_TOKEN not in result.stdout + result.stderr


def test_check_online_names_a_field_the_org_lacks(sandbox: Sandbox, tmp_path: Path) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        MAPPING.read_text().replace("gclid: GCLID__c", "gclid: Google_Click__c"), "utf-8"
    )
    env = env_for(sandbox, tmp_path, CONNECTOR_MAPPING_PATH=str(mapping))
    result = connector("check", "--online", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "Google_Click__c" in result.stdout
    # No developer token: the account is read all the same.
    assert "ok google_ads account: customer" in result.stdout


def test_check_online_exits_3_when_salesforce_does_not_answer(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # Nothing to fix, only to try again: not exit 2 (a setting), which pages a person.
    env = env_for(sandbox, tmp_path, CONNECTOR_SALESFORCE__LOGIN_URL="https://127.0.0.1:1")
    result = connector("check", "--online", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert not checks["salesforce"]["ok"] and checks["ga4 qualify_lead"]["ok"]


def test_demo_through_the_legacy_google_ads_api_path(tmp_path: Path) -> None:
    # In-process (a subprocess costs seconds to start): the option, the run, the JSON.
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--leads",
            "120",
            "--upload-api",
            "ads_api",
            "--state-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["first_sync"]["destinations"]["google_ads"]["delivered"] > 0
    assert out["second_sync"]["new"] == 0
    assert out["emulators"]["google_ads_conversions"] > 0
    assert "google_ads_adjustments" in out["emulators"]
    bad = CliRunner().invoke(app, ["demo", "--upload-api", "smoke_signals"])
    assert bad.exit_code == 2 and "--upload-api" in bad.output
