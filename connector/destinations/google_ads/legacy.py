"""Google Ads offline conversions through the legacy Google Ads API upload path.

For allowlisted Cloud projects: only projects that imported offline clicks
between 2025-12-17 and 2026-06-15 may still use `ConversionUploadService`
(setting `google_ads.upload_api = ads_api`; no developer token, API-NOTES §0).
Any other project gets CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE, and a
Test-access project CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION: errors of the
destination, not of a row, so the rows stay pending with the fix as their
error, the fix is logged once, and nothing more is sent to it this run.
Same mapping, checks, hashing and ledger as the Data Manager path; only the
wire format differs:
- an ordinary delivery is a click conversion (`UploadClickConversions`);
- a restated won amount is a RESTATEMENT and a reopened or lost won deal a
  RETRACTION of the won conversion (`UploadConversionAdjustments`, by order id),
  sent after the batch's click conversions, as an adjustment needs its conversion;
  its `adjustment_date_time` is the CRM change time, strictly after the conversion
  and the order's adjustment before it.

Uploads run with `partial_failure=True`: good rows are accepted even when
others fail. A row counts as delivered only when no error points at its index
(`field_path_elements[0].index`); echoed identifiers prove nothing, as failed
rows come back as empty results (API-NOTES §1). `order_id` is the
deterministic transaction id, so a resend is answered "already exists" and
counted as delivered, never as a second conversion. Times are written in the
account's time zone with an explicit offset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.v26.common.types.consent import Consent
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
from google.api_core import exceptions as gexc
from google.protobuf import json_format

from connector.core import GOOGLE_ADS, Delivery, Outcome, Status, utcnow
from connector.destinations.base import Capabilities, Plan, Settle
from connector.destinations.google_ads import adjustments
from connector.destinations.google_ads.account import account_zone
from connector.destinations.google_ads.actions import ActionIds, sendable
from connector.destinations.google_ads.adjustments import CONVERSION, RESTATEMENT, kind_of
from connector.destinations.google_ads.ads_api import (
    ads_client,
    call_ads_api,
    describe,
    error_code,
    stops_destination,
)
from connector.destinations.google_ads.eligibility import (
    click_id,
    consent_flags,
    hashed_identifiers,
)
from connector.destinations.google_ads.errors import outcome
from connector.errors import DestinationError
from connector.ledger import Ledger
from connector.retry import RetryableError
from connector.settings import GoogleAdsSettings

CONVERSION_NOT_DELIVERED = "conversion_not_delivered"
_IDENTIFIER_FIELD = {"email": "hashed_email", "phone": "hashed_phone_number"}
_CONSENT = {True: "GRANTED", False: "DENIED"}
_FAILURE_TYPE = "GoogleAdsFailure"
# A row with several errors takes the most final treatment.
_SEVERITY = {Status.REJECTED: 3, Status.PENDING: 1, Status.DELIVERED: 0}


@dataclass(frozen=True)
class _Row:
    delivery: Delivery
    action: str  # conversion action resource name
    kind: str  # CONVERSION, RESTATEMENT or RETRACTION

    @property
    def key(self) -> tuple[str, str]:
        """Google's identity of the conversion: action and order id."""
        return self.action, order_id(self.delivery)


def order_id(d: Delivery) -> str:
    """The transaction id; a deal won again after a retraction is a new conversion here.

    A retracted conversion cannot be restored through this API, so each new life of
    it (and its restatements and retraction) gets the transaction id plus a count.
    """
    base = d.change.transaction_id
    return f"{base}:{d.retracted_before}" if d.retracted_before else base


