"""Google Ads offline conversions through the Data Manager API (`IngestEvents`).

A request is accepted or rejected as a whole (API-NOTES §1), so every event
is checked here first; sending, splitting a rejected request, retries, field
warnings and request status are the shared Data Manager code
(`connector.destinations.datamanager`), also used by GA4.
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
- transient (RESOURCE_EXHAUSTED, UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED): retried
  here, then left pending;
- a request refused as invalid (INVALID_ARGUMENT): split until the event is found,
  which is rejected with Google's reason code and message;
- ALREADY_EXISTS for one event: it is there already, so delivered;
- CLICK_NOT_FOUND, TOO_RECENT_CLICK, a duplicate transaction id: Data Manager
  has no such synchronous error. They are processing errors that only the
  request status gives, as counts per destination (`request_status`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from google.ads import datamanager_v1 as dm

from connector.core import GOOGLE_ADS, Delivery, Outcome, utcnow
from connector.destinations.base import Capabilities, Plan
from connector.destinations.datamanager import (
    CONSENT,
    IDENTIFIER_FIELD,
    SCOPE,
    DataManager,
    ViaDataManager,
)
from connector.destinations.google_ads import adjustments
from connector.destinations.google_ads.actions import ActionIds, sendable
from connector.destinations.google_ads.ads_api import ads_client
from connector.destinations.google_ads.auth import credentials
from connector.destinations.google_ads.eligibility import (
    click_id,
    consent_flags,
    hashed_identifiers,
)
from connector.ledger import Ledger
from connector.settings import GoogleAdsSettings


class DataManagerDestination(ViaDataManager):
    """Google Ads offline conversions through the Data Manager API."""

    name = GOOGLE_ADS

    def __init__(
        self, settings: GoogleAdsSettings, *, sleep: Callable[[float], None] | None = None
    ) -> None:
        self._settings = settings
        self._api = DataManager(
            self.name,
            endpoint=settings.datamanager_endpoint,
            ca_bundle=settings.datamanager_ca_bundle,
            credentials=credentials(settings, SCOPE),
            timeout=settings.timeout_seconds,
            batch_size=settings.batch_size,
            concurrency=settings.max_concurrency,
            requests_per_minute=settings.requests_per_minute,
            sleep=sleep,
            credentials_setting="CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE",
            ca_setting="CONNECTOR_GOOGLE_ADS__DATAMANAGER_CA_BUNDLE",
            account=f"Google Ads account {settings.operating_account_id}",
        )
        # Actions the mapping names (not ids) are looked up through the Google Ads API.
        self._action_ids = ActionIds(
            settings, lambda: ads_client(settings).get_service("GoogleAdsService"), sleep=sleep
        )
        # A call takes as many requests as may be in the air at once.
        self.capabilities = Capabilities(
            batch_size=settings.batch_size * settings.max_concurrency,
            request_status=True,
            deduplicates=True,
            whole_requests=settings.batch_size,
        )

    def plan(self, ledger: Ledger, wave: Sequence[Delivery]) -> Plan:
        self._api.bind(ledger)
        return adjustments.plan(ledger, wave)

    def _ready(self, batch: Sequence[Delivery]) -> tuple[list[Outcome], list[Delivery]]:
        """Outcomes for what cannot go, and the rest with their conversion action ids."""
        outcomes, valid = sendable(batch, self._action_ids, utcnow())
        return outcomes, [replace(d, target=action_id) for d, action_id in valid]

    def _request(self, batch: list[Delivery], validate_only: bool) -> dm.IngestEventsRequest:
        actions = sorted({d.target for d in batch})
        # Built as plain protobuf messages and wrapped once: proto-plus wrappers per field
        # cost ten times as much, for 2,000 events a request.
        request = dm.IngestEventsRequest.pb()(
            destinations=[dm.Destination.pb(self._destination(action)) for action in actions],
            events=[_event(d) for d in batch],
            encoding=dm.Encoding.HEX,
            validate_only=validate_only,
        )
        wrapped: dm.IngestEventsRequest = dm.IngestEventsRequest.wrap(request)
        return wrapped

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


def _event(d: Delivery) -> Any:
    """One event as the plain protobuf message (`dm.Event.pb()`)."""
    attrs = d.change.attributes
    event = _EVENT(
        destination_references=[_reference(d.target)],
        transaction_id=d.change.transaction_id,
        event_source=dm.EventSource.OTHER,
    )
    event.event_timestamp.FromDatetime(d.change.changed_at)
    if click := click_id(attrs):
        setattr(event.ad_identifiers, click[0], click[1])
    for kind, digest in hashed_identifiers(attrs).items():
        event.user_data.user_identifiers.add(**{IDENTIFIER_FIELD[kind]: digest})
    for key, granted in consent_flags(attrs).items():
        setattr(event.consent, key, CONSENT[granted])
    if d.change.retraction:
        # No retraction in Data Manager: the nearest is a value restated to 0 (module doc).
        event.conversion_value = 0.0
    elif d.value is not None and d.currency:
        event.conversion_value = d.value
        event.currency = d.currency
    if d.change.retraction or d.change.restatement:
        event.last_updated_timestamp.FromDatetime(d.change.changed_at)
    return event


_EVENT = dm.Event.pb()
