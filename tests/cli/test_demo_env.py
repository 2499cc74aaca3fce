"""`connector demo` in a shell set up for a real org: it runs on the emulators all the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import invoke

# A real-looking setup, pointed at loopback so that a leak could reach nothing beyond this machine.
REAL_ENV = {
    "CONNECTOR_SALESFORCE__SESSION_ID": "00D5g000realsessiontoken",
    "CONNECTOR_SALESFORCE__INSTANCE_URL": "https://127.0.0.1:1",
    "CONNECTOR_GA4__UPLOAD_API": "datamanager",
    "CONNECTOR_GA4__PROPERTY_ID": "987654321",
    "CONNECTOR_MAX_ATTEMPTS": "bogus",
}


def test_the_demo_ignores_real_settings_in_the_environment_and_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = tmp_path / "server.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    (tmp_path / ".env").write_text(
        f"CONNECTOR_SALESFORCE__USERNAME=ops@acme.example\n"
        f"CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE={key}\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "d"
    result = invoke("demo", "--leads", "10", "--state-dir", str(state), "--json", env=REAL_ENV)
    assert result.exit_code == 0, result.stderr
    demo = json.loads(result.stdout)
    # Pulled from the Salesforce emulator (the session's instance refuses every connection).
    assert demo["first_sync"]["status"] == "ok" and demo["first_sync"]["pulled"] > 0
    assert demo["emulators"]["google_ads_conversions"] > 0


def test_a_state_dir_that_cannot_be_made_is_exit_2_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    result = invoke("demo", "--leads", "10", "--state-dir", str(blocker / "d"), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["status"] == "failed"
    assert "--state-dir" in json.loads(result.stdout)["error"]
