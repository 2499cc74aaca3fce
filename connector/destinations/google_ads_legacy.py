"""Google Ads offline conversions through the legacy Google Ads API upload path.

For developer tokens still allowlisted for `ConversionUploadService`
(setting `google_ads.upload_api = ads_api`). Same mapping, checks, hashing
and ledger as the Data Manager path; only the wire format differs.

Uploads run with `partial_failure=True`: good rows are accepted even when
others fail. A row counts as delivered only when no error points at its index
(`field_path_elements[0].index`); echoed identifiers prove nothing, as failed
rows come back as empty results (API-NOTES §1). `order_id` is the
deterministic transaction id, so a resend is answered "already exists" and
counted as delivered, never as a second conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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

from connector.destinations.conversion_actions import (
    TRANSIENT_CODES,
    ConversionActions,
    ads_client,
    call_ads_api,
    describe,
    error_code,
)
from connector.destinations.google_ads import (
    click_id,
    consent_flags,
    event_problem,
    hashed_identifiers,
)
from connector.destinations.retry import RetryableError
from connector.ledger.store import DELIVERED, PENDING, REJECTED, Delivery, Outcome, utcnow
from connector.settings import GoogleAdsSettings

NOT_ATTRIBUTABLE = "not_attributable"
# Per-row error codes by treatment (API-NOTES §1); anything else is permanent.
ALREADY_DONE = frozenset(
    {
        "CLICK_CONVERSION_ALREADY_EXISTS",
        "ORDER_ID_ALREADY_IN_USE",
        "RESTATEMENT_ALREADY_EXISTS",
        "CONVERSION_ALREADY_RETRACTED",
    }
)
LATER_RUN = frozenset(
    {
        "TOO_RECENT_EVENT",
        "TOO_RECENT_CONVERSION_ACTION",
        "TOO_RECENT_CONVERSION",
        # Two rows with one order id in a request: the next run's resend settles it.
        "DUPLICATE_ORDER_ID",
        "DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
        "DUPLICATE_ADJUSTMENT_IN_REQUEST",
        *TRANSIENT_CODES,
    }
)
_IDENTIFIER_FIELD = {"email": "hashed_email", "phone": "hashed_phone_number"}
_CONSENT = {True: "GRANTED", False: "DENIED"}
_FAILURE_TYPE = "GoogleAdsFailure"
# A row with several errors takes the most final treatment.
_SEVERITY = {REJECTED: 3, PENDING: 1, DELIVERED: 0}


@dataclass(frozen=True)
class _Row:
    delivery: Delivery
    action: str  # conversion action resource name


def conversion_date_time(at: datetime) -> str:
    """`yyyy-mm-dd hh:mm:ss+00:00`: with an explicit offset, the account time zone never applies."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # the ledger stores UTC
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


