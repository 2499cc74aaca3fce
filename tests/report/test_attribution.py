"""Channel attribution: precedence decides conflicts; no signal means unattributed, with why."""

from __future__ import annotations

from typing import Any

import pytest

from connector.mapping.rules import Mapping
from connector.report.attribution import (
    DEFAULT_PRECEDENCE,
    UNATTRIBUTED,
    Attribution,
    attribute,
    lead_source_channel,
    utm_channel,
)

GCLID = "Cj0KCQiA-abcdEFGH_1234567890"
CONFLICTING: dict[str, Any] = {
    "gclid": GCLID,
    "utm_source": "newsletter",
    "utm_medium": "email",
    "ga_client_id": "123.456",
    "lead_source": "Trade Show",
}
GA4_LOOKUP = {"L1": "Organic Social"}


@pytest.mark.parametrize(
    ("precedence", "channel", "signal"),
    [
        (DEFAULT_PRECEDENCE, "paid search", "click_id"),
        (["utm", "click_id"], "email", "utm"),
        (["ga4", "utm"], "organic social", "ga4"),
        (["lead_source", "click_id", "utm", "ga4"], "trade show", "lead_source"),
    ],
)
def test_conflicting_signals_follow_the_precedence(
    precedence: list[str], channel: str, signal: str
) -> None:
    found = attribute("L1", CONFLICTING, ga4_channels=GA4_LOOKUP, precedence=precedence)
    assert found == Attribution(channel, signal)


def test_each_weaker_signal_is_used_when_the_stronger_ones_are_missing() -> None:
    ga4_only = {"ga_client_id": "123.456", "lead_source": "Trade Show"}
    assert attribute("L1", ga4_only, ga4_channels=GA4_LOOKUP).signal == "ga4"
    assert attribute("L2", ga4_only, ga4_channels=GA4_LOOKUP).channel == "trade show"
    assert attribute("L3", {"gbraid": "0AAAAAD-x"}).channel == "paid search (iOS app)"
    assert attribute("L4", {"wbraid": "0AAAAAD-x"}).channel == "paid search (iOS app)"


def test_no_signal_is_unattributed_with_one_reason_per_signal_tried() -> None:
    found = attribute("L1", {})
    assert found.channel == UNATTRIBUTED and not found.attributed
    assert found.reasons == ("no_click_id", "no_utm", "no_ga_client_id", "no_lead_source")


def test_unusable_signals_say_why() -> None:
    attrs = {
        "utm_source": "partner-portal",
        "utm_medium": "widget",
        "ga_client_id": "123.456",
        "lead_source": "Web",
    }
    found = attribute("L1", attrs, problems={"gclid": "invalid_characters"})
    assert found.reasons == (
        "invalid_click_id",
        "utm_unclassified",
        "no_ga4_match",
        "lead_source_uninformative",
    )
    unassigned = attribute("L1", {"ga_client_id": "1.2"}, ga4_channels={"L1": "Unassigned"})
    assert "ga4_unassigned" in unassigned.reasons


def test_precedence_limits_the_signals_tried() -> None:
    found = attribute("L1", {"lead_source": "Email"}, precedence=["click_id", "utm"])
    assert found.reasons == ("no_click_id", "no_utm")


def test_unknown_signal_names_are_refused() -> None:
    with pytest.raises(ValueError, match="gclid"):
        attribute("L1", {}, precedence=["gclid"])


def test_the_mapping_default_precedence_is_the_documented_one() -> None:
    mapping = Mapping.model_validate({"version": 1, "stages": {}})
    assert tuple(mapping.attribution_precedence) == DEFAULT_PRECEDENCE


@pytest.mark.parametrize(
    ("source", "medium", "channel"),
    [
        ("google", "cpc", "paid search"),
        ("bing.com", "ppc", "paid search"),
        ("linkedin", "paid_social", "paid social"),
        ("facebook", "cpm", "paid social"),  # GA4 checks paid social before display
        ("criteo", "display", "display"),
        ("newsletter-vendor", "cpc", "paid other"),
        ("l.facebook.com", "referral", "organic social"),
        ("anything", "social", "organic social"),
        ("google", "organic", "organic search"),
        ("duckduckgo.com", "referral", "organic search"),
        ("partner-site.example", "referral", "referral"),
        ("newsletter", "email", "email"),
        ("e-mail", None, "email"),
        ("awin", "affiliate", "affiliates"),
        ("(direct)", "(none)", "direct"),
        ("  Google ", " CPC", "paid search"),
        ("partner-portal", "widget", None),
    ],
)
def test_utm_rules_follow_ga4_default_channel_grouping(
    source: str, medium: str | None, channel: str | None
) -> None:
    assert utm_channel(source, medium) == channel


@pytest.mark.parametrize(
    ("value", "channel"),
    [
        ("Paid Search", "paid search"),
        ("Partner Referral", "referral"),
        ("Trade Show", "trade show"),
        ("Purchased  List", "purchased list"),
        ("Web", None),
        ("--None--", None),
    ],
)
def test_lead_source_maps_to_channels(value: str, channel: str | None) -> None:
    assert lead_source_channel(value) == channel
