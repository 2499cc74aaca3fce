"""The SOQL the source sends, built in one place.

Nothing from the data or the mapping can inject SOQL: field names were
validated as plain API names when the mapping loaded, ids are checked
against the Salesforce id format, and the only other literals are datetimes
formatted here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.mapping.rules import Mapping

_SF_ID = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
# Deleted and merged leads are read too (queryAll): a merged lead's changes continue
# under the surviving lead, a deleted one's are recorded and sent nowhere.
LEAD_SYSTEM_FIELDS = ("CreatedDate", "IsDeleted", "MasterRecordId")
# CloseDate: the report converts a deal's amount at the dated rate of that day, as
# Salesforce does with advanced currency management (never sent anywhere).
OPPORTUNITY_SYSTEM_FIELDS = ("IsWon", "IsDeleted", "CloseDate")


# Ids per lookup: the leads they find fit one result page (2,000 records), and the SOQL
# (about 44,000 characters) fits SOQL's 100,000. Far too long for a URL (Salesforce refuses
# a call whose URI and headers pass 16,384 bytes), so a lookup rides in a Composite call's
# body (`connector.source.salesforce`), which counts as one API call.
LOOKUP_IDS = 2000


def soql_datetime(value: datetime) -> str:
    """An unquoted SOQL datetime literal (API-NOTES §5)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def id_list(ids: Iterable[str]) -> str:
    """A quoted SOQL id list; anything that is not a Salesforce id is dropped."""
    return ", ".join(f"'{i}'" for i in ids if _SF_ID.match(i))


def lead_select(mapping: Mapping) -> list[str]:
    return list(dict.fromkeys([*LEAD_SYSTEM_FIELDS, *mapping.lead_fields().values()]))


@dataclass(frozen=True)
class Query:
    """A stream's query in its parts: the object and the filter are known, never parsed back."""

    fields: str
    sobject: str  # the FROM object (Bulk API 2.0 jobs are addressed by it)
    where: str
    order: tuple[str, ...]  # ORDER BY these fields, ascending (the replication key, then Id)

    @property
    def soql(self) -> str:
        return f"{self.unordered} ORDER BY {', '.join(f'{name} ASC' for name in self.order)}"

    @property
    def unordered(self) -> str:
        """Without ORDER BY: for a Bulk API 2.0 job, whose results come in no promised order
        (and ORDER BY would stop Salesforce from chunking it): the reader sorts them."""
        return f"SELECT {self.fields} FROM {self.sobject} WHERE {self.where}"


def lead_history_query(mapping: Mapping, since: datetime) -> Query:
    spec = mapping.source
    parent = ", ".join(f"Lead.{name}" for name in lead_select(mapping))
    return Query(
        f"Id, LeadId, OldValue, NewValue, CreatedDate, {parent}",
        spec.history_object,
        f"Field = '{spec.status_field}' AND CreatedDate >= {soql_datetime(since)}",
        ("CreatedDate", "Id"),
    )


def lead_snapshot_query(mapping: Mapping, since: datetime) -> Query:
    spec = mapping.source
    fields = ", ".join(
        dict.fromkeys(["Id", spec.status_field, "SystemModstamp", *lead_select(mapping)])
    )
    return Query(
        fields,
        spec.object,
        f"SystemModstamp >= {soql_datetime(since)}",
        ("SystemModstamp", "Id"),
    )


def opportunity_history_query(mapping: Mapping, since: datetime) -> Query:
    spec = mapping.opportunity
    assert spec is not None
    parent = ", ".join(f"Opportunity.{name}" for name in _opportunity_select(mapping))
    return Query(
        f"Id, OpportunityId, Field, OldValue, NewValue, CreatedDate, {parent}",
        spec.history_object,
        f"Field IN ('{spec.stage_field}', '{spec.amount_field}') "
        f"AND CreatedDate >= {soql_datetime(since)}",
        ("CreatedDate", "Id"),
    )


def opportunity_snapshot_query(mapping: Mapping, since: datetime) -> Query:
    fields = ", ".join(dict.fromkeys(["Id", "SystemModstamp", *_opportunity_select(mapping)]))
    return Query(
        fields,
        "Opportunity",
        f"SystemModstamp >= {soql_datetime(since)}",
        ("SystemModstamp", "Id"),
    )


def converted_leads_soql(mapping: Mapping, opportunity_ids: list[str]) -> str:
    fields = ", ".join(dict.fromkeys(["Id", "ConvertedOpportunityId", *lead_select(mapping)]))
    return f"SELECT {fields} FROM Lead WHERE ConvertedOpportunityId IN ({id_list(opportunity_ids)})"


def primary_contacts_soql(opportunity_ids: list[str]) -> str:
    return (
        "SELECT OpportunityId, ContactId FROM OpportunityContactRole "
        f"WHERE IsPrimary = true AND OpportunityId IN ({id_list(opportunity_ids)})"
    )


def leads_by_contact_soql(mapping: Mapping, contact_ids: list[str]) -> str:
    fields = ", ".join(dict.fromkeys(["Id", "ConvertedContactId", *lead_select(mapping)]))
    return f"SELECT {fields} FROM Lead WHERE ConvertedContactId IN ({id_list(contact_ids)})"


def _opportunity_select(mapping: Mapping) -> list[str]:
    spec = mapping.opportunity
    assert spec is not None
    fields = [*OPPORTUNITY_SYSTEM_FIELDS, spec.stage_field, *mapping.opportunity_fields()]
    return list(dict.fromkeys(fields))
