"""The Google Ads API emulator driven by the real GoogleAdsClient over gRPC + TLS (no mocks)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.v26.common.types.offline_user_data import UserIdentifier
from google.ads.googleads.v26.errors.types.errors import GoogleAdsFailure
from google.ads.googleads.v26.services.types.conversion_adjustment_upload_service import (
    ConversionAdjustment,
    RestatementValue,
    UploadConversionAdjustmentsRequest,
)
from google.ads.googleads.v26.services.types.conversion_upload_service import (
    ClickConversion,
    UploadClickConversionsRequest,
)
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials

from connector_sandbox.google_ads_api import (
    DEVELOPER_TOKEN,
    EmulatedAction,
    EmulatedCustomer,
    GoogleAdsApiEmulator,
    internal_fault,
    resource_exhausted_fault,
    unavailable_fault,
)

CUSTOMER = "1234567890"
ACTIONS = f"customers/{CUSTOMER}/conversionActions/"
ACTION = f"{ACTIONS}700000001"
BY = "SELECT conversion_action.id FROM conversion_action WHERE"
TRACKING = "conversion_tracking_setting"
EMAIL_HASH = hashlib.sha256(b"jane.doe@example.com").hexdigest()
WHEN = "2026-11-20 14:03:11+01:00"


@pytest.fixture(scope="module")
def _shared() -> Iterator[GoogleAdsApiEmulator]:
    actions = [
        EmulatedAction(700000001, "Won deal"),
        EmulatedAction(700000002, 'It\'s "won" \\ Q4'),
        EmulatedAction(700000003, "Website purchase", type="WEBPAGE"),
        EmulatedAction(700000004, "Old action", status="REMOVED"),
    ]
    with GoogleAdsApiEmulator([EmulatedCustomer(CUSTOMER)], actions) as emulator:
        yield emulator


@pytest.fixture
def emulator(_shared: GoogleAdsApiEmulator) -> GoogleAdsApiEmulator:
    _shared.reset()
    return _shared


def client(emulator: GoogleAdsApiEmulator, token: str | None = None) -> Any:
    return GoogleAdsClient(
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        developer_token=token,
        endpoint=emulator.endpoint,
        version="v26",
        use_proto_plus=True,
    )


def upload(emulator: GoogleAdsApiEmulator, *rows: Any, partial_failure: bool = True) -> Any:
    service = client(emulator).get_service("ConversionUploadService")
    request = UploadClickConversionsRequest(
        customer_id=CUSTOMER, conversions=list(rows), partial_failure=partial_failure
    )
    return service.upload_click_conversions(request=request)


def conversion(order_id: str, **fields: Any) -> Any:
    values: dict[str, Any] = {
        "gclid": f"Cj0KCQiA-{order_id}-1234567890",
        "conversion_action": ACTION,
        "conversion_date_time": WHEN,
        "order_id": order_id,
        "conversion_value": 1000.0,
        "currency_code": "EUR",
    }
    values.update(fields)
    return ClickConversion(**{k: v for k, v in values.items() if v is not None})


def row_errors(response: Any) -> dict[int, str]:
    found = {}
    for detail in response.partial_failure_error.details:
        for error in GoogleAdsFailure.deserialize(detail.value).errors:
            kind = type(error.error_code).pb(error.error_code).WhichOneof("error_code")
            found[error.location.field_path_elements[0].index] = getattr(
                error.error_code, kind
            ).name
    return found


def ads_codes(exc: GoogleAdsException) -> list[str]:
    codes = []
    for error in exc.failure.errors:
        kind = type(error.error_code).pb(error.error_code).WhichOneof("error_code")
        codes.append(getattr(error.error_code, kind).name)
    return codes


def search(emulator: GoogleAdsApiEmulator, query: str) -> list[Any]:
    service = client(emulator).get_service("GoogleAdsService")
    return list(service.search(customer_id=CUSTOMER, query=query))


# --------------------------------------------------------------------------- uploads


def test_bad_rows_fail_alone_and_come_back_empty(emulator: GoogleAdsApiEmulator) -> None:
    emulator.mark_clicks(not_found=["Cj0KCQiA-B-1234567890"])
    response = upload(
        emulator,
        conversion("A"),
        conversion("B"),
        conversion("C", conversion_date_time="2026-11-20 14:03:11"),  # no offset
        conversion("D", gbraid="gbraid-abcdefgh", wbraid="wbraid-abcdefgh", gclid=None),
        conversion("E"),
    )
    assert row_errors(response) == {
        1: "CLICK_NOT_FOUND",
        2: "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET",
        3: "GBRAID_WBRAID_BOTH_SET",
    }
    assert [bool(r.gclid) for r in response.results] == [True, False, False, False, True]
    assert sorted(c.order_id for c in emulator.conversions) == ["A", "E"]
    stored = next(c for c in emulator.conversions if c.order_id == "A")
    assert (stored.value, stored.currency, stored.conversion_date_time) == (1000.0, "EUR", WHEN)


def test_partial_failure_is_required(emulator: GoogleAdsApiEmulator) -> None:
    with pytest.raises(GoogleAdsException) as caught:
        upload(emulator, conversion("A"), partial_failure=False)
    assert ads_codes(caught.value) == ["PARTIAL_FAILURE_MODE_REQUIRED"]
    assert caught.value.request_id
    assert emulator.conversions == []


def test_more_than_2000_rows_is_rejected_whole(emulator: GoogleAdsApiEmulator) -> None:
    with pytest.raises(GoogleAdsException) as caught:
        upload(emulator, *[conversion(f"R{i}") for i in range(2001)])
    assert ads_codes(caught.value) == ["TOO_MANY_CONVERSIONS_IN_REQUEST"]


def test_a_resend_is_already_there_never_a_second_conversion(
    emulator: GoogleAdsApiEmulator,
) -> None:
    upload(emulator, conversion("A"), conversion("", gclid="Cj0KCQiA-noorder-12345"))
    again = upload(emulator, conversion("A"), conversion("", gclid="Cj0KCQiA-noorder-12345"))
    assert row_errors(again) == {0: "ORDER_ID_ALREADY_IN_USE", 1: "CLICK_CONVERSION_ALREADY_EXISTS"}
    same_request = upload(emulator, conversion("B"), conversion("B"))
    assert row_errors(same_request) == {1: "DUPLICATE_ORDER_ID"}
    assert len(emulator.conversions) == 3


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"conversion_action": f"{ACTIONS}9"}, "NO_CONVERSION_ACTION_FOUND"),
        ({"conversion_action": f"{ACTIONS}700000004"}, "NO_CONVERSION_ACTION_FOUND"),
        ({"conversion_action": f"{ACTIONS}700000003"}, "INVALID_CONVERSION_ACTION_TYPE"),
        ({"conversion_action": "customers/9/conversionActions/1"}, "NO_CONVERSION_ACTION_FOUND"),
        ({"gclid": "not a gclid!"}, "UNPARSEABLE_GCLID"),
        ({"conversion_value": -1.0}, "INVALID_VALUE"),
        ({"currency_code": "eur"}, "UNSUPPORTED"),
        ({"conversion_date_time": "2099-01-01 00:00:00+00:00"}, "LATER_THAN_MAXIMUM_DATE"),
    ],
)
def test_row_rules(emulator: GoogleAdsApiEmulator, fields: dict[str, Any], code: str) -> None:
    assert row_errors(upload(emulator, conversion("A", **fields))) == {0: code}


def test_user_identifiers_must_be_digests(emulator: GoogleAdsApiEmulator) -> None:
    clear = UserIdentifier(hashed_email="jane.doe@example.com")
    hashed = UserIdentifier(hashed_email=EMAIL_HASH)
    response = upload(
        emulator,
        conversion("A", gclid=None, user_identifiers=[clear]),
        conversion("B", gclid=None, user_identifiers=[hashed]),
        conversion("C", gclid=None),
    )
    assert row_errors(response) == {0: "INVALID_USER_IDENTIFIER", 2: "REQUIRED"}
    (stored,) = emulator.conversions
    assert stored.click == "" and stored.hashed_identifiers == [EMAIL_HASH]


def test_click_switches_and_known_click_times(emulator: GoogleAdsApiEmulator) -> None:
    now = datetime.now(UTC)

    def at(days: float) -> str:
        return (now - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S+00:00")

    emulator.mark_clicks(too_recent=["Cj0KCQiA-A-1234567890"])
    emulator.register_click("Cj0KCQiA-B-1234567890", now - timedelta(hours=1))
    emulator.register_click("Cj0KCQiA-C-1234567890", now - timedelta(days=2))
    emulator.register_click("Cj0KCQiA-D-1234567890", now - timedelta(days=100))
    emulator.register_click("Cj0KCQiA-E-1234567890", now - timedelta(days=5))
    rows = [
        conversion(x, conversion_date_time=at(d))
        for x, d in zip("ABCDE", [1, 0, 3, 1, 1], strict=True)
    ]
    assert row_errors(upload(emulator, *rows)) == {
        0: "TOO_RECENT_EVENT",
        1: "TOO_RECENT_EVENT",
        2: "CONVERSION_PRECEDES_EVENT",
        3: "EXPIRED_EVENT",
    }


def test_no_developer_token_is_needed_and_a_leftover_one_is_ignored(
    emulator: GoogleAdsApiEmulator,
) -> None:
    upload(emulator, conversion("A"))
    service = client(emulator, token=DEVELOPER_TOKEN).get_service("ConversionUploadService")
    request = UploadClickConversionsRequest(
        customer_id=CUSTOMER, conversions=[conversion("B")], partial_failure=True
    )
    service.upload_click_conversions(request=request)
    first, second = emulator.metadata
    assert "developer-token" not in first
    assert second["developer-token"] == DEVELOPER_TOKEN


def test_a_test_access_project_cannot_call_a_production_account(
    emulator: GoogleAdsApiEmulator,
) -> None:
    emulator.production_access = False
    try:
        with pytest.raises(GoogleAdsException) as caught:
            upload(emulator, conversion("A"))
        assert ads_codes(caught.value) == ["CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION"]
    finally:
        emulator.production_access = True


def test_request_level_errors(emulator: GoogleAdsApiEmulator) -> None:
    emulator.allowlisted = False
    try:
        with pytest.raises(GoogleAdsException) as caught:
            upload(emulator, conversion("A"))
        assert ads_codes(caught.value) == ["CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"]
    finally:
        emulator.allowlisted = True


def test_faults_reach_the_client_as_google_raises_them(emulator: GoogleAdsApiEmulator) -> None:
    emulator.push_fault(resource_exhausted_fault(retry_delay_seconds=7))
    emulator.push_fault(internal_fault())
    emulator.push_fault(unavailable_fault())
    for expected in (
        exceptions.ResourceExhausted,
        exceptions.InternalServerError,
        exceptions.ServiceUnavailable,
    ):
        with pytest.raises(expected):
            upload(emulator, conversion("A"))
    assert len(upload(emulator, conversion("A")).results) == 1
    assert emulator.calls == ["UploadClickConversions"] * 4


# --------------------------------------------------------------------------- adjustments


def adjust(emulator: GoogleAdsApiEmulator, *rows: Any) -> Any:
    service = client(emulator).get_service("ConversionAdjustmentUploadService")
    request = UploadConversionAdjustmentsRequest(
        customer_id=CUSTOMER, conversion_adjustments=list(rows), partial_failure=True
    )
    return service.upload_conversion_adjustments(request=request)


def adjustment(order_id: str, at: str, kind: str = "RESTATEMENT", value: float = 0.0) -> Any:
    row = ConversionAdjustment(
        conversion_action=ACTION, order_id=order_id, adjustment_date_time=at, adjustment_type=kind
    )
    if kind == "RESTATEMENT":
        row.restatement_value = RestatementValue(adjusted_value=value, currency_code="EUR")
    return row


def test_restatement_and_retraction_by_order_id(emulator: GoogleAdsApiEmulator) -> None:
    upload(emulator, conversion("A"), conversion("B"))
    first = adjust(
        emulator,
        adjustment("A", "2026-11-21 10:00:00+00:00", value=1500.0),
        adjustment("B", "2026-11-21 10:00:00+00:00", kind="RETRACTION"),
        adjustment("Z", "2026-11-21 10:00:00+00:00", value=1.0),
        adjustment("A", "2026-11-19 10:00:00+00:00", kind="RETRACTION"),
    )
    assert row_errors(first) == {2: "CONVERSION_NOT_FOUND", 3: "ADJUSTMENT_PRECEDES_CONVERSION"}
    older = adjust(emulator, adjustment("A", "2026-11-21 09:00:00+00:00", value=9.0))
    assert row_errors(older) == {0: "MORE_RECENT_RESTATEMENT_FOUND"}
    retracted_again = adjust(emulator, adjustment("B", "2026-11-22 10:00:00+00:00", "RETRACTION"))
    assert row_errors(retracted_again) == {0: "CONVERSION_ALREADY_RETRACTED"}
    by_order = {c.order_id: c for c in emulator.conversions}
    assert (by_order["A"].value, by_order["A"].adjustments) == (1500.0, ["RESTATEMENT"])
    assert by_order["B"].retracted
    assert len(by_order) == 2


def test_adjustment_rules_of_one_request_and_of_the_action(emulator: GoogleAdsApiEmulator) -> None:
    upload(emulator, conversion("A"), conversion("B"))
    emulator.mark_orders(too_recent=["B"])
    at = "2026-11-21 10:00:00+00:00"
    webpage = adjustment("A", at, "RETRACTION")
    webpage.conversion_action = f"{ACTIONS}700000003"
    removed = adjustment("A", at, "RETRACTION")
    removed.conversion_action = f"{ACTIONS}700000004"
    response = adjust(
        emulator,
        adjustment("A", at, value=2.0),
        adjustment("A", at, value=3.0),  # same order, same time, same request
        adjustment("B", at, value=4.0),
        webpage,
        removed,
    )
    assert row_errors(response) == {
        1: "DUPLICATE_ADJUSTMENT_IN_REQUEST",
        2: "TOO_RECENT_CONVERSION",
        3: "CONVERSION_NOT_FOUND",  # a WEBPAGE action may be adjusted: it has no such order
        4: "NO_CONVERSION_ACTION_FOUND",
    }
    stored = emulator.conversion("A")
    assert stored is not None and stored.value == 2.0
    assert [(h.kind, h.adjustment_date_time, h.value) for h in stored.history] == [
        ("RESTATEMENT", at, 2.0)
    ]
    (request,) = emulator.adjustment_requests
    assert len(request.conversion_adjustments) == 5


def test_known_clicks_only_answers_click_not_found_for_unregistered_clicks(
    emulator: GoogleAdsApiEmulator,
) -> None:
    emulator.known_clicks_only = True
    try:
        emulator.register_click("Cj0KCQiA-A-1234567890", datetime.now(UTC) - timedelta(days=20))
        response = upload(emulator, conversion("A"), conversion("B"))
    finally:
        emulator.known_clicks_only = False
    assert row_errors(response) == {1: "CLICK_NOT_FOUND"}


# --------------------------------------------------------------------------- search


def test_search_by_escaped_name_returns_only_selected_fields(
    emulator: GoogleAdsApiEmulator,
) -> None:
    rows = search(
        emulator,
        "SELECT conversion_action.id, conversion_action.type FROM conversion_action "
        "WHERE conversion_action.name = 'It\\'s \"won\" \\\\ Q4' "
        "AND conversion_action.status != 'REMOVED'",
    )
    (row,) = rows
    action = row.conversion_action
    assert (action.id, action.type_.name, action.name) == (700000002, "UPLOAD_CLICKS", "")
    assert action.resource_name == f"customers/{CUSTOMER}/conversionActions/700000002"


def test_search_filters_orders_and_limits(emulator: GoogleAdsApiEmulator) -> None:
    rows = search(
        emulator,
        "SELECT conversion_action.id FROM conversion_action "
        "WHERE conversion_action.status IN (ENABLED) AND conversion_action.id > 700000001 "
        "ORDER BY conversion_action.id DESC LIMIT 1",
    )
    assert [r.conversion_action.id for r in rows] == [700000003]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (f"{BY} conversion_action.name = 'It's'", "STRING_NOT_TERMINATED"),
        (f"{BY} conversion_action.name = 'a\\q'", "BAD_ESCAPE_SEQUENCE"),
        (f"{BY} conversion_action.status = 'NOPE'", "BAD_ENUM_CONSTANT"),
        (f"{BY} conversion_action.id = '7'", "BAD_VALUE"),
        ("SELECT conversion_action.nope FROM conversion_action", "UNRECOGNIZED_FIELD"),
        # Only up to v25; v26 has conversion_tracking_setting.enablement_setting instead.
        (
            f"SELECT customer.{TRACKING}.enhanced_conversions_for_leads_enabled FROM customer",
            "UNRECOGNIZED_FIELD",
        ),
        ("SELECT conversion_action.id", "EXPECTED_FROM"),
    ],
)
def test_bad_queries_fail_like_google(
    emulator: GoogleAdsApiEmulator, query: str, code: str
) -> None:
    with pytest.raises(GoogleAdsException) as caught:
        search(emulator, query)
    assert ads_codes(caught.value) == [code]


def test_customer_settings_by_search_stream(emulator: GoogleAdsApiEmulator) -> None:
    service = client(emulator).get_service("GoogleAdsService")
    query = (
        "SELECT customer.time_zone, customer.currency_code, "
        "customer.conversion_tracking_setting.accepted_customer_data_terms, "
        "customer.conversion_tracking_setting.enablement_setting FROM customer"
    )
    batches = list(service.search_stream(customer_id=CUSTOMER, query=query))
    (row,) = [row for batch in batches for row in batch.results]
    setting = row.customer.conversion_tracking_setting
    assert (row.customer.time_zone, row.customer.currency_code) == ("Europe/Berlin", "EUR")
    assert setting.accepted_customer_data_terms and setting.enablement_setting.name == "ON"
    assert emulator.queries == [query]


def test_unknown_customer_is_permission_denied(emulator: GoogleAdsApiEmulator) -> None:
    service = client(emulator).get_service("GoogleAdsService")
    with pytest.raises(GoogleAdsException) as caught:
        list(service.search(customer_id="999", query="SELECT customer.id FROM customer"))
    assert ads_codes(caught.value) == ["USER_PERMISSION_DENIED"]


def test_one_order_id_twice_in_a_validate_only_request_and_an_adjustment_at_its_conversion(
    emulator: GoogleAdsApiEmulator,
) -> None:
    """What a dry run must never send: two wins of one order in a request (even only to
    validate, with different clicks), and an adjustment not after its conversion."""
    service = client(emulator).get_service("ConversionUploadService")
    twice = UploadClickConversionsRequest(
        customer_id=CUSTOMER,
        conversions=[conversion("D"), conversion("D", gclid="Cj0KCQiA-other-1234567890")],
        partial_failure=True,
        validate_only=True,
    )
    assert row_errors(service.upload_click_conversions(request=twice)) == {1: "DUPLICATE_ORDER_ID"}
    upload(emulator, conversion("E"))
    at_conversion = adjust(emulator, adjustment("E", WHEN, value=5.0))
    assert row_errors(at_conversion) == {0: "ADJUSTMENT_PRECEDES_CONVERSION"}
    assert emulator.conversion("E").adjustments == []  # type: ignore[union-attr]