def conversion_date_time(at: datetime, zone: tzinfo = UTC) -> str:
    """`yyyy-mm-dd hh:mm:ss+hh:mm` in `zone`: with the offset written out, the instant is exact."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # the ledger stores UTC
    local = at.astimezone(zone)
    offset = local.utcoffset() or timedelta(0)
    minutes = abs(int(offset.total_seconds())) // 60
    sign = "-" if offset < timedelta(0) else "+"
    return local.strftime("%Y-%m-%d %H:%M:%S") + f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class GoogleAdsApiDestination:
    """Google Ads offline conversions through the legacy Google Ads API (allowlisted projects)."""

    name = GOOGLE_ADS

    def __init__(
        self,
        settings: GoogleAdsSettings,
        *,
        client: Any = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._settings = settings
        self._client = client if client is not None else ads_client(settings)
        self._sleep = sleep
        self._services: dict[str, Any] = {}
        self._reported: set[str] = set()  # destination-wide errors logged this run
        self._action_ids = ActionIds(
            settings,
            lambda: self._service("GoogleAdsService"),
            sleep=self._sleep,
            reported=self._reported,
        )
        self._zone: tzinfo | None = None
        self._adjusted: dict[tuple[str, str], datetime] = {}  # last adjustment time per order
        # Per delivery: the CRM time of the last delivered row of its conversion (the plan's).
        self._last_at: dict[int, datetime] = {}
        self._checked: set[tuple[str, str]] = set()  # orders only validated (a dry run)
        self.capabilities = Capabilities(batch_size=settings.batch_size, deduplicates=True)

    def plan(self, ledger: Ledger, wave: Sequence[Delivery]) -> Plan:
        plan, history = adjustments.planned(ledger, wave)
        self._last_at.update({i: h.last_at for i, h in history.items() if h.last_at})
        return plan

    def check_requests(self, ledger: Ledger) -> dict[str, Any] | None:
        return None  # this API answers per row at once: there is no later verdict

    def close(self) -> None:
        for service in self._services.values():
            service.transport.close()
        self._services.clear()

    def deliver(
        self,
        batch: Sequence[Delivery],
        *,
        validate_only: bool = False,
        settle: Settle | None = None,
    ) -> list[Outcome]:
        report = settle or (lambda _outcomes: None)
        outcomes, rows = self._prepare(batch)
        report(outcomes)
        conversions = [r for r in rows if r.kind == CONVERSION]
        for chunk in self._chunks(conversions):
            sent = self._upload(chunk, validate_only)
            report(sent)
            outcomes.extend(sent)
        held, adjustments = _after_conversions(rows, outcomes, validate_only)
        if validate_only:
            held, adjustments = self._unchecked(held, adjustments)
        report(held)
        outcomes.extend(held)
        for chunk in self._chunks(adjustments):
            sent = self._upload_adjustments(chunk, validate_only)
            report(sent)
            outcomes.extend(sent)
        return outcomes

    def _unchecked(self, held: list[Outcome], rows: list[_Row]) -> tuple[list[Outcome], list[_Row]]:
        """Validate-only: an adjustment of a conversion only validated before (a dry run's
        earlier wave) cannot be checked, Google has no such conversion: held as validated."""
        held = held + [
            Outcome(r.delivery.id, Status.DELIVERED) for r in rows if r.key in self._checked
        ]
        return held, [r for r in rows if r.key not in self._checked]

    def payloads(self, batch: Sequence[Delivery]) -> list[dict[str, Any]]:
        _, rows = self._prepare(batch)
        conversions = [r for r in rows if r.kind == CONVERSION]
        adjustments = [r for r in rows if r.kind != CONVERSION]
        requests = [
            UploadClickConversionsRequest.pb(self._request(chunk, validate_only=True))
            for chunk in self._chunks(conversions)
        ] + [
            UploadConversionAdjustmentsRequest.pb(self._adjustments(chunk, validate_only=True))
            for chunk in self._chunks(adjustments)
        ]
        return [json_format.MessageToDict(request) for request in requests]

    # -- preparing rows

    def _prepare(self, batch: Sequence[Delivery]) -> tuple[list[Outcome], list[_Row]]:
        """Local checks and conversion action resource names; rows that cannot go get outcomes."""
        outcomes, valid = sendable(batch, self._action_ids, utcnow())
        customer = self._settings.operating_account_id
        rows = [
            _Row(d, f"customers/{customer}/conversionActions/{action_id}", kind_of(d))
            for d, action_id in valid
        ]
        return outcomes, rows

    def _account_zone(self) -> tzinfo:
        """The account's time zone, read once per run (UTC if unreadable, logged)."""
        if self._zone is None:
            service = self._service("GoogleAdsService")
            customer = self._settings.operating_account_id
            self._zone = account_zone(service, customer, sleep=self._sleep)
        return self._zone

    def _service(self, name: str) -> Any:
        if name not in self._services:
            self._services[name] = self._client.get_service(name)
        return self._services[name]

    def _chunks(self, rows: list[_Row]) -> Iterator[list[_Row]]:
        size = self._settings.batch_size
        for start in range(0, len(rows), size):
            yield rows[start : start + size]

    def _options(self) -> dict[str, Any]:
        # Retries are ours (call_ads_api): the GAPIC layer must not add its own.
        return {"retry": None, "timeout": self._settings.timeout_seconds}

    def _call(self, rows: list[_Row], call: Callable[[], Any]) -> list[Outcome]:
        """One upload; its per-row errors mapped back to the rows by index."""
        try:
            response = call_ads_api(call, sleep=self._sleep)
        except (RetryableError, GoogleAdsException, gexc.GoogleAPICallError) as exc:
            if (stop := stops_destination(exc, self._reported)) is not None:
                raise stop from None  # the allowlist or access level: the fix is named
            if _needs_fix(exc):
                raise DestinationError(
                    f"google_ads: the Google Ads API refused the upload ({describe(exc)}): check "
                    "the credentials, their access to the account and the Cloud project's "
                    "access to the API",
                ) from None
            # Nothing in this request was accepted (quota, outage): keep it pending.
            return [Outcome(r.delivery.id, Status.PENDING, error=describe(exc)) for r in rows]
        by_row, unplaced = _row_errors(response.partial_failure_error, len(rows))
        request_id = f"job:{response.job_id}" if response.job_id else None
        now = utcnow()
        return [
            _outcome(row.delivery.id, by_row.get(index, []), unplaced, request_id, now)
            for index, row in enumerate(rows)
        ]

    # -- click conversions

    def _upload(self, rows: list[_Row], validate_only: bool) -> list[Outcome]:
        request = self._request(rows, validate_only=validate_only)
        service = self._service("ConversionUploadService")
        outcomes = self._call(
            rows, lambda: service.upload_click_conversions(request=request, **self._options())
        )
        delivered = {o.delivery_id for o in outcomes if o.status == Status.DELIVERED}
        for row in rows:
            if row.delivery.id not in delivered:
                continue
            if validate_only:
                self._checked.add(row.key)
            else:  # an adjustment of it must be later than the conversion
                self._adjusted[row.key] = row.delivery.change.changed_at
        return outcomes

    def _request(self, rows: list[_Row], *, validate_only: bool) -> Any:
        zone = self._account_zone()
        return UploadClickConversionsRequest(
            customer_id=self._settings.operating_account_id,
            conversions=[_conversion(row, zone) for row in rows],
            partial_failure=True,
            validate_only=validate_only,
        )

    # -- adjustments

    def _upload_adjustments(self, rows: list[_Row], validate_only: bool) -> list[Outcome]:
        request = self._adjustments(rows, validate_only=validate_only)
        service = self._service("ConversionAdjustmentUploadService")
        outcomes = self._call(
            rows, lambda: service.upload_conversion_adjustments(request=request, **self._options())
        )
        if not validate_only:  # only what Google now holds bounds the next adjustment
            self._remember_adjusted(rows, outcomes)
        return outcomes

    def _adjustments(self, rows: list[_Row], *, validate_only: bool) -> Any:
        zone = self._account_zone()
        times = self._adjustment_times(rows)
        return UploadConversionAdjustmentsRequest(
            customer_id=self._settings.operating_account_id,
            conversion_adjustments=[
                _adjustment(row, conversion_date_time(at, zone))
                for row, at in zip(rows, times, strict=True)
            ],
            partial_failure=True,
            validate_only=validate_only,
        )

    def _adjustment_times(self, rows: list[_Row]) -> list[datetime]:
        """The CRM change time of each adjustment, to the second, each strictly after its
        conversion and the adjustment of the same order before it.

        Google refuses an adjustment not after its conversion and keeps the restatement
        with the latest adjustment time, refusing one that is not newer. A pure function of
        the rows and what was sent before: a payload shows the times a send would use.
        """
        times: list[datetime] = []
        previous: dict[tuple[str, str], datetime] = {}
        for row in rows:
            known = (
                self._last_at.get(row.delivery.id),
                self._adjusted.get(row.key),
                previous.get(row.key),
            )
            floor = max((t for t in known if t is not None), default=None)
            at = row.delivery.change.changed_at.replace(microsecond=0)
            if floor is not None and at <= floor:
                at = floor.replace(microsecond=0) + timedelta(seconds=1)
            previous[row.key] = at
            times.append(at)
        return times

    def _remember_adjusted(self, rows: list[_Row], outcomes: list[Outcome]) -> None:
        delivered = {o.delivery_id for o in outcomes if o.status == Status.DELIVERED}
        for row, at in zip(rows, self._adjustment_times(rows), strict=True):
            if row.delivery.id in delivered:
                self._adjusted[row.key] = at


