"""The Salesforce streams, declared: what each reads, how, and by which replication key.

One stream per object whose stage the mapping follows (the lead, and the
opportunity when the mapping has one), in the read mode the mapping chose:

    name (bookmark key)                  object       mode      replication key
    salesforce.LeadHistory               Lead         history   CreatedDate
    salesforce.Lead                      Lead         snapshot  SystemModstamp
    salesforce.OpportunityFieldHistory   Opportunity  history   CreatedDate
    salesforce.Opportunity               Opportunity  snapshot  SystemModstamp

A stream reads the object its name ends in: the field history, or the object.
The name is the stream's bookmark key in the ledger: switching an object's read
mode starts a new stream (a new backfill), never one bookmark read two ways.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.mapping.rules import Mapping, ReadMode

HISTORY_KEY, SNAPSHOT_KEY = "CreatedDate", "SystemModstamp"


@dataclass(frozen=True)
class Stream:
    """One declared stream (the Singer SDK's name, object and replication key)."""

    name: str  # the bookmark key: "salesforce.LeadHistory"
    sobject: str  # the record whose stage it follows: "Lead" or "Opportunity"
    mode: ReadMode
    reads: str  # the object queried: its field history, or the object itself
    replication_key: str  # the field the cursor follows

    @classmethod
    def of(cls, sobject: str, mode: ReadMode, history_object: str) -> Stream:
        reads = history_object if mode == "history" else sobject
        key = HISTORY_KEY if mode == "history" else SNAPSHOT_KEY
        return cls(f"salesforce.{reads}", sobject, mode, reads, key)


def declared(mapping: Mapping) -> list[Stream]:
    """The streams a sync pulls, in order: the lead's first, then the opportunity's."""
    found = [Stream.of(mapping.source.object, mapping.source.mode, mapping.source.history_object)]
    if (spec := mapping.opportunity) is not None:
        found.append(Stream.of("Opportunity", spec.mode, spec.history_object))
    return found


LEAD_HISTORY = Stream.of("Lead", "history", "LeadHistory")
OPPORTUNITY_HISTORY = Stream.of("Opportunity", "history", "OpportunityFieldHistory")
