"""Google Ads offline conversions through the Data Manager API (`IngestEvents`).

A request is accepted or rejected as a whole (API-NOTES §1), so every event
is checked here first, and a request that is still rejected is split in
halves until only the bad events are set aside, each with Google's reason.
Transaction ids are deterministic per lead and stage: a resend is recognised
by Google as the same conversion, never counted twice.

Adjustments: an event with a transaction id Google already has for the same
conversion action adjusts that conversion. A restatement (a won deal's new
amount) is therefore the won event again with the new value. Data Manager has
no retraction: its adjustments restate values or add user data, nothing takes a
conversion back. A retraction (a won deal reopened or lost) is therefore sent
as an adjustment restating `conversion_value` to 0: the conversion stays in
Google Ads, worth nothing. Only the legacy Google Ads API path truly retracts.

Error classes (API-NOTES §1) as this API reports them:
- transient (429, 5xx, timeouts): retried here, then left pending;
- a request refused as invalid (400): split until the event is found, which is
  rejected with Google's reason code and message;
- ALREADY_EXISTS (409) for one event: it is there already, so delivered;
- CLICK_NOT_FOUND, TOO_RECENT_CLICK, a duplicate transaction id: Data Manager
  has no such synchronous error. They are processing errors that only the
  request status gives, as counts per destination (`request_status`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from google.ads import datamanager_v1 as dm
from google.api_core import exceptions as gexc
from google.protobuf import json_format

from connector.core import GOOGLE_ADS, Delivery, Outcome, Status, utcnow
from connector.destinations.base import Capabilities, Plan, Settle
from connector.destinations.google_ads import adjustments, request_status
from connector.destinations.google_ads.actions import ActionIds, sendable
from connector.destinations.google_ads.ads_api import ads_client
from connector.destinations.google_ads.auth import DATAMANAGER_SCOPE, credentials
from connector.destinations.google_ads.eligibility import (
    click_id,
    consent_flags,
    hashed_identifiers,
)
from connector.errors import DestinationError
from connector.google_api import GOOGLE_REST_TRANSIENT
from connector.http import pin_ca
from connector.ledger import Ledger
from connector.retry import RetryableError, call_with_retries
from connector.settings import GoogleAdsSettings

_TRANSIENT = GOOGLE_REST_TRANSIENT
_CONSENT = {True: dm.ConsentStatus.CONSENT_GRANTED, False: dm.ConsentStatus.CONSENT_DENIED}
_DM_IDENTIFIER = {"email": "email_address", "phone": "phone_number"}
T = TypeVar("T")
_REQUEST_PREFIX = re.compile(r"^[A-Z]+ https?://\S+: ")


class DataManagerDestination:
    """Google Ads offline conversions through the Data Manager API."""

    name = GOOGLE_ADS

    def __init__(
        self, settings: GoogleAdsSettings, *, sleep: Callable[[float], None] | None = None
    ) -> None:
        self._settings = settings
        self._sleep = sleep  # tests skip the backoff waits
        self._client = dm.IngestionServiceClient(
            credentials=credentials(settings, DATAMANAGER_SCOPE),
            transport="rest",
            client_options={"api_endpoint": settings.datamanager_endpoint},
        )
        # The REST transport is a requests session: pin the CA bundle setting on it.
        pin_ca(self._client.transport._session, settings.datamanager_ca_bundle)  # type: ignore[attr-defined]
        # Actions the mapping names (not ids) are looked up through the Google Ads API.
        self._action_ids = ActionIds(
            settings, lambda: ads_client(settings).get_service("GoogleAdsService"), sleep=sleep
        )

        self.capabilities = Capabilities(
            batch_size=settings.batch_size, request_status=True, deduplicates=True
        )

    def close(self) -> None:
        self._client.transport.close()  # type: ignore[no-untyped-call]

    def plan(self, ledger: Ledger, wave: Sequence[Delivery]) -> Plan:
        return adjustments.plan(ledger, wave)

    def check_requests(self, ledger: Ledger) -> dict[str, Any] | None:
        return request_status.check(ledger, self).as_dict()

    def deliver(
        self,
        batch: Sequence[Delivery],
        *,
        validate_only: bool = False,
        settle: Settle | None = None,
    ) -> list[Outcome]:
        outcomes, valid = self._check(batch)
        if settle:
            settle(outcomes)
        size = self._settings.batch_size
        for start in range(0, len(valid), size):
            sent = self._send(valid[start : start + size], validate_only)
            if settle:
                settle(sent)
            outcomes.extend(sent)
        return outcomes

    def payloads(self, batch: Sequence[Delivery]) -> list[dict[str, Any]]:
        _, valid = self._check(batch)
        size = self._settings.batch_size
        return [
            json_format.MessageToDict(
                dm.IngestEventsRequest.pb(self._request(valid[i : i + size], validate_only=True))
            )
            for i in range(0, len(valid), size)
        ]

    def _check(self, batch: Sequence[Delivery]) -> tuple[list[Outcome], list[Delivery]]:
        """Outcomes for what cannot go, and the rest with their conversion action ids."""
        outcomes, valid = sendable(batch, self._action_ids, utcnow())
        return outcomes, [replace(d, target=action_id) for d, action_id in valid]

    def request_status(self, request_id: str) -> dm.RetrieveRequestStatusResponse:
        """Google's processing outcome for an accepted request (RetrieveRequestStatus).

        Not retried: waiting out an outage or a quota would hold up the run, and a
        request left unchecked is checked by the next one. Raises RetryableError for
        a transient failure, GoogleAPICallError for any other.
        """
        request = dm.RetrieveRequestStatusRequest(request_id=request_id)
        return self._call(self._client.retrieve_request_status, request)

    def _send(self, batch: list[Delivery], validate_only: bool) -> list[Outcome]:
        request = self._request(batch, validate_only=validate_only)
        try:
            response = call_with_retries(
                lambda: self._call(self._client.ingest_events, request), sleep=self._sleep
            )
        except RetryableError as exc:
            return [Outcome(d.id, Status.PENDING, error=str(exc)) for d in batch]
        except gexc.GoogleAPICallError as exc:
            return self._refused(batch, validate_only, exc)
        request_id = response.request_id or None  # validate_only answers without one
        return [Outcome(d.id, Status.DELIVERED, request_id=request_id) for d in batch]

    def _refused(
        self, batch: list[Delivery], validate_only: bool, exc: gexc.GoogleAPICallError
    ) -> list[Outcome]:
        if not _refuses_events(exc):
            # Auth, permission, the account or the request itself: no event's fault, and
            # nothing in this batch can go until it is fixed (splitting would burn rows).
            raise DestinationError(_destination_problem(exc, self._settings), status=exc.code)
        if len(batch) == 1:
            return [_verdict(batch[0], exc)]
        middle = len(batch) // 2
        return self._send(batch[:middle], validate_only) + self._send(batch[middle:], validate_only)

    def _call(self, method: Callable[..., T], request: Any) -> T:
        """One call without the GAPIC default retry: ours (call_with_retries) is the only one."""
        try:
            return method(request=request, retry=None, timeout=self._settings.timeout_seconds)
        except _TRANSIENT as exc:
            raise RetryableError(
                f"Data Manager transient failure: {type(exc).__name__}",
                retry_after=_retry_after(exc),
            ) from None

    def _request(self, batch: list[Delivery], *, validate_only: bool) -> dm.IngestEventsRequest:
        actions = sorted({d.target for d in batch})
        return dm.IngestEventsRequest(
            destinations=[self._destination(action) for action in actions],
            events=[_event(d) for d in batch],
            encoding=dm.Encoding.HEX,
            validate_only=validate_only,
        )

    def _destination(self, action: str) -> dm.Destination:
        s = self._settings
        account = dm.ProductAccount(
            account_id=s.operating_account_id, account_type=dm.ProductAccount.AccountType.GOOGLE_ADS
        )
        destination = dm.Destination(
            reference=_reference(action), operating_account=account, product_destination_id=action
        )
        if s.login_account_id:
            destination.login_account = dm.ProductAccount(
                account_id=s.login_account_id,
                account_type=dm.ProductAccount.AccountType.GOOGLE_ADS,
            )
        return destination


def _reference(action: str) -> str:
    return f"action_{action}"


def _already_exists(exc: gexc.GoogleAPICallError) -> bool:
    return isinstance(exc, gexc.AlreadyExists) or exc.reason == "ALREADY_EXISTS"


def _refuses_events(exc: gexc.GoogleAPICallError) -> bool:
    """An answer about the events themselves: split the batch to find which."""
    if _already_exists(exc):
        return True
    if not isinstance(exc, gexc.BadRequest):
        return False
    fields = _violation_fields(exc)
    return not fields or any(f.startswith("events[") for f in fields)


def _violation_fields(exc: gexc.GoogleAPICallError) -> list[str]:
    return [
        str(v.get("field", ""))
        for detail in exc.details or ()
        if isinstance(detail, dict)
        for v in detail.get("fieldViolations", ())
    ]


def _destination_problem(exc: gexc.GoogleAPICallError, settings: GoogleAdsSettings) -> str:
    """What is wrong with the destination as a whole, and what to fix (API-NOTES §1)."""
    code = f"{exc.code} {exc.reason or ''}".strip()
    account = settings.operating_account_id
    if isinstance(exc, gexc.Unauthenticated | gexc.Unauthorized):
        fix = (
            "check CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE (a service account or OAuth client "
            "with the https://www.googleapis.com/auth/datamanager scope)"
        )
    elif isinstance(exc, gexc.PermissionDenied | gexc.Forbidden):
        fix = (
            f"give the credentials access to Google Ads account {account}, enable the Data "
            "Manager API in their Cloud project, and accept the customer data terms"
        )
    elif isinstance(exc, gexc.NotFound):
        fix = f"check CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID ({account})"
    else:
        fix = (
            "check CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID / __LOGIN_ACCOUNT_ID and the "
            "mapping's conversion actions"
        )
    return f"google_ads: Data Manager refused the request ({code}: {_violation(exc)}): {fix}"


def _verdict(d: Delivery, exc: gexc.GoogleAPICallError) -> Outcome:
    """One event Google refused: already there (delivered), or invalid (rejected, why)."""
    if _already_exists(exc):
        return Outcome(d.id, Status.DELIVERED)  # Google has it already: count it as delivered
    code = exc.reason or "INVALID_ARGUMENT"
    return Outcome(d.id, Status.REJECTED, reason=f"google_ads: {code}: {_violation(exc)}"[:200])


def _violation(exc: gexc.GoogleAPICallError) -> str:
    """The first field violation Google named ("field: description"), else its message."""
    for detail in exc.details or ():
        if isinstance(detail, dict) and detail.get("fieldViolations"):
            first = detail["fieldViolations"][0]
            return f"{first.get('field', '')}: {first.get('description', '')}"
    # The REST client puts the method and URL in front: keep Google's words only.
    return _REQUEST_PREFIX.sub("", str(exc.message))


def _retry_after(exc: Exception) -> float:
    """The server's Retry-After hint in seconds (REST errors carry the response)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return float(headers.get("Retry-After", 0))
    except ValueError:
        return 0.0  # an HTTP date: the backoff alone will do


def _event(d: Delivery) -> dm.Event:
    attrs = d.change.attributes
    event = dm.Event(
        destination_references=[_reference(d.target)],
        transaction_id=d.change.transaction_id,
        event_timestamp=d.change.changed_at,
        event_source=dm.EventSource.OTHER,
    )
    if click := click_id(attrs):
        event.ad_identifiers = dm.AdIdentifiers(**{click[0]: click[1]})
    identifiers = [
        dm.UserIdentifier(**{_DM_IDENTIFIER[kind]: digest})
        for kind, digest in hashed_identifiers(attrs).items()
    ]
    if identifiers:
        event.user_data = dm.UserData(user_identifiers=identifiers)
    consent = {key: _CONSENT[granted] for key, granted in consent_flags(attrs).items()}
    if consent:
        event.consent = dm.Consent(**consent)
    if d.change.retraction:
        # No retraction in Data Manager: the nearest is a value restated to 0 (module doc).
        event.conversion_value = 0.0
    elif d.value is not None and d.currency:
        event.conversion_value = d.value
        event.currency = d.currency
    if d.change.retraction or d.change.restatement:
        event.last_updated_timestamp = d.change.changed_at
    return event
