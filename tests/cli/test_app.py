"""What every command shares: -h, --version, help without flag placeholders, choices listed."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from tests.cli.conftest import invoke

COMMANDS = [
    "sync",
    "run",
    "runs",
    "init",
    "demo",
    "sandbox",
    "check",
    "report",
    "reconcile",
    "channels",
]


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"connector {version('connector')}\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_placeholder_on_flags(command: str) -> None:
    short, long = invoke(command, "-h"), invoke(command, "--help")
    assert short.exit_code == 0 and short.stdout == long.stdout
    assert f" {command} [OPTIONS]" in short.stdout.splitlines()[0]
    assert "<bool>" not in short.stdout and "╭" not in short.stdout


def test_choices_are_listed() -> None:
    assert "--upload-api <datamanager|ads_api>" in invoke("demo", "-h").stdout
    bad = invoke("demo", "--upload-api", "smoke_signals")
    assert bad.exit_code == 2 and "--upload-api" in bad.output


def test_the_command_list_names_every_command() -> None:
    listed = invoke("-h").stdout
    for command in COMMANDS:
        assert f"\n  {command} " in listed
