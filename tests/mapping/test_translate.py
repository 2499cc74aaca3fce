from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.core import GA4, GOOGLE_ADS, CrmChange
from connector.mapping.rules import Mapping, load_mapping
from connector.mapping.translate import translate

MAPPING = load_mapping(Path(__file__).resolve().parents[2] / "mappings" / "salesforce.yaml")
WHEN = datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)


def change(status: str = "MQL", **lead: Any) -> CrmChange:
    fields: dict[str, Any] = {
        "email": "Jane.Doe@Example.com",
        "gclid": "Cj0KCQiA-abcdEFGH_1234567890",
        "ga_client_id": "123.456",
        "consent_ad_user_data": "Granted",
        "currency": "EUR",
    }
    fields.update(lead)
    return CrmChange("017000000000001", "00Q000000000001", "Open", status, WHEN, WHEN, fields)


def targets(mapped: Any) -> dict[str, Any]:
    return {t.destination: t for t in mapped.targets}


def test_known_stage_maps_to_both_destinations_with_value() -> None:
    mapped = translate(change(), MAPPING, "DE")
    assert mapped.change.stage == "mql"
    t = targets(mapped)
    assert t[GOOGLE_ADS].name == "700000001" and t[GOOGLE_ADS].value == 50.0
    assert t[GA4].name == "qualify_lead" and t[GA4].currency == "EUR"
    assert not any(x.skip_reason for x in mapped.targets)


def test_no_clear_text_pii_survives_translation() -> None:
    mapped = translate(change(phone="0621 533 999 82"), MAPPING, "DE")
    stored = repr(mapped.change)
    assert "Jane" not in stored and "Example.com" not in stored and "0621" not in stored
    assert len(mapped.change.attributes["email_sha256"]) == 64


def test_unknown_stage_is_kept_with_a_reason_and_sent_nowhere() -> None:
    mapped = translate(change("Nurture"), MAPPING, "DE")
    assert mapped.change.stage == "unmapped"
    assert mapped.change.problems["stage"] == "unknown_stage"
    assert mapped.targets == []


def test_unknown_currency_blocks_the_valued_targets() -> None:
    t = targets(translate(change(currency="XYZ"), MAPPING, "DE"))
    assert t[GOOGLE_ADS].skip_reason == "unknown_currency"


def test_denied_consent_keeps_the_lead_out_of_google_ads() -> None:
    t = targets(translate(change(consent_ad_user_data="Denied"), MAPPING, "DE"))
    assert t[GOOGLE_ADS].skip_reason == "no_consent"
    assert t[GA4].skip_reason is None


def test_malformed_gclid_without_other_identifier_has_its_reason() -> None:
    mapped = translate(change(gclid="bad gclid!", email=None), MAPPING, "DE")
    assert mapped.change.problems["gclid"] == "malformed_click_id"
    assert targets(mapped)[GOOGLE_ADS].skip_reason == "malformed_click_id"


def test_missing_ga_client_id_skips_ga4() -> None:
    assert targets(translate(change(ga_client_id=None), MAPPING, "DE"))[GA4].skip_reason == (
        "no_ga_client_id"
    )


def test_a_single_currency_org_values_in_the_mappings_default_currency() -> None:
    # No CurrencyIsoCode field in single-currency orgs: the mapping's default_currency applies.
    t = targets(translate(change(currency=None), MAPPING, "DE"))
    assert t[GOOGLE_ADS].currency == MAPPING.default_currency == "EUR"
    assert t[GOOGLE_ADS].skip_reason is None


def won(old: str, new: str, **extra: Any) -> CrmChange:
    base = change(new, Amount=1200.0)
    return CrmChange(
        "017000000000009", base.lead_id, old, new, WHEN, WHEN, base.lead,
        opportunity_id="006000000000001", **extra,
    )  # fmt: skip


def test_a_won_deal_reopened_or_lost_retracts_its_google_ads_conversion() -> None:
    for stage in ("Negotiation", "Closed Lost"):
        mapped = translate(won("Closed Won", stage), MAPPING, "DE")
        retraction = targets(mapped)[GOOGLE_ADS]
        assert retraction.name == "700000004" and retraction.value is None
        assert mapped.change.retraction
        assert mapped.change.transaction_id == "00Q000000000001:won:006000000000001"


