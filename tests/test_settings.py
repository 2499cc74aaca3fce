"""Settings helpers: unknown variables, placeholders, the names every setting reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from connector.errors import ConfigError
from connector.settings import (
    Settings,
    known_env_names,
    load_settings,
    unknown_env_names,
)


def test_every_setting_has_its_variable() -> None:
    names = known_env_names()
    assert "CONNECTOR_SALESFORCE__USERNAME" in names
    assert "CONNECTOR_GA4__API_SECRET" in names
    assert "CONNECTOR_LOG_LEVEL" in names
    assert all(n == n.upper() for n in names)


def test_every_variable_of_the_example_is_a_setting() -> None:
    example = Path(__file__).resolve().parent.parent / ".env.example"
    names = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line.startswith("CONNECTOR_")
    }
    assert unknown_env_names(dict.fromkeys(names, "")) == []


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("CONNECTOR_SALESFORCE__USRENAME", "CONNECTOR_SALESFORCE__USERNAME"),
        ("CONNECTOR_GA4_API_SECRET", "CONNECTOR_GA4__API_SECRET"),
        ("connector_log_levl", "CONNECTOR_LOG_LEVEL"),
    ],
)
def test_an_unknown_variable_is_named_with_the_nearest_setting(name: str, hint: str) -> None:
    assert unknown_env_names({name: "x", "CONNECTOR_LOG_LEVEL": "INFO", "HOME": "/"}) == [
        f"{name} is not a setting (did you mean {hint}?)"
    ]


def test_the_test_suites_own_variables_are_not_settings_to_report() -> None:
    assert unknown_env_names({"CONNECTOR_TEST_POSTGRES_URL": "postgresql://x"}) == []


def test_unknown_variables_in_the_env_file_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CONNECTOR_SALESFORCE__PASWORD=x\n")
    problems = unknown_env_names()
    assert any(p.startswith("CONNECTOR_SALESFORCE__PASWORD is not a setting") for p in problems)


def test_placeholders_are_named_secrets_included() -> None:
    settings = Settings.model_validate(
        {
            "ga4": {"measurement_id": "G-XXXXXXXXXX", "api_secret": SecretStr("change-me")},
            "google_ads": {"operating_account_id": "000-000-0000"},
        }
    )
    assert settings.placeholders() == [
        "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID",
        "CONNECTOR_GA4__MEASUREMENT_ID",
        "CONNECTOR_GA4__API_SECRET",
    ]


def test_a_bad_value_is_named_but_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_GA4__MP_BASE_URL", "http://user:hunter2@proxy.example")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "CONNECTOR_GA4__MP_BASE_URL: Value error, must start with https://" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_group_given_as_json_is_a_setting_and_broken_json_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert unknown_env_names({"CONNECTOR_GA4": '{"measurement_id": "G-ABC1234567"}'}) == []
    monkeypatch.setenv("CONNECTOR_SALESFORCE", "not-json-hunter2")
    with pytest.raises(ConfigError, match="salesforce") as info:
        load_settings()
    assert "hunter2" not in str(info.value)
