"""The leads held for one read of OpportunityFieldHistory: compact, bounded, misses too."""

from __future__ import annotations

from connector.source.leads import LeadsByOpportunity

FIELDS = ("Id", "Email", "GCLID__c")


def test_a_held_lead_comes_back_with_the_fields_it_was_held_with() -> None:
    held = LeadsByOpportunity(FIELDS)
    lead = {"Id": "00Q1", "Email": "a@example.com", "GCLID__c": None, "attributes": {}}
    held.hold(["0061", "0062"], {"0061": lead})
    assert "0061" in held and "0062" in held and "0063" not in held
    # Only the fields read are kept; an opportunity without a lead is remembered as such.
    assert held.take(["0061", "0062", "0063"]) == {
        "0061": {"Id": "00Q1", "Email": "a@example.com", "GCLID__c": None}
    }


def test_the_least_recently_used_go_beyond_capacity() -> None:
    held = LeadsByOpportunity(FIELDS, capacity=2)
    held.hold(["0061", "0062"], {})
    held.take(["0061"])  # used again: 0062 is now the oldest
    held.hold(["0063"], {})
    assert "0061" in held and "0063" in held and "0062" not in held
