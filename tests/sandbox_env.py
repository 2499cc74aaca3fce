"""The CONNECTOR_ environment that points every setting at a running Sandbox: one copy, for
the CLI tests (in-process and as subprocesses) and the bad-input tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from connector_sandbox import stack
from connector_sandbox.dataset import generate
from connector_sandbox.stack import Sandbox
from connector_sandbox.tls import sandbox_ca
from tests.conftest import MAPPING

# The Sandbox's own secrets: never in any output, request log or state.
SECRETS = [stack.SF_PASSWORD, stack.SF_TOKEN, stack.SF_CLIENT_SECRET, stack.GA4_SECRET]


def sandbox_env(
    box: Sandbox, state_url: str, *, mapping: Path = MAPPING, google_ads: bool = True
) -> dict[str, str]:
    ca = str(sandbox_ca().bundle_path)
    env = {
        "CONNECTOR_STATE_URL": state_url,
        "CONNECTOR_MAPPING_PATH": str(mapping),
        "CONNECTOR_SALESFORCE__LOGIN_URL": box.salesforce.url,
        "CONNECTOR_SALESFORCE__USERNAME": "demo@example.com",
        "CONNECTOR_SALESFORCE__PASSWORD": stack.SF_PASSWORD,
        "CONNECTOR_SALESFORCE__SECURITY_TOKEN": stack.SF_TOKEN,
        "CONNECTOR_SALESFORCE__CLIENT_ID": "demo-client-id",
        "CONNECTOR_SALESFORCE__CLIENT_SECRET": stack.SF_CLIENT_SECRET,
        "CONNECTOR_SALESFORCE__CA_BUNDLE": ca,
        "CONNECTOR_GA4__MEASUREMENT_ID": stack.MEASUREMENT_ID,
        "CONNECTOR_GA4__API_SECRET": stack.GA4_SECRET,
        "CONNECTOR_GA4__MP_BASE_URL": box.ga4.url,
        "CONNECTOR_GA4__CA_BUNDLE": ca,
    }
    if google_ads:
        env |= {
            "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID": stack.OPERATING_ACCOUNT,
            # An https:// URL, as .env files written for the REST transport have it.
            "CONNECTOR_GOOGLE_ADS__DATAMANAGER_ENDPOINT": f"https://{box.datamanager.endpoint}",
            "CONNECTOR_GOOGLE_ADS__DATAMANAGER_CA_BUNDLE": ca,
            "CONNECTOR_GOOGLE_ADS__ANONYMOUS_CREDENTIALS": "true",
            "CONNECTOR_GOOGLE_ADS__API_ENDPOINT": box.google_ads_api.endpoint,
            "CONNECTOR_GOOGLE_ADS__API_CA_BUNDLE": ca,
        }
    return env


@contextmanager
def generated(n_leads: int, seed: int) -> Iterator[Sandbox]:
    """The emulators serving a generated org of `n_leads` leads, changed until now."""
    now = datetime.now(UTC).replace(microsecond=0)
    with Sandbox(generate(n_leads=n_leads, seed=seed, now=now).tables()) as box:
        yield box


def fresh(box: Sandbox) -> Sandbox:
    """`box` with the upload emulators back at their start (cheaper than a new Sandbox)."""
    for emulator in (box.salesforce, box.datamanager, box.ga4):
        emulator.reset()
    return box
