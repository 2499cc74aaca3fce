"""Channel lookup: batched Data API reports by lead id, stored in the ledger's lead_channels."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from connector.analytics import GA4Data, leads_to_look_up, lookup_channels
from connector.errors import ConfigError
from connector.ledger import Ledger
from connector_sandbox.ga4 import GA4Emulator
from connector_sandbox.ga4_data import GA4DataEmulator, WebLeadHit
from tests.analytics.conftest import NOW, change, settings_for


def test_lookup_batches_lead_ids_and_fills_lead_channels(
    data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    leads = [f"00Q{i:05d}" for i in range(230)]
    with_hit = leads[:200]  # the site never tagged the last 30
    data_emulator.seed_web_hits(
        WebLeadHit(lead, NOW - timedelta(days=i % 20), "Paid Search", "google", "cpc", f"c{i}")
        for i, lead in enumerate(with_hit)
    )
    found = lookup_channels(client, leads, ledger=ledger, chunk=100)
    assert data_emulator.requests == math.ceil(len(leads) / 100) == 3
    assert set(found) == set(with_hit)
    stored = ledger.channels.get()
    assert stored == found
    assert stored["00Q00007"].campaign == "c7" and stored["00Q00007"].medium == "cpc"
    assert ledger.channels.get(["00Q00001", "00Q00229"]).keys() == {"00Q00001"}


def test_the_first_hit_wins_ids_differing_by_case_stay_apart_and_mp_events_are_ignored(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, client: GA4Data
) -> None:
    data_emulator.seed_web_hits(
        [
            WebLeadHit("00Qab", NOW, "Direct", "(direct)", "(none)", "(not set)"),
            WebLeadHit("00Qab", NOW - timedelta(days=3), "Paid Search", "google", "cpc", "brand"),
            WebLeadHit("00QAB", NOW, "Email", "newsletter", "email", "nov"),
            WebLeadHit("00Qother", NOW, event_name="sign_up"),  # not a lead hit
        ]
    )
    found = lookup_channels(client, ["00Qab", "00QAB", "00Qother"])
    assert {k: v.channel_group for k, v in found.items()} == {
        "00Qab": "Paid Search",
        "00QAB": "Email",
    }
    assert data_emulator.requests == 1


def test_leads_to_look_up_skips_leads_with_a_stored_channel(
    data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    changes = [change(lead, "generate_lead", 1) for lead in ("00QA", "00QB", "00QC")]
    ledger.changes.record(ledger.runs.start(), changes, "test", NOW)
    data_emulator.seed_web_hits([WebLeadHit("00QA", NOW)])
    lookup_channels(client, leads_to_look_up(ledger), ledger=ledger)
    assert leads_to_look_up(ledger) == ["00QB", "00QC"]
    assert leads_to_look_up(ledger, refresh=True) == ["00QA", "00QB", "00QC"]
    assert lookup_channels(client, []) == {}


def test_an_unregistered_custom_dimension_is_a_configuration_error(mp: GA4Emulator) -> None:
    with GA4DataEmulator(mp, property_id="42", custom_dimensions=()) as bare:
        client = GA4Data(settings_for(mp, bare, property_id="42"))
        with client, pytest.raises(ConfigError, match="customEvent:lead_id is not a valid"):
            lookup_channels(client, ["00QA"])


def test_a_missing_property_id_names_the_setting(
    mp: GA4Emulator, data_emulator: GA4DataEmulator
) -> None:
    with pytest.raises(ConfigError, match="CONNECTOR_GA4__PROPERTY_ID"):
        GA4Data(settings_for(mp, data_emulator, property_id=""))