class GoogleAdsApiDestination:
    name = "google_ads"

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
        self._actions: ConversionActions | None = None

    def close(self) -> None:
        for service in self._services.values():
            service.transport.close()
        self._services.clear()

    def deliver(self, batch: Sequence[Delivery], *, validate_only: bool = False) -> list[Outcome]:
        outcomes, rows = self._prepare(batch)
        for chunk in self._chunks(rows):
            outcomes.extend(self._upload(chunk, validate_only))
        return outcomes

    def adjust(
        self, batch: Sequence[Delivery], *, retract: bool = False, validate_only: bool = False
    ) -> list[Outcome]:
        """Restate (new value) or retract conversions uploaded earlier, by their order id."""
        outcomes, rows = self._prepare(batch, check_event=False)
        for chunk in self._chunks(rows):
            outcomes.extend(self._upload_adjustments(chunk, retract, validate_only))
        return outcomes

    def payloads(self, batch: Sequence[Delivery]) -> list[dict[str, Any]]:
        _, rows = self._prepare(batch)
        return [
            json_format.MessageToDict(
                UploadClickConversionsRequest.pb(self._request(chunk, validate_only=True))
            )
            for chunk in self._chunks(rows)
        ]

    # -- preparing rows

    def _prepare(
        self, batch: Sequence[Delivery], *, check_event: bool = True
    ) -> tuple[list[Outcome], list[_Row]]:
        """Local checks and conversion action resource names; rows that cannot go get outcomes."""
        now = utcnow()
        actions, lookup_error = self._action_names(batch)
        outcomes, rows = [], []
        for d in batch:
            problem = event_problem(d, now) if check_event else None
            action = actions.get(d.target)
            if problem:
                outcomes.append(Outcome(d.id, REJECTED, reason=problem))
            elif action is None and lookup_error:
                outcomes.append(Outcome(d.id, PENDING, error=lookup_error))
            elif action is None:
                outcomes.append(Outcome(d.id, REJECTED, reason="unknown_conversion_action"))
            else:
                rows.append(_Row(d, action))
        return outcomes, rows

    def _action_names(self, batch: Sequence[Delivery]) -> tuple[dict[str, str], str | None]:
        """Resource names by target: ids directly, names through one lookup per run."""
        customer = self._settings.operating_account_id
        targets = {d.target for d in batch}
        by_id = {t: f"customers/{customer}/conversionActions/{t}" for t in targets if t.isdigit()}
        names = targets - by_id.keys()
        if not names:
            return by_id, None
        try:
            found = self._resolver().resolve(names)
        except (RetryableError, GoogleAdsException, gexc.GoogleAPICallError) as exc:
            return by_id, f"conversion action lookup failed: {describe(exc)}"
        return by_id | {name: info.resource_name for name, info in found.items()}, None

    def _resolver(self) -> ConversionActions:
        if self._actions is None:
            service = self._service("GoogleAdsService")
            customer = self._settings.operating_account_id
            self._actions = ConversionActions(service, customer, sleep=self._sleep)
        return self._actions

    def _service(self, name: str) -> Any:
        if name not in self._services:
            self._services[name] = self._client.get_service(name)
        return self._services[name]

    def _chunks(self, rows: list[_Row]) -> Iterator[list[_Row]]:
        size = self._settings.batch_size
        for start in range(0, len(rows), size):
            yield rows[start : start + size]

    # -- click conversions

    def _upload(self, rows: list[_Row], validate_only: bool) -> list[Outcome]:
        request = self._request(rows, validate_only=validate_only)
        service = self._service("ConversionUploadService")
        return self._call(
            rows, lambda: service.upload_click_conversions(request=request, **self._options())
        )

    def _request(self, rows: list[_Row], *, validate_only: bool) -> Any:
        return UploadClickConversionsRequest(
            customer_id=self._settings.operating_account_id,
            conversions=[_conversion(row) for row in rows],
            partial_failure=True,
            validate_only=validate_only,
        )

    def _options(self) -> dict[str, Any]:
        # Retries are ours (call_ads_api): the GAPIC layer must not add its own.
        return {"retry": None, "timeout": self._settings.timeout_seconds}

    def _call(self, rows: list[_Row], call: Callable[[], Any]) -> list[Outcome]:
        """One upload; its per-row errors mapped back to the rows by index."""
        try:
            response = call_ads_api(call, sleep=self._sleep)
        except (RetryableError, GoogleAdsException, gexc.GoogleAPICallError) as exc:
            # Nothing in this request was accepted (auth, quota, allowlist): keep it pending.
            return [Outcome(r.delivery.id, PENDING, error=describe(exc)) for r in rows]
        by_row, unplaced = _row_errors(response.partial_failure_error, len(rows))
        request_id = f"job:{response.job_id}" if response.job_id else None
        return [
            _outcome(row.delivery.id, by_row.get(index, []), unplaced, request_id)
            for index, row in enumerate(rows)
        ]

    # -- adjustments

    def _upload_adjustments(
        self, rows: list[_Row], retract: bool, validate_only: bool
    ) -> list[Outcome]:
        # Google orders restatements by adjustment time: "now" is later than any earlier one.
        at = conversion_date_time(utcnow())
        request = UploadConversionAdjustmentsRequest(
            customer_id=self._settings.operating_account_id,
            conversion_adjustments=[_adjustment(r, at, retract) for r in rows],
            partial_failure=True,
            validate_only=validate_only,
        )
        service = self._service("ConversionAdjustmentUploadService")
        return self._call(
            rows, lambda: service.upload_conversion_adjustments(request=request, **self._options())
        )


def _conversion(row: _Row) -> Any:
    d = row.delivery
    attrs = d.change.attributes
    conversion = ClickConversion(
        conversion_action=row.action,
        conversion_date_time=conversion_date_time(d.change.changed_at),
        order_id=d.change.transaction_id,
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


def _adjustment(row: _Row, at: str, retract: bool) -> Any:
    d = row.delivery
    adjustment = ConversionAdjustment(
        conversion_action=row.action,
        order_id=d.change.transaction_id,
        adjustment_date_time=at,
        adjustment_type="RETRACTION" if retract else "RESTATEMENT",
    )
    if not retract and d.value is not None:
        adjustment.restatement_value = RestatementValue(
            adjusted_value=d.value, currency_code=d.currency or ""
        )
    return adjustment


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
    delivery_id: int, errors: list[Any], unplaced: list[Any], request_id: str | None
) -> Outcome:
    if not errors and unplaced:
        # Some error names no row, so this one may have failed: resending is safe (order id).
        return Outcome(delivery_id, PENDING, error=_error_text(unplaced))
    if not errors:
        return Outcome(delivery_id, DELIVERED, request_id=request_id)
    outcomes = [_classify(delivery_id, error, request_id) for error in errors]
    return max(outcomes, key=lambda o: _SEVERITY[o.status])


def _classify(delivery_id: int, error: Any, request_id: str | None) -> Outcome:
    code = error_code(error)[1]
    if code in ALREADY_DONE:
        return Outcome(delivery_id, DELIVERED, request_id=request_id)
    if code == "CLICK_NOT_FOUND":
        return Outcome(delivery_id, REJECTED, reason=NOT_ATTRIBUTABLE, error=_error_text([error]))
    if code in LATER_RUN:
        return Outcome(delivery_id, PENDING, error=_error_text([error]))
    return Outcome(delivery_id, REJECTED, reason=code, error=_error_text([error]))


def _error_text(errors: list[Any]) -> str:
    """Google's codes and messages (no row data: messages never echo identifiers)."""
    return "; ".join(f"{'.'.join(error_code(e))}: {e.message}" for e in errors)[:500]
