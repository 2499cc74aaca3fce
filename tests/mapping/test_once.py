"""A funnel stage counts once: the rule on its own (what the ledger answered, passed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.core import GA4, GOOGLE_ADS, CrmChange, Mapped
from connector.mapping.once import STAGE_ALREADY_REACHED, first_reached
from connector.mapping.rules import load_mapping
from connector.mapping.translate import translate

MAPPING = load_mapping(Path(__file__).resolve().parents[2] / "mappings" / "salesforce.yaml")
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
LEAD, OPP = "00Q000000000001", "006000000000001"
WON = f"{LEAD}:won:{OPP}"


def deal(old: str | None, new: str, minutes: int) -> Mapped:
    lead = {"gclid": "Cj0KCQiA-abcdEFGH_1234567890", "ga_client_id": "1.2", "Amount": 10}
    at = T0 + timedelta(minutes=minutes)
    crm = CrmChange("h", LEAD, old, new, at, T0, lead, opportunity_id=OPP)
    return translate(crm, MAPPING, "DE")


def reasons(mapped: Mapped) -> dict[str, str | None]:
    return {t.destination: t.skip_reason for t in mapped.targets}


def test_a_deal_won_again_after_its_win_was_retracted_counts_again() -> None:
    recorded = [(WON, T0, None), (f"{LEAD}:opportunity:{OPP}", T0 + timedelta(minutes=1), WON)]
    again = deal("Negotiation", "Closed Won", 2)
    (decided,) = first_reached([again], recorded)
    assert reasons(decided) == {GA4: None, GOOGLE_ADS: None}
    # ... but a win after a win (no retraction between) is the stage reached again.
    (twice,) = first_reached([again], [(WON, T0, None)])
    assert reasons(twice) == {GA4: STAGE_ALREADY_REACHED, GOOGLE_ADS: STAGE_ALREADY_REACHED}


def test_a_deal_lost_again_after_a_win_still_retracts_the_win() -> None:
    lost_again = deal("Closed Won", "Closed Lost", 5)
    recorded = [(f"{LEAD}:lost:{OPP}", T0, None), (WON, T0 + timedelta(minutes=1), None)]
    (decided,) = first_reached([lost_again], recorded)
    assert decided.change.retracts == WON
    assert reasons(decided) == {GA4: STAGE_ALREADY_REACHED, GOOGLE_ADS: None}


def test_a_change_read_again_in_the_overlap_is_no_reentry_of_itself() -> None:
    won = deal("Negotiation", "Closed Won", 0)
    (decided,) = first_reached([won], [(WON, won.change.changed_at, None)])
    assert reasons(decided) == {GA4: None, GOOGLE_ADS: None}


def test_within_a_batch_the_earliest_reach_counts_whatever_the_order() -> None:
    later, earlier = deal("Proposal", "Closed Won", 9), deal("Proposal", "Closed Won", 1)
    decided = first_reached([later, earlier], [])
    assert [reasons(m)[GA4] for m in decided] == [STAGE_ALREADY_REACHED, None]
