"""GA4 lead events through the Data Manager API (`IngestEvents` to a GA4 property).

The destination is the property (`GOOGLE_ANALYTICS_PROPERTY`, the property id)
and its web stream (the measurement id as `product_destination_id`), with
OAuth credentials instead of an api_secret (API-NOTES §0). Unlike
`/mp/collect`, Google validates each request and refuses a bad one: the
shared Data Manager code (`connector.destinations.datamanager`) splits it to
set the bad events aside, retries, keeps the field warnings and checks the
request status on the next run, exactly as for Google Ads.

Each event carries `event_name`, `client_id`, the lead id as `user_id` and
hashed user data only when the mapping asks (`events`), its parameters
(`value` / `currency` as the event's own fields, the rest as
`additional_event_parameters`), `event_timestamp` and consent. No transaction
id: multi-source events with one are allowlisted, and GA4 does not dedup by it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from google.ads import datamanager_v1 as dm

from connector.core import GA4, Delivery, Outcome, utcnow
from connector.destinations.base import Capabilities, Plan
from connector.destinations.datamanager import (
    CONSENT,
    IDENTIFIER_FIELD,
    MAX_EVENTS,
    SCOPE,
    DataManager,
    ViaDataManager,
)
from connector.destinations.ga4.events import GA4Event, GA4Extras, prepare
from connector.google_api import google_credentials
from connector.ledger import Ledger
from connector.settings import GA4Settings

_PROPERTY = dm.ProductAccount.AccountType.GOOGLE_ANALYTICS_PROPERTY
_OWN_FIELDS = ("value", "currency")  # Event fields of their own, not additional parameters


class GA4DataManagerDestination(ViaDataManager):
    """GA4 lead events through the Data Manager API."""

    name = GA4
    capabilities = Capabilities(batch_size=MAX_EVENTS, request_status=True)

    def __init__(
        self,
        settings: GA4Settings,
        *,
        too_old: str = "skip",
        extras: GA4Extras | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._settings = settings
        self._too_old = too_old
        self._extras = extras or GA4Extras()
        self._events: dict[int, GA4Event] = {}  # the checked events of the current batch
        self._api = DataManager(
            self.name,
            endpoint=settings.datamanager_endpoint,
            ca_bundle=settings.datamanager_ca_bundle,
            credentials=google_credentials(
                anonymous=settings.anonymous_credentials,
                credentials_file=settings.credentials_file,
                scope=SCOPE,
                group="ga4",
            ),
            timeout=settings.timeout_seconds,
            sleep=sleep,
            credentials_setting="CONNECTOR_GA4__CREDENTIALS_FILE",
            ca_setting="CONNECTOR_GA4__DATAMANAGER_CA_BUNDLE",
            account=f"GA4 property {settings.property_id}",
        )

    def plan(self, ledger: Ledger, wave: Sequence[Delivery]) -> Plan:
        self._api.bind(ledger)
        return Plan(list(wave), [])  # GA4 has no adjustments: every event stands alone

    def _ready(self, batch: Sequence[Delivery]) -> tuple[list[Outcome], list[Delivery]]:
        outcomes, events = prepare(batch, utcnow(), too_old=self._too_old, extras=self._extras)
        self._events = {e.delivery.id: e for e in events}
        return outcomes, [e.delivery for e in events]

    def _request(self, batch: list[Delivery], validate_only: bool) -> dm.IngestEventsRequest:
        events = [_event(self._events[d.id]) for d in batch]
        hashed = any(e.user_data.user_identifiers for e in events)
        return dm.IngestEventsRequest(
            destinations=[self._destination()],
            events=events,
            encoding=dm.Encoding.HEX if hashed else dm.Encoding.ENCODING_UNSPECIFIED,
            validate_only=validate_only,
        )

    def _destination(self) -> dm.Destination:
        s = self._settings
        account = dm.ProductAccount(account_id=s.property_id, account_type=_PROPERTY)
        return dm.Destination(operating_account=account, product_destination_id=s.measurement_id)


def _event(e: GA4Event) -> dm.Event:
    event = dm.Event(
        event_name=e.name,
        client_id=e.client_id,
        event_timestamp=e.at or utcnow(),
        additional_event_parameters=[
            dm.EventParameter(parameter_name=k, value=str(v))
            for k, v in e.params.items()
            if k not in _OWN_FIELDS
        ],
    )
    if "value" in e.params:
        event.conversion_value = float(e.params["value"])
        event.currency = str(e.params["currency"])
    if e.user_id:
        event.user_id = e.user_id
    if e.user_data:
        event.user_data = dm.UserData(
            user_identifiers=[
                dm.UserIdentifier(**{IDENTIFIER_FIELD[kind]: digest})
                for kind, digest in e.user_data.items()
            ]
        )
    if consent := {key: CONSENT[granted] for key, granted in e.consent.items()}:
        event.consent = dm.Consent(**consent)
    return event
