from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.mapping.rules import load_mapping
from connector_sandbox import ga4 as ga4_emulator

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


@pytest.mark.parametrize(
    "event", [*sorted(ga4_emulator.RESERVED_EVENT_NAMES), "ga_lead", "google_x", "firebase_y"]
)
def test_every_event_name_ga4_reserves_is_refused_at_load(tmp_path: Path, event: str) -> None:
    path = write(tmp_path, f"version: 1\nstages:\n  MQL: {{stage: MQL, ga4: {{event: {event}}}}}\n")
    with pytest.raises(ConfigError, match=rf"stages\.MQL\.ga4\.event: .*'{event}' is reserved"):
        load_mapping(path)


def test_choices_forgive_case(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nga4_too_old: Send_Now\nsource: {mode: Snapshot}\n"
        "stages:\n  MQL: {stage: MQL, ga4: {event: qualify_lead}}\n",
    )
    mapping = load_mapping(path)
    assert (mapping.ga4_too_old, mapping.source.mode) == ("send_now", "snapshot")
    assert mapping.stages["MQL"].stage == "mql"


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"version: 1\nstages: {}\n# K\xe4se\n", "is not UTF-8"), (None, "is a directory")],
)
def test_an_unreadable_mapping_names_the_setting(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    path = tmp_path / "m.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as info:
        load_mapping(path)
    assert "CONNECTOR_MAPPING_PATH" in str(info.value)


def test_consent_lists_may_name_a_checkbox_as_yaml_booleans() -> None:
    from connector.mapping.rules import ConsentValues

    checkbox = ConsentValues.model_validate({"granted": [True], "denied": [False]})
    assert (checkbox.read(True), checkbox.read(False), checkbox.read("Granted")) == (
        True,
        False,
        None,
    )
