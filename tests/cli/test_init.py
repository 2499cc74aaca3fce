"""`connector init`: .env and a mapping drafted from the org's describe, usable at once."""

from __future__ import annotations

import json
from pathlib import Path

from connector.draft import guess_roles, guess_stage
from connector_sandbox.stack import Sandbox
from tests.cli.conftest import env_for, invoke


def salesforce_only(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    env = env_for(sandbox, tmp_path)
    return {k: v for k, v in env.items() if k.startswith("CONNECTOR_SALESFORCE__")}


def test_init_drafts_a_mapping_that_check_accepts(sandbox: Sandbox, tmp_path: Path) -> None:
    env_file, mapping = tmp_path / "x.env", tmp_path / "mappings" / "m.yaml"
    args = ("init", "--env-file", str(env_file), "--mapping", str(mapping), "--json")
    result = invoke(*args, env=salesforce_only(sandbox, tmp_path))
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"MQL", "SQL", "Nurture"} <= set(out["statuses"])
    assert out["fields"]["gclid"] == "GCLID__c" and out["fields"]["ga_client_id"]
    text = mapping.read_text("utf-8")
    assert "  MQL: {stage: mql, ga4: {event: qualify_lead}}" in text
    assert "  # Nurture: {stage: ...}" in text  # not guessed: left to a person
    assert "    Closed Won: {stage: won" in text
    assert env_file.stat().st_mode & 0o077 == 0
    lines = env_file.read_text("utf-8").splitlines()
    assert f"CONNECTOR_MAPPING_PATH={mapping}" in lines
    # The drafted mapping loads: `check` reads it (offline, with a destination set).
    env = {
        **{k: v.strip("'") for k, v in (line.split("=", 1) for line in lines if line[:1] != "#")},
        "CONNECTOR_GA4__MEASUREMENT_ID": "G-TEST",
        "CONNECTOR_GA4__API_SECRET": "test-secret",
    }
    check = invoke("check", "--json", env=env)
    assert check.exit_code == 0, check.stdout + check.stderr
    again = invoke(*args, env=salesforce_only(sandbox, tmp_path))
    assert again.exit_code == 2 and "--force" in again.stdout + again.stderr


def test_without_a_terminal_init_names_what_to_set(tmp_path: Path) -> None:
    result = invoke("init", "--env-file", str(tmp_path / ".env"), "--mapping", str(tmp_path / "m"))
    assert result.exit_code == 2
    assert "CONNECTOR_SALESFORCE__USERNAME" in result.stderr


def test_guesses() -> None:
    fields = [{"name": "Google_Click_Id__c", "label": "GCLID"}, {"name": "GA_CID__c", "label": ""}]
    assert guess_roles(fields) == {"gclid": "Google_Click_Id__c", "ga_client_id": "GA_CID__c"}
    assert [guess_stage(s) for s in ("Open - Not Contacted", "Closed - Not Converted")] == [
        "lead",
        "disqualified",
    ]
    assert guess_stage("Nurture") is None
