"""Every command's --json answers in JSON when it fails on the settings, the mapping or its
own options, with the exit code of the failure: a script reads one shape, always."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import invoke

COMMANDS = [
    ["sync"],
    ["sync", "--dry-run"],
    ["check"],
    ["runs"],
    ["failures"],
    ["report"],
    ["replay", "--since", "2026-11-01", "--dry-run"],
    ["costs"],
    ["channels"],
    ["reconcile"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_invalid_setting_is_exit_2_in_json(command: list[str], tmp_path: Path) -> None:
    env = {
        "CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'connector.db'}",
        "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID": "123",  # not 10 digits
    }
    result = invoke(*command, "--json", env=env)
    assert result.exit_code == 2, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "failed"
    assert "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID" in answer["error"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--since", "someday", "--dry-run"], "--since"),
        (["--since", "2026-11-01", "--dry-run", "--mapping", "absent.yaml"], "absent.yaml"),
    ],
)
def test_replays_own_mistakes_are_exit_2_in_json(
    args: list[str], named: str, tmp_path: Path
) -> None:
    env = {"CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'connector.db'}"}
    result = invoke("replay", *args, "--json", env=env)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert named in json.loads(result.stdout)["error"]