def test_winning_or_restating_is_no_retraction() -> None:
    assert not translate(won("Negotiation", "Closed Won"), MAPPING, "DE").change.retraction
    restated = translate(won("Closed Won", "Closed Won", restatement=True), MAPPING, "DE")
    assert restated.change.restatement and not restated.change.retraction


def test_a_deleted_lead_is_recorded_and_sent_nowhere() -> None:
    base = change()
    deleted = CrmChange(
        base.record_id, base.lead_id, "Open", "MQL", WHEN, WHEN, base.lead, deleted=True
    )
    mapped = translate(deleted, MAPPING, "DE")
    assert mapped.change.problems["lead"] == "deleted_in_crm"
    assert {t.skip_reason for t in mapped.targets} == {"deleted_in_crm"}


@pytest.mark.parametrize(
    ("role", "value"),
    [
        ("utm_source", "jane.doe@example.com"),
        ("utm_campaign", "spring from jane@example.org"),
        ("lead_source", "+49 621 53399982"),
        ("lead_source", "0621 533 999 82"),
        ("ga_client_id", "jane@example.com"),
        ("gclid", "062153399982"),
    ],
)
def test_an_email_or_phone_outside_its_role_is_redacted_and_counted(role: str, value: str) -> None:
    mapped = translate(change(**{role: value}), MAPPING, "DE")
    assert mapped.change.problems[role] == "pii_redacted"
    assert mapped.change.attributes[role] is None
    assert value not in repr(mapped)


@pytest.mark.parametrize(
    ("role", "value"),
    [("utm_source", "google"), ("utm_campaign", "2026-12-01"), ("ga_client_id", "123.456")],
)
def test_ordinary_values_are_kept(role: str, value: str) -> None:
    mapped = translate(change(**{role: value}), MAPPING, "DE")
    assert mapped.change.attributes[role] == value
    assert role not in mapped.change.problems


def test_a_consent_value_the_mapping_does_not_list_is_recorded() -> None:
    mapped = translate(change(consent_ad_user_data="Opted in"), MAPPING, "DE")
    assert mapped.change.problems["consent_ad_user_data"] == "unknown_consent_value"
    assert mapped.change.attributes["consent_ad_user_data"] is None
    assert "consent_ad_user_data" not in translate(change(), MAPPING, "DE").change.problems


@pytest.mark.parametrize(("value", "granted"), [(True, True), (False, False), ("DENIED", False)])
def test_a_checkbox_consent_or_another_case_reads_as_the_lists_say(
    value: object, granted: bool
) -> None:
    # Salesforce sends a checkbox field as a JSON boolean: unticked is denied, not unknown.
    mapped = translate(change(consent_ad_user_data=value), MAPPING, "DE")
    assert mapped.change.attributes["consent_ad_user_data"] is granted
    assert "consent_ad_user_data" not in mapped.change.problems
    skip = targets(mapped)[GOOGLE_ADS].skip_reason
    assert skip == (None if granted else "no_consent")


def test_a_restated_amount_goes_to_google_ads_only() -> None:
    crm = CrmChange(
        "h", "00Q1", "Closed Won", "Closed Won", WHEN, WHEN,
        {"gclid": "Cj0KCQiA-abcdEFGH_1234567890", "ga_client_id": "1.2", "Amount": 9},
        opportunity_id="0061", restatement=True,
    )  # fmt: skip
    mapped = translate(crm, MAPPING, "DE")
    assert mapped.change.restatement and [t.destination for t in mapped.targets] == [GOOGLE_ADS]


def test_a_cookie_form_ga_client_id_is_kept_in_the_recommended_form() -> None:
    mapped = translate(change(ga_client_id="GA1.1.123456789.1700000000"), MAPPING, "DE")
    assert mapped.change.attributes["ga_client_id"] == "123456789.1700000000"
    assert targets(mapped)[GA4].skip_reason is None


