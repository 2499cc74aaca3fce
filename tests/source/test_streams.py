"""The streams a mapping declares: object, read mode, queried object, replication key."""

from __future__ import annotations

from pathlib import Path

from connector.mapping.rules import load_mapping
from connector.source.streams import LEAD_HISTORY, OPPORTUNITY_HISTORY, declared
from tests.conftest import MAPPING
from tests.source.cases import snapshot_mapping


def test_history_mode_streams_read_the_field_history_by_created_date() -> None:
    found = declared(load_mapping(MAPPING))
    assert found == [LEAD_HISTORY, OPPORTUNITY_HISTORY]
    assert [(s.name, s.sobject, s.mode, s.reads, s.replication_key) for s in found] == [
        ("salesforce.LeadHistory", "Lead", "history", "LeadHistory", "CreatedDate"),
        (
            "salesforce.OpportunityFieldHistory",
            "Opportunity",
            "history",
            "OpportunityFieldHistory",
            "CreatedDate",
        ),
    ]


def test_snapshot_mode_streams_read_the_object_by_modstamp(tmp_path: Path) -> None:
    found = declared(load_mapping(snapshot_mapping(tmp_path)))
    assert [(s.name, s.sobject, s.mode, s.reads, s.replication_key) for s in found] == [
        ("salesforce.Lead", "Lead", "snapshot", "Lead", "SystemModstamp"),
        ("salesforce.Opportunity", "Opportunity", "snapshot", "Opportunity", "SystemModstamp"),
    ]


def test_without_opportunity_rules_only_the_lead_is_pulled() -> None:
    mapping = load_mapping(MAPPING).model_copy(update={"opportunity": None})
    assert declared(mapping) == [LEAD_HISTORY]