def _after_conversions(
    rows: list[_Row], outcomes: list[Outcome], validate_only: bool
) -> tuple[list[Outcome], list[_Row]]:
    """Adjustments that may go now, and outcomes for those whose conversion is in this batch
    but was not accepted: an adjustment of a missing conversion would fail for good."""
    status = {o.delivery_id: o for o in outcomes}
    converted = {r.key: status[r.delivery.id] for r in rows if r.kind == CONVERSION}
    held: list[Outcome] = []
    ready: list[_Row] = []
    for row in rows:
        conversion = converted.get(row.key)
        if row.kind == CONVERSION:
            continue
        if conversion is None or (conversion.status == Status.DELIVERED and not validate_only):
            ready.append(row)
        else:
            held.append(_held(row.delivery.id, conversion))
    return held, ready


def _held(delivery_id: int, conversion: Outcome) -> Outcome:
    if conversion.status == Status.DELIVERED:
        # validate_only: the conversion was only checked, so Google has none to adjust yet.
        return Outcome(delivery_id, Status.DELIVERED)
    if conversion.status == Status.PENDING:
        error = f"waits for its conversion: {conversion.error or 'pending'}"
        return Outcome(delivery_id, Status.PENDING, error=error, not_before=conversion.not_before)
    return Outcome(
        delivery_id, Status.REJECTED, reason=CONVERSION_NOT_DELIVERED, error=conversion.reason
    )


