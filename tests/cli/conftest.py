"""The CLI against the emulators, in-process (typer's CliRunner): settings from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from connector.cli import app
from connector_sandbox import stack
from connector_sandbox.dataset import generate
from connector_sandbox.stack import Sandbox
from connector_sandbox.tls import sandbox_ca
from tests.conftest import MAPPING

SECRETS = [stack.SF_PASSWORD, stack.SF_TOKEN, stack.SF_CLIENT_SECRET, stack.GA4_SECRET]


@pytest.fixture(scope="package")
def sandbox() -> Iterator[Sandbox]:
    tables = generate(n_leads=120, seed=5, now=datetime.now(UTC).replace(microsecond=0)).tables()
    with Sandbox(tables) as box:
        yield box


def env_for(box: Sandbox, state: Path, **extra: str) -> dict[str, str]:
    ca = str(sandbox_ca().bundle_path)
    env = {
        "CONNECTOR_STATE_URL": f"sqlite:///{state / 'connector.db'}",
        "CONNECTOR_MAPPING_PATH": str(MAPPING),
        "CONNECTOR_LOG_FORMAT": "json",
        "CONNECTOR_SALESFORCE__LOGIN_URL": box.salesforce.url,
        "CONNECTOR_SALESFORCE__USERNAME": "demo@example.com",
        "CONNECTOR_SALESFORCE__PASSWORD": stack.SF_PASSWORD,
        "CONNECTOR_SALESFORCE__SECURITY_TOKEN": stack.SF_TOKEN,
        "CONNECTOR_SALESFORCE__CLIENT_ID": "demo-client-id",
        "CONNECTOR_SALESFORCE__CLIENT_SECRET": stack.SF_CLIENT_SECRET,
        "CONNECTOR_SALESFORCE__CA_BUNDLE": ca,
        "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID": stack.OPERATING_ACCOUNT,
        "CONNECTOR_GOOGLE_ADS__DATAMANAGER_ENDPOINT": box.datamanager.url,
        "CONNECTOR_GOOGLE_ADS__DATAMANAGER_CA_BUNDLE": ca,
        "CONNECTOR_GOOGLE_ADS__ANONYMOUS_CREDENTIALS": "true",
        "CONNECTOR_GA4__MEASUREMENT_ID": stack.MEASUREMENT_ID,
        "CONNECTOR_GA4__API_SECRET": stack.GA4_SECRET,
        "CONNECTOR_GA4__MP_BASE_URL": box.ga4.url,
        "CONNECTOR_GA4__CA_BUNDLE": ca,
    }
    env.update(extra)
    return env


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), env=env)
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    return result
