"""A Sandbox's settings come from the sandbox alone: never from CONNECTOR_* variables or ./.env,
so a demo run in a shell (or directory) set up for a real org never mixes real values in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.cli.sandbox import env_lines, write_env_file
from connector.settings import load_settings
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING
from tests.sandbox_env import generated

# Real-looking values of a production shell; the endpoints are loopback, so even a leak
# reaches nothing beyond this machine.
REAL_ENV = {
    "CONNECTOR_SALESFORCE__SESSION_ID": "00D5g000realsessiontoken",
    "CONNECTOR_SALESFORCE__INSTANCE_URL": "https://127.0.0.1:1",
    "CONNECTOR_SALESFORCE__API_VERSION": "59.0",
    "CONNECTOR_GOOGLE_ADS__LOGIN_ACCOUNT_ID": "111-222-3333",
    "CONNECTOR_GOOGLE_ADS__DEVELOPER_TOKEN": "real-developer-token",
    "CONNECTOR_GA4__UPLOAD_API": "datamanager",
    "CONNECTOR_GA4__PROPERTY_ID": "987654321",
    "CONNECTOR_LEASE_SECONDS": "60",
}
REAL_VALUES = ["realsessiontoken", "127.0.0.1:1", "59.0", "1112223333", "real-developer-token"]


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with generated(n_leads=10, seed=3) as sandbox:
        yield sandbox


@pytest.fixture
def real_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A shell holding real CONNECTOR_* variables, in a directory whose .env sets up JWT."""
    for name, value in REAL_ENV.items():
        monkeypatch.setenv(name, value)
    key = tmp_path / "server.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    (tmp_path / ".env").write_text(
        f"CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE={key}\n"
        "CONNECTOR_GA4__API_SECRET=real-ga4-secret\n"
        "CONNECTOR_LOG_LEVEL=debug\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    return key


def test_the_real_setup_is_what_the_connector_itself_reads(real_setup: Path) -> None:
    # The fixture is live: the connector's own loading picks every one of these values up.
    settings = load_settings()
    assert settings.salesforce.session_id is not None
    assert settings.salesforce.private_key_file == real_setup
    assert settings.ga4.property_id == "987654321" and settings.log_level == "DEBUG"


def test_sandbox_settings_ignore_environment_variables_and_dotenv(
    real_setup: Path, box: Sandbox, tmp_path: Path
) -> None:
    settings = box.settings(f"sqlite:///{tmp_path / 'c.db'}", MAPPING)
    sf, ads, ga4 = settings.salesforce, settings.google_ads, settings.ga4
    assert sf.session_id is None and sf.instance_url == "" and sf.private_key_file is None
    assert sf.login_url == box.salesforce.url and sf.api_version == "62.0"
    assert ads.login_account_id == "" and ads.developer_token is None
    assert ga4.upload_api == "measurement_protocol" and ga4.property_id == ""
    assert ga4.api_secret is not None and ga4.api_secret.get_secret_value() == "demo-api-secret"
    assert settings.log_level == "INFO" and settings.lease_seconds == 900


def test_the_sandbox_env_file_holds_no_real_value(
    real_setup: Path, box: Sandbox, tmp_path: Path
) -> None:
    settings = box.settings(f"sqlite:///{tmp_path / 'c.db'}", MAPPING, upload_api="ads_api")
    path = tmp_path / "sandbox.env"
    write_env_file(path, settings)
    text = path.read_text("utf-8")
    assert not [value for value in [*REAL_VALUES, "real-ga4-secret", "server.key"] if value in text]
    names = {line.split("=", 1)[0] for line in env_lines(settings)}
    assert not names & {*REAL_ENV, "CONNECTOR_LOG_LEVEL", "CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE"}
    assert "CONNECTOR_GOOGLE_ADS__UPLOAD_API=ads_api" in text


def test_a_bad_connector_variable_does_not_break_the_sandbox(
    monkeypatch: pytest.MonkeyPatch, box: Sandbox, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONNECTOR_MAX_ATTEMPTS", "bogus")
    monkeypatch.setenv("CONNECTOR_GA4__MP_BASE_URL", "http://www.google-analytics.com")
    settings = box.settings(f"sqlite:///{tmp_path / 'c.db'}", MAPPING)
    assert settings.max_attempts == 10 and settings.ga4.mp_base_url == box.ga4.url


def test_what_the_caller_gives_still_wins(box: Sandbox, tmp_path: Path) -> None:
    settings = box.settings(
        f"sqlite:///{tmp_path / 'c.db'}", MAPPING, max_attempts=3, ga4={"property_id": "42"}
    )
    assert settings.max_attempts == 3 and settings.ga4.property_id == "42"
    assert settings.ga4.measurement_id == "G-DEMO000001"  # merged into, not replaced
