"""The CLI against the emulators, in-process (typer's CliRunner): settings from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from connector.cli import app
from connector_sandbox.stack import Sandbox
from tests.sandbox_env import SECRETS, generated, sandbox_env


@pytest.fixture(scope="package")
def sandbox() -> Iterator[Sandbox]:
    with generated(n_leads=120, seed=5) as box:
        yield box


def env_for(box: Sandbox, state: Path, **extra: str) -> dict[str, str]:
    env = sandbox_env(box, f"sqlite:///{state / 'connector.db'}")
    env["CONNECTOR_LOG_FORMAT"] = "json"
    env.update(extra)
    return env


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), env=env)
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    return result
