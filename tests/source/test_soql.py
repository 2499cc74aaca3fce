"""The SOQL the source builds: parent fields ride along, nothing can be injected."""

from __future__ import annotations

from datetime import UTC, datetime

from connector.mapping.rules import load_mapping
from connector.source.soql import (
    converted_leads_soql,
    count_soql,
    lead_history_soql,
    lead_snapshot_soql,
    primary_contacts_soql,
)
from tests.conftest import MAPPING

NOW = datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)
OPP = "006000000000001AAA"


def test_history_query_has_parent_fields_and_an_unquoted_datetime() -> None:
    soql = lead_history_soql(load_mapping(MAPPING), NOW)
    assert "Lead.GCLID__c" in soql and "Lead.MasterRecordId" in soql
    assert "FROM LeadHistory" in soql and "CreatedDate >= 2026-11-20T14:03:11Z" in soql


def test_snapshot_query_reads_records_by_modstamp() -> None:
    soql = lead_snapshot_soql(load_mapping(MAPPING), NOW)
    assert soql.startswith("SELECT Id, Status, SystemModstamp, CreatedDate, IsDeleted")
    assert "FROM Lead WHERE SystemModstamp >= 2026-11-20T14:03:11Z" in soql


def test_only_validated_ids_reach_an_in_list() -> None:
    mapping = load_mapping(MAPPING)
    injected = converted_leads_soql(mapping, [OPP, "x') OR Id != ('"])
    assert injected.endswith(f"IN ('{OPP}')")
    assert primary_contacts_soql(["'; DELETE", OPP]).endswith(f"IN ('{OPP}')")


def test_count_keeps_the_filter_and_drops_the_order() -> None:
    soql = lead_history_soql(load_mapping(MAPPING), NOW)
    count = count_soql(soql)
    assert count.startswith("SELECT COUNT() FROM LeadHistory WHERE Field = 'Status'")
    assert "ORDER BY" not in count
