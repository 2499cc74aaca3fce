"""The SOQL the source builds: parent fields ride along, nothing can be injected."""

from __future__ import annotations

from datetime import UTC, datetime

from connector.mapping.rules import load_mapping
from connector.source.soql import (
    LOOKUP_IDS,
    converted_leads_soql,
    lead_history_query,
    lead_snapshot_query,
    opportunity_history_query,
    primary_contacts_soql,
)
from tests.conftest import MAPPING

NOW = datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)
OPP = "006000000000001AAA"


def test_history_query_has_parent_fields_and_an_unquoted_datetime() -> None:
    soql = lead_history_query(load_mapping(MAPPING), NOW).soql
    assert "Lead.GCLID__c" in soql and "Lead.MasterRecordId" in soql
    assert "FROM LeadHistory" in soql and "CreatedDate >= 2026-11-20T14:03:11Z" in soql


def test_snapshot_query_reads_records_by_modstamp() -> None:
    soql = lead_snapshot_query(load_mapping(MAPPING), NOW).soql
    assert soql.startswith("SELECT Id, Status, SystemModstamp, CreatedDate, IsDeleted")
    assert "FROM Lead WHERE SystemModstamp >= 2026-11-20T14:03:11Z" in soql


def test_only_validated_ids_reach_an_in_list() -> None:
    mapping = load_mapping(MAPPING)
    injected = converted_leads_soql(mapping, [OPP, "x') OR Id != ('"])
    assert injected.endswith(f"IN ('{OPP}')")
    assert primary_contacts_soql(["'; DELETE", OPP]).endswith(f"IN ('{OPP}')")


def test_a_lookup_of_2000_ids_fits_soqls_limit_but_no_url() -> None:
    soql = converted_leads_soql(load_mapping(MAPPING), [f"006{n:015d}" for n in range(LOOKUP_IDS)])
    assert 16_384 < len(soql) < 100_000  # hence a Composite call's body, not a GET


def test_a_query_is_ordered_for_rest_pages() -> None:
    query = lead_history_query(load_mapping(MAPPING), NOW)
    assert query.soql.endswith(" ORDER BY CreatedDate ASC, Id ASC")


def test_a_query_knows_its_object_and_its_unordered_form() -> None:
    # The object Bulk API 2.0 jobs are addressed by, without parsing it out of the text.
    query = opportunity_history_query(load_mapping(MAPPING), NOW)
    assert query.sobject == "OpportunityFieldHistory"
    assert query.soql.startswith(query.unordered + " ORDER BY ")
    assert "ORDER BY" not in query.unordered and " FROM OpportunityFieldHistory " in query.unordered
