"""The legacy Google Ads API path: the real GoogleAdsClient over TLS against the emulator."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import SecretStr

from connector.destinations.conversion_actions import gaql_string
from connector.destinations.google_ads_legacy import (
    NOT_ATTRIBUTABLE,
    GoogleAdsApiDestination,
    conversion_date_time,
)
from connector.ledger.store import DELIVERED, PENDING, REJECTED, Delivery, Outcome
from connector.mapping.translate import StageChange
from connector.sandbox.google_ads_api import (
    DEVELOPER_TOKEN,
    EmulatedAction,
    EmulatedCustomer,
    GoogleAdsApiEmulator,
    resource_exhausted_fault,
    unavailable_fault,
)
from connector.sandbox.tls import sandbox_ca
from connector.settings import GoogleAdsSettings

CUSTOMER = "1234567890"
WON = "700000003"
ODD_NAME = "Won 'big' deal \\ \"Q4\""
EMAIL_HASH = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PHONE_HASH = hashlib.sha256(b"+4962153399982").hexdigest()
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def _shared() -> Iterator[GoogleAdsApiEmulator]:
    actions = [EmulatedAction(int(WON), "Won deal"), EmulatedAction(700000009, ODD_NAME)]
    with GoogleAdsApiEmulator([EmulatedCustomer(CUSTOMER)], actions) as emulator:
        yield emulator


@pytest.fixture
def emulator(_shared: GoogleAdsApiEmulator) -> GoogleAdsApiEmulator:
    _shared.reset()
    return _shared


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def destination(
    emulator: GoogleAdsApiEmulator, sleeps: list[float]
) -> Iterator[GoogleAdsApiDestination]:
    settings = GoogleAdsSettings(
        operating_account_id=CUSTOMER,
        api_endpoint=emulator.endpoint,
        api_ca_bundle=sandbox_ca().bundle_path,
        developer_token=SecretStr(DEVELOPER_TOKEN),
        anonymous_credentials=True,
        upload_api="ads_api",
    )
    dest = GoogleAdsApiDestination(settings, sleep=sleeps.append)
    yield dest
    dest.close()


def won(
    n: int,
    *,
    target: str = WON,
    value: float | None = 1000.0,
    at: datetime | None = None,
    **attributes: Any,
) -> Delivery:
    changed_at = at or NOW - timedelta(days=2)
    attrs: dict[str, Any] = {
        "gclid": f"Cj0KCQiA-lead{n:04d}-abcdEFGH",
        "email_sha256": EMAIL_HASH,
        "phone_sha256": PHONE_HASH,
        "consent_ad_user_data": True,
        "consent_ad_personalization": True,
    }
    attrs.update(attributes)
    change = StageChange(
        lead_id=f"00Q{n:012d}",
        crm_status="Closed - Won",
        stage="won",
        changed_at=changed_at,
        source_record_id=f"017{n:012d}",
        lead_created_at=changed_at - timedelta(days=10),
        attributes={k: v for k, v in attrs.items() if v is not None},
    )
    return Delivery(n, "google_ads", target, value, "EUR" if value is not None else None, 0, change)


def by_id(outcomes: list[Outcome]) -> dict[int, Outcome]:
    return {o.delivery_id: o for o in outcomes}


def test_every_eligible_won_deal_arrives_once_with_value_currency_and_time(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(n) for n in range(1, 6)]
    outcomes = destination.deliver(batch)
    assert {o.status for o in outcomes} == {DELIVERED} and len(outcomes) == 5
    assert all(o.request_id and o.request_id.startswith("job:") for o in outcomes)
    stored = {c.order_id: c for c in emulator.conversions}
    assert sorted(stored) == sorted(d.change.transaction_id for d in batch)
    first = stored[batch[0].change.transaction_id]
    assert (first.value, first.currency) == (1000.0, "EUR")
    assert first.conversion_date_time == (NOW - timedelta(days=2)).strftime(
        "%Y-%m-%d %H:%M:%S+00:00"
    )
    assert first.conversion_action == f"customers/{CUSTOMER}/conversionActions/{WON}"
    assert first.hashed_identifiers == [EMAIL_HASH, PHONE_HASH]
    (request,) = emulator.upload_requests
    assert request.partial_failure and not request.validate_only
    sent = request.conversions[0]
    assert sent.consent.ad_user_data.name == "GRANTED"
    assert not sent.consent.ad_personalization  # not accepted by this API


def test_a_resend_counts_as_delivered_not_as_a_second_conversion(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(1), won(2)]
    destination.deliver(batch)
    again = destination.deliver(batch)
    assert [o.status for o in again] == [DELIVERED, DELIVERED]
    assert len(emulator.conversions) == 2


def test_one_bad_row_does_not_hold_back_the_others(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(n) for n in range(1, 6)]
    batch[2] = won(3, target="700000404")  # an id the account does not have
    outcomes = by_id(destination.deliver(batch))
    assert outcomes[3].status == REJECTED and outcomes[3].reason == "NO_CONVERSION_ACTION_FOUND"
    assert "conversion_upload_error.NO_CONVERSION_ACTION_FOUND" in (outcomes[3].error or "")
    assert [outcomes[n].status for n in (1, 2, 4, 5)] == [DELIVERED] * 4
    assert len(emulator.conversions) == 4


def test_click_not_found_is_not_attributable_and_too_recent_stays_pending(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(1), won(2), won(3)]
    emulator.mark_clicks(
        not_found=[batch[0].change.attributes["gclid"]],
        too_recent=[batch[1].change.attributes["gclid"]],
    )
    outcomes = by_id(destination.deliver(batch))
    assert (outcomes[1].status, outcomes[1].reason) == (REJECTED, NOT_ATTRIBUTABLE)
    assert outcomes[2].status == PENDING and "TOO_RECENT_EVENT" in (outcomes[2].error or "")
    assert outcomes[3].status == DELIVERED


def test_local_checks_set_rows_aside_before_sending(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    outcomes = destination.deliver([won(1, at=NOW - timedelta(days=120)), won(2)])
    assert by_id(outcomes)[1].reason == "expired_event"
    (request,) = emulator.upload_requests
    assert len(request.conversions) == 1


def test_identifier_only_rows_send_hashes_and_never_clear_text(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    outcomes = destination.deliver(
        [won(1, gclid=None), won(2, gclid=None, gbraid="gbraid-0123456789")]
    )
    assert [o.status for o in outcomes] == [DELIVERED, DELIVERED]
    stored = {c.order_id: c for c in emulator.conversions}
    assert stored["00Q000000000001:won"].click == ""
    assert stored["00Q000000000002:won"].click == "gbraid:gbraid-0123456789"
    for body in emulator.received_bytes:
        assert b"jane.doe" not in body and b"example.com" not in body and b"+49" not in body


def test_conversion_action_names_resolve_once_with_escaped_quotes(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    batch = [won(1, target=ODD_NAME), won(2, target="No such action"), won(3)]
    first = by_id(destination.deliver(batch))
    second = by_id(destination.deliver([won(4, target=ODD_NAME)]))
    assert first[1].status == DELIVERED and second[4].status == DELIVERED
    assert (first[2].status, first[2].reason) == (REJECTED, "unknown_conversion_action")
    (query,) = emulator.queries  # one lookup per run, then the cache
    assert gaql_string(ODD_NAME) in query
    assert {c.conversion_action for c in emulator.conversions} == {
        f"customers/{CUSTOMER}/conversionActions/700000009",
        f"customers/{CUSTOMER}/conversionActions/{WON}",
    }


def test_gaql_string_escapes_backslashes_then_quotes() -> None:
    assert gaql_string('It\'s \\ "x"') == "'It\\'s \\\\ \"x\"'"
    with pytest.raises(ValueError, match="line breaks"):
        gaql_string("a\nb")


def test_transient_failures_are_retried_with_googles_delay(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination, sleeps: list[float]
) -> None:
    emulator.push_fault(resource_exhausted_fault(retry_delay_seconds=7))
    emulator.push_fault(unavailable_fault())
    outcomes = destination.deliver([won(1)])
    assert [o.status for o in outcomes] == [DELIVERED]
    assert emulator.calls == ["UploadClickConversions"] * 3
    assert len(sleeps) == 2 and sleeps[0] >= 7


def test_request_level_refusal_keeps_the_batch_pending(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    emulator.allowlisted = False
    try:
        outcomes = destination.deliver([won(1), won(2)])
    finally:
        emulator.allowlisted = True
    assert [o.status for o in outcomes] == [PENDING, PENDING]
    assert "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE" in (outcomes[0].error or "")
    assert emulator.conversions == []


def test_validate_only_and_payloads_store_nothing(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    outcomes = destination.deliver([won(1)], validate_only=True)
    assert [o.status for o in outcomes] == [DELIVERED]
    (payload,) = destination.payloads([won(1), won(2)])
    assert payload["partialFailure"] and len(payload["conversions"]) == 2
    assert payload["conversions"][0]["orderId"] == "00Q000000000001:won"
    assert emulator.conversions == [] and len(emulator.upload_requests) == 1


def test_a_restated_amount_is_an_adjustment_not_a_second_conversion(
    emulator: GoogleAdsApiEmulator, destination: GoogleAdsApiDestination
) -> None:
    destination.deliver([won(1), won(2)])
    restated = destination.adjust([won(1, value=1500.0)])
    retracted = destination.adjust([won(2)], retract=True)
    unknown = destination.adjust([won(3)], retract=True)
    assert [o.status for o in restated + retracted] == [DELIVERED, DELIVERED]
    assert unknown[0].status == REJECTED and unknown[0].reason == "CONVERSION_NOT_FOUND"
    stored = {c.order_id: c for c in emulator.conversions}
    assert len(stored) == 2
    assert stored["00Q000000000001:won"].value == 1500.0
    assert stored["00Q000000000002:won"].retracted


def test_conversion_date_time_has_an_explicit_utc_offset() -> None:
    berlin = datetime(2026, 11, 20, 15, 3, 11, tzinfo=timezone(timedelta(hours=1)))
    assert conversion_date_time(berlin) == "2026-11-20 14:03:11+00:00"
    assert conversion_date_time(datetime(2026, 11, 20, 14, 3, 11)) == "2026-11-20 14:03:11+00:00"
