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

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.ads import datamanager_v1 as dm
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.protobuf import json_format

from connector.destinations.retry import (
    GOOGLE_REST_TRANSIENT,
    RetryableError,
    call_with_retries,
)
from connector.errors import ConfigError
from connector.http import pin_ca
from connector.ledger.store import DELIVERED, PENDING, REJECTED, Delivery, Outcome, utcnow
from connector.settings import GoogleAdsSettings

SCOPE = "https://www.googleapis.com/auth/datamanager"
LOOKBACK = timedelta(days=90)  # the conversion action's default click-through window
_TRANSIENT = GOOGLE_REST_TRANSIENT
_CONSENT = {True: dm.ConsentStatus.CONSENT_GRANTED, False: dm.ConsentStatus.CONSENT_DENIED}
_DM_IDENTIFIER = {"email": "email_address", "phone": "phone_number"}
T = TypeVar("T")


def event_problem(d: Delivery, now: datetime) -> str | None:
    """Why Google would reject this conversion (checked before anything is sent), or None."""
    change = d.change
    if change.changed_at > now + timedelta(minutes=5):
        return "timestamp_in_future"
    if change.lead_created_at and change.changed_at < change.lead_created_at:
        return "conversion_precedes_lead"
    if now - change.changed_at > LOOKBACK:
        return "expired_event"
    if d.value is not None and not d.currency:
        return "value_without_currency"
    return None


def click_id(attrs: Mapping[str, Any]) -> tuple[str, str] | None:
    """The one click id to send, as (kind, value); gclid wins: it has the most attribution."""
    for kind in ("gclid", "gbraid", "wbraid"):
        if attrs.get(kind):
            return kind, str(attrs[kind])
    return None


def hashed_identifiers(attrs: Mapping[str, Any]) -> dict[str, str]:
    """SHA-256 hex digests by kind ("email", "phone"): the ledger holds no clear text."""
    return {k: attrs[f"{k}_sha256"] for k in ("email", "phone") if attrs.get(f"{k}_sha256")}


def consent_flags(attrs: Mapping[str, Any]) -> dict[str, bool]:
    """Consent recorded in the CRM ("ad_user_data", "ad_personalization"); unknown is left out."""
    return {
        key: bool(attrs[f"consent_{key}"])
        for key in ("ad_user_data", "ad_personalization")
        if attrs.get(f"consent_{key}") is not None
    }


class GoogleAdsDestination:
    name = "google_ads"

    def __init__(
        self, settings: GoogleAdsSettings, *, sleep: Callable[[float], None] | None = None
    ) -> None:
        self._settings = settings
        self._sleep = sleep  # tests skip the backoff waits
        self._client = dm.IngestionServiceClient(
            credentials=_credentials(settings),
            transport="rest",
            client_options={"api_endpoint": settings.datamanager_endpoint},
        )
        # The REST transport is a requests session: pin the CA bundle setting on it.
        pin_ca(self._client.transport._session, settings.datamanager_ca_bundle)  # type: ignore[attr-defined]
        from connector.destinations.conversion_actions import ActionIds, ads_client

        # Actions the mapping names (not ids) are looked up through the Google Ads API.
        self._action_ids = ActionIds(
            settings, lambda: ads_client(settings).get_service("GoogleAdsService"), sleep=sleep
        )

    def close(self) -> None:
        self._client.transport.close()  # type: ignore[no-untyped-call]

    def deliver(self, batch: Sequence[Delivery], *, validate_only: bool = False) -> list[Outcome]:
        outcomes, valid = self._check(batch)
        size = self._settings.batch_size
        for start in range(0, len(valid), size):
            outcomes.extend(self._send(valid[start : start + size], validate_only))
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
        now = utcnow()
        ids, lookup_error = self._action_ids.ids(d.target for d in batch)
        outcomes, valid = [], []
        for d in batch:
            if problem := event_problem(d, now):
                outcomes.append(Outcome(d.id, REJECTED, reason=problem))
            elif d.target not in ids and lookup_error:
                outcomes.append(Outcome(d.id, PENDING, error=lookup_error))
            elif d.target not in ids:
                outcomes.append(Outcome(d.id, REJECTED, reason="unknown_conversion_action"))
            else:
                valid.append(replace(d, target=ids[d.target]))
        return outcomes, valid

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
            return [Outcome(d.id, PENDING, error=str(exc)) for d in batch]
        except gexc.GoogleAPICallError as exc:
            return self._refused(batch, validate_only, exc)
        request_id = response.request_id or None  # validate_only answers without one
        return [Outcome(d.id, DELIVERED, request_id=request_id) for d in batch]

    def _refused(
        self, batch: list[Delivery], validate_only: bool, exc: gexc.GoogleAPICallError
    ) -> list[Outcome]:
        if not _refuses_events(exc):
            # Auth, permission, unknown account: nothing in this batch can go; keep it pending.
            error = f"Data Manager {exc.code}: {exc.message}"
            return [Outcome(d.id, PENDING, error=error) for d in batch]
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
    return isinstance(exc, gexc.BadRequest) or _already_exists(exc)


def _verdict(d: Delivery, exc: gexc.GoogleAPICallError) -> Outcome:
    """One event Google refused: already there (delivered), or invalid (rejected, why)."""
    if _already_exists(exc):
        return Outcome(d.id, DELIVERED)  # Google has it already: count it as delivered
    code = exc.reason or "INVALID_ARGUMENT"
    return Outcome(d.id, REJECTED, reason=f"google_ads: {code}: {_violation(exc)}"[:200])


def _violation(exc: gexc.GoogleAPICallError) -> str:
    """The first field violation Google named ("field: description"), else its message."""
    for detail in exc.details or ():
        if isinstance(detail, dict) and detail.get("fieldViolations"):
            first = detail["fieldViolations"][0]
            return f"{first.get('field', '')}: {first.get('description', '')}"
    return str(exc.message)


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


def _credentials(settings: GoogleAdsSettings, scope: str = SCOPE) -> Credentials:
    if settings.anonymous_credentials:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]  # emulators, proxies
    try:
        if settings.credentials_file is not None:
            from google.oauth2 import service_account

            creds: Credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(settings.credentials_file), scopes=[scope]
            )
            return creds
        import google.auth

        creds, _ = google.auth.default(scopes=[scope])
        return creds
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(
            "Google credentials unusable: set CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE to a "
            "service-account key file, or configure Application Default Credentials "
            f"({type(exc).__name__})"
        ) from None
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError
        raise ConfigError(
            "no Google credentials found: set CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE or "
            f"Application Default Credentials ({type(exc).__name__})"
        ) from None