def _conversion(row: _Row, zone: tzinfo) -> Any:
    d = row.delivery
    attrs = d.change.attributes
    conversion = ClickConversion(
        conversion_action=row.action,
        conversion_date_time=conversion_date_time(d.change.changed_at, zone),
        order_id=order_id(d),
        user_identifiers=[
            UserIdentifier(**{_IDENTIFIER_FIELD[kind]: digest})
            for kind, digest in hashed_identifiers(attrs).items()
        ],
    )
    if click := click_id(attrs):
        setattr(conversion, click[0], click[1])
    # This API takes ad_user_data only; ad_personalization is rejected here.
    ad_user_data = consent_flags(attrs).get("ad_user_data")
    if ad_user_data is not None:
        conversion.consent = Consent(ad_user_data=_CONSENT[ad_user_data])
    if d.value is not None and d.currency:
        conversion.conversion_value = d.value
        conversion.currency_code = d.currency
    return conversion


def _adjustment(row: _Row, at: str) -> Any:
    d = row.delivery
    adjustment = ConversionAdjustment(
        conversion_action=row.action,
        order_id=order_id(d),  # never with a gclid pair: Google takes one or the other
        adjustment_date_time=at,
        adjustment_type=row.kind,
    )
    if row.kind == RESTATEMENT and d.value is not None:
        adjustment.restatement_value = RestatementValue(
            adjusted_value=d.value, currency_code=d.currency or ""
        )
    return adjustment


# Error kinds that no resend can cure: the credentials, or their access to the account.
_NEEDS_FIX_KINDS = frozenset({"authentication_error", "authorization_error"})


def _needs_fix(exc: Exception) -> bool:
    if isinstance(exc, gexc.Unauthenticated | gexc.PermissionDenied):
        return True
    if isinstance(exc, GoogleAdsException):
        return any(error_code(e)[0] in _NEEDS_FIX_KINDS for e in exc.failure.errors)
    return False


def _row_errors(status: Any, rows: int) -> tuple[dict[int, list[Any]], list[Any]]:
    """Partial-failure errors by row index, and errors that name no row."""
    by_row: dict[int, list[Any]] = {}
    unplaced: list[Any] = []
    details = status.details if status is not None else []
    for detail in details:
        if not detail.type_url.endswith(_FAILURE_TYPE):
            continue
        for error in GoogleAdsFailure.deserialize(detail.value).errors:
            elements = error.location.field_path_elements
            index = elements[0].index if elements and "index" in elements[0] else None
            if index is not None and 0 <= index < rows:
                by_row.setdefault(index, []).append(error)
            else:
                unplaced.append(error)
    return by_row, unplaced


def _outcome(
    delivery_id: int,
    errors: list[Any],
    unplaced: list[Any],
    request_id: str | None,
    now: datetime,
) -> Outcome:
    if not errors and unplaced:
        # Some error names no row, so this one may have failed: resending is safe (order id).
        return Outcome(delivery_id, Status.PENDING, error=_error_text(unplaced))
    if not errors:
        return Outcome(delivery_id, Status.DELIVERED, request_id=request_id)
    outcomes = [_classify(delivery_id, error, request_id, now) for error in errors]
    return max(outcomes, key=lambda o: _SEVERITY[o.status])


def _classify(delivery_id: int, error: Any, request_id: str | None, now: datetime) -> Outcome:
    code = error_code(error)[1]
    text = _error_text([error])
    return outcome(delivery_id, code, now=now, error=text, rejected_as=code, request_id=request_id)


def _error_text(errors: list[Any]) -> str:
    """Google's codes and messages (no row data: messages never echo identifiers)."""
    return "; ".join(f"{'.'.join(error_code(e))}: {e.message}" for e in errors)[:500]
