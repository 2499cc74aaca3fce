"""`connector init --force` over an existing .env: it replaces only what init writes.

The state URL names the ledger (cursors, what was sent): a new one would re-pull the backfill
and re-send GA4 events, which GA4 cannot deduplicate. So every setting init does not write,
and the file's comments, stay as they were. Settings are read as a run reads them, from the
.env in the working directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from connector_sandbox import stack
from connector_sandbox.stack import Sandbox
from tests.cli.conftest import env_for, invoke

ROOT = Path(__file__).resolve().parents[2]
STATE_URL = "postgresql+psycopg://connector:pg-secret-41@db.example.internal:5432/connector"
GA4_SECRET = "ga4-real-secret-93"
# Secrets of this file's own: never printed either.
OWN_SECRETS = ["pg-secret-41", GA4_SECRET, "stale-password-5"]


def salesforce_lines(sandbox: Sandbox, tmp_path: Path) -> list[str]:
    env = env_for(sandbox, tmp_path)
    return [f"{k}={v}" for k, v in env.items() if k.startswith("CONNECTOR_SALESFORCE__")]


def init_force(tmp_path: Path, **env: str) -> str:
    """`connector init --force` in `tmp_path`; the .env it leaves."""
    result = invoke("init", "--force", "--json", env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    for secret in OWN_SECRETS:
        assert secret not in result.stdout + result.stderr
    return (tmp_path / ".env").read_text("utf-8")


def test_init_force_keeps_the_state_url_ga4_and_every_other_setting(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    password = "CONNECTOR_SALESFORCE__PASSWORD="
    kept = [
        "# our production settings",
        f"CONNECTOR_STATE_URL={STATE_URL}",
        "CONNECTOR_GA4__MEASUREMENT_ID=G-REAL123",
        f"CONNECTOR_GA4__API_SECRET={GA4_SECRET}",
        "CONNECTOR_LOG_FORMAT=json",
        "export CONNECTOR_MAX_ATTEMPTS=12",
        "# CONNECTOR_GA4__PROPERTY_ID=123456789",
        "",
        "# Salesforce",
        *(line for line in salesforce_lines(sandbox, tmp_path) if not line.startswith(password)),
    ]
    # A stale password in the file; the environment's (which wins for a run) is the one to keep.
    (tmp_path / ".env").write_text("\n".join([*kept, f"{password}stale-password-5"]) + "\n")

    text = init_force(tmp_path, CONNECTOR_SALESFORCE__PASSWORD=stack.SF_PASSWORD)
    lines = text.splitlines()
    assert lines[: len(kept)] == kept  # every line as it was, comments and all, in place
    assert lines[len(kept)] == f"{password}{stack.SF_PASSWORD}"  # replaced where it was
    assert "stale-password-5" not in text and "sqlite" not in text
    settings = dotenv_values(tmp_path / ".env")
    assert settings["CONNECTOR_STATE_URL"] == STATE_URL
    assert settings["CONNECTOR_MAPPING_PATH"] == str(tmp_path / "mappings" / "salesforce.yaml")
    assert lines.count("# CONNECTOR_GA4__MEASUREMENT_ID=") == 0  # the file has it set
    assert "# CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID=" in lines  # the file had no word of it
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
    # Again: nothing changes, nothing is added twice.
    assert init_force(tmp_path, CONNECTOR_SALESFORCE__PASSWORD=stack.SF_PASSWORD) == text


def test_init_force_after_cp_env_example_fills_it_in_and_keeps_the_rest(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README's flow: cp .env.example .env, edit what init does not write, init --force.
    monkeypatch.chdir(tmp_path)
    example = (ROOT / ".env.example").read_text("utf-8")
    edited = example.replace("G-XXXXXXXXXX", "G-REAL123").replace(
        "CONNECTOR_GA4__API_SECRET=change-me", f"CONNECTOR_GA4__API_SECRET={GA4_SECRET}"
    )
    # The username-password flow, and no Google Ads yet: their placeholders commented out.
    for key in ("SALESFORCE__PRIVATE_KEY_FILE", "GOOGLE_ADS__OPERATING_ACCOUNT_ID"):
        edited = edited.replace(f"\nCONNECTOR_{key}=", f"\n# CONNECTOR_{key}=")
    edited = edited.replace(
        "\nCONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE=", "\n# CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE="
    )
    (tmp_path / ".env").write_text(edited)
    salesforce = dict(line.split("=", 1) for line in salesforce_lines(sandbox, tmp_path))

    text = init_force(tmp_path, **salesforce)
    settings = dotenv_values(tmp_path / ".env")
    assert settings["CONNECTOR_STATE_URL"] == "sqlite:////var/lib/connector/connector.db"
    assert settings["CONNECTOR_GA4__MEASUREMENT_ID"] == "G-REAL123"
    assert settings["CONNECTOR_GA4__API_SECRET"] == GA4_SECRET
    assert settings["CONNECTOR_GOOGLE_ADS__DEFAULT_PHONE_REGION"] == "US"
    assert {k: settings[k] for k in salesforce} == salesforce
    assert settings["CONNECTOR_MAPPING_PATH"] == str(tmp_path / "mappings" / "salesforce.yaml")
    # Every other line stays, comments too; the commented-out examples of what init set (and
    # the placeholders of the Salesforce settings) became its settings.
    replaced = re.compile(r"(# )?CONNECTOR_(SALESFORCE__\w+|MAPPING_PATH)=")
    others = [line for line in edited.splitlines() if not replaced.match(line)]
    assert [line for line in text.splitlines() if not replaced.match(line)] == others
    before, after = edited.splitlines(), text.splitlines()
    at = before.index("# CONNECTOR_SALESFORCE__PASSWORD=change-me")
    assert after[at] == f"CONNECTOR_SALESFORCE__PASSWORD={stack.SF_PASSWORD}"  # in its place
    assert len(after) == len(before)  # nothing appended: the example names every setting


def test_without_a_state_url_in_the_file_init_writes_one(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CONNECTOR_LOG_FORMAT=json\n")
    salesforce = dict(line.split("=", 1) for line in salesforce_lines(sandbox, tmp_path))
    init_force(tmp_path, **salesforce)
    settings = dotenv_values(tmp_path / ".env")
    assert settings["CONNECTOR_STATE_URL"] == f"sqlite:///{tmp_path / 'state' / 'connector.db'}"
    assert settings["CONNECTOR_LOG_FORMAT"] == "json"
    # One the environment sets is the one the runs use: that one goes in.
    (tmp_path / ".env").write_text("CONNECTOR_LOG_FORMAT=json\n")
    init_force(tmp_path, **salesforce, CONNECTOR_STATE_URL=STATE_URL)
    assert dotenv_values(tmp_path / ".env")["CONNECTOR_STATE_URL"] == STATE_URL


def test_an_unreadable_env_file_stops_init_before_anything_is_written(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env_file, mapping = tmp_path / "other.env", tmp_path / "m.yaml"
    env_file.write_bytes(b"CONNECTOR_LOG_FORMAT=\xff\n")
    salesforce = dict(line.split("=", 1) for line in salesforce_lines(sandbox, tmp_path))
    args = ("init", "--force", "--env-file", str(env_file), "--mapping", str(mapping))
    result = invoke(*args, env=salesforce)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"{env_file} cannot be read" in result.stderr
    assert env_file.read_bytes() == b"CONNECTOR_LOG_FORMAT=\xff\n" and not mapping.exists()
