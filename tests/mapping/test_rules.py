from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.mapping.rules import load_mapping

REPO = Path(__file__).resolve().parents[2]


def test_shipped_mapping_loads() -> None:
    mapping = load_mapping(REPO / "mappings" / "salesforce.yaml")
    assert mapping.rule_for("MQL") is not None
    assert mapping.rule_for("Nurture") is None
    assert mapping.lead_fields()["gclid"] == "GCLID__c"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_field_names_that_could_inject_soql_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nsource: {fields: {gclid: \"X' OR Name != '\"}}\nstages: {}\n",
    )
    with pytest.raises(ConfigError, match=r"source\.fields\.gclid"):
        load_mapping(path)


def test_unknown_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nstages:\n  MQL: {stage: mql, google_ads: {conversion_action: '  '}}\n"
        "  SQL: {stage: sqll}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    message = str(info.value)
    assert "stages.MQL.google_ads.conversion_action" in message
    assert "stages.SQL.stage" in message


def test_missing_mapping_file_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CONNECTOR_MAPPING_PATH"):
        load_mapping(tmp_path / "nope.yaml")