def test_a_ga_client_id_that_is_none_is_a_reason_and_never_kept() -> None:
    mapped = translate(change(ga_client_id="lead from the fair"), MAPPING, "DE")
    assert mapped.change.attributes["ga_client_id"] is None
    assert mapped.change.problems["ga_client_id"] == "invalid_ga_client_id"
    assert targets(mapped)[GA4].skip_reason == "invalid_ga_client_id"
    assert "fair" not in repr(mapped)
    # An email there is personal data first: redacted, and GA4 skipped for the same reason.
    mapped = translate(change(ga_client_id="Jane.Doe@Example.com"), MAPPING, "DE")
    assert mapped.change.problems["ga_client_id"] == "pii_redacted"
    assert targets(mapped)[GA4].skip_reason == "pii_redacted"
    assert "Jane" not in repr(mapped)


def deal(stage: str, **opportunity: Any) -> CrmChange:
    """An opportunity change as the source reads it: the deal's fields beside the lead's."""
    values = {"Amount": 1200.0, "currency": "GBP", "close_date": "2026-11-18"} | opportunity
    base = change(stage, **values)
    return CrmChange(
        "017000000000009", base.lead_id, "Proposal", stage, WHEN, WHEN, base.lead,
        opportunity_id="006000000000001",
    )  # fmt: skip


@pytest.mark.parametrize("stage", ["Negotiation", "Closed Won", "Closed Lost"])
def test_every_opportunity_change_records_the_deal_for_the_report(stage: str) -> None:
    attrs = translate(deal(stage), MAPPING, "DE").change.attributes
    assert (attrs["deal_amount"], attrs["deal_currency"], attrs["close_date"]) == (
        1200.0,
        "GBP",
        "2026-11-18",
    )


def test_the_deal_record_changes_nothing_sent() -> None:
    won = translate(deal("Closed Won"), MAPPING, "DE")
    assert {(t.destination, t.value, t.currency) for t in won.targets} == {
        (GA4, 1200.0, "GBP"),
        (GOOGLE_ADS, 1200.0, "GBP"),
    }
    assert (won.change.attributes["amount"], won.change.attributes["currency"]) == (1200.0, "GBP")
    # An open deal is sent nowhere, and a lead's own change records no deal.
    assert translate(deal("Negotiation"), MAPPING, "DE").targets == []
    assert "deal_amount" not in translate(change(), MAPPING, "DE").change.attributes


def test_a_deal_without_a_usable_amount_or_close_date_records_none() -> None:
    attrs = translate(deal("Negotiation", Amount="n/a", close_date="soon"), MAPPING, "DE")
    assert (attrs.change.attributes["deal_amount"], attrs.change.attributes["close_date"]) == (
        None,
        None,
    )
    # Single-currency org: no currency field, the mapping's default is the deal's.
    single = translate(deal("Negotiation", currency=None, Amount=-5), MAPPING, "DE")
    assert single.change.attributes["deal_currency"] == "EUR"
    assert single.change.attributes["deal_amount"] is None


def test_a_value_rules_currency_is_what_is_sent_not_what_the_deal_is_in() -> None:
    raw = MAPPING.model_dump()
    raw["opportunity"]["stages"]["Closed Won"]["google_ads"]["value"]["currency"] = "USD"
    usd = Mapping.model_validate(raw)
    won = translate(deal("Closed Won"), usd, "DE")
    assert targets(won)[GOOGLE_ADS].currency == "USD"
    assert won.change.attributes["deal_currency"] == "GBP"


def test_a_ga4_event_too_old_for_ga4_is_skipped_when_recorded() -> None:
    fresh = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 3 days and 3 minutes after WHEN
    old = targets(translate(change(), MAPPING, "DE", now=fresh))
    assert old[GA4].skip_reason == "too_old_for_ga4"
    assert old[GOOGLE_ADS].skip_reason is None  # Google Ads takes 90 days
    young = targets(translate(change(), MAPPING, "DE", now=fresh.replace(hour=13)))
    assert young[GA4].skip_reason is None  # 71 hours: inside GA4's window (its margin too)
    unjudged = targets(translate(change(), MAPPING, "DE"))  # no `now`: the delivery judges
    assert unjudged[GA4].skip_reason is None


def test_a_mapping_that_sends_old_events_now_keeps_them_pending() -> None:
    mapping = MAPPING.model_copy(update={"ga4_too_old": "send_now"})
    later = datetime(2026, 12, 20, tzinfo=UTC)
    assert targets(translate(change(), mapping, "DE", now=later))[GA4].skip_reason is None
