"""The unattributed leads and their overlapping reasons: hand-computed figures."""

from __future__ import annotations

from connector.report.load import Lead, LedgerData
from connector.report.metrics import build_report
from connector.report.unattributed import unattributed_leads
from tests.report.cases import MARCH, PAID, lead

NOTHING: dict[str, str] = {}
WEB = {"lead_source": "Web"}  # a LeadSource, too generic to name a channel
ODD_UTM = {"utm_source": "podcast", "utm_medium": "audio-spot"}  # no channel rule fits
GA = {"ga_client_id": "1.2"}  # a GA client id GA4 found nothing for


def leads() -> list[Lead]:
    return [
        lead("P", "won", attrs=PAID, amount=9_000),
        lead("N1", "mql", attrs=NOTHING),
        lead("N2", attrs=NOTHING),
        lead("W", "won", attrs=WEB, amount=4_000),
        lead("U", "sql", attrs=ODD_UTM | WEB),
        lead("G", attrs=GA),
    ]


def test_reasons_are_overlapping_sets_with_the_leads_that_have_no_signal_at_all() -> None:
    sets = build_report(LedgerData(MARCH, leads()), currency="EUR").unattributed
    assert sets.leads == 5  # all but P
    # Every unattributed lead has one reason per signal: they overlap, they do not add up.
    assert sets.by_reason == {
        "no_click_id": 5,
        "no_ga_client_id": 4,
        "no_utm": 4,
        "no_lead_source": 3,
        "lead_source_uninformative": 2,
        "utm_unclassified": 1,
        "no_ga4_match": 1,
    }
    assert sets.combinations[("no_click_id", "no_utm", "no_ga_client_id", "no_lead_source")] == 2
    assert sum(sets.combinations.values()) == 5  # each lead in exactly one combination
    assert (sets.without_any_signal, sets.with_some_signal) == (2, 3)  # N1, N2


def test_the_list_puts_the_furthest_leads_first_with_their_won_value() -> None:
    report = build_report(LedgerData(MARCH, leads()), currency="EUR")
    assert report.valuation is not None
    found = unattributed_leads(report.leads, report.attributions, report.valuation)
    assert [(u.lead_id, u.furthest_stage, u.won_value) for u in found] == [
        ("W", "won", 4_000),
        ("U", "sql", None),
        ("N1", "mql", None),
        ("G", "lead", None),
        ("N2", "lead", None),
    ]
    assert found[0].reasons == (
        "no_click_id",
        "no_utm",
        "no_ga_client_id",
        "lead_source_uninformative",
    )
