"""Analytics fixtures: the MP and Data API emulators, real clients over TLS, a ledger."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from connector.analytics import GA4Data
from connector.core import Mapped, StageChange, Target
from connector.destinations.ga4.measurement_protocol import GA4Destination
from connector.ledger import Ledger
from connector.mapping.rules import load_mapping
from connector.settings import GA4Settings
from connector_sandbox.ga4 import GA4Emulator
from connector_sandbox.ga4_data import GA4DataEmulator
from connector_sandbox.tls import sandbox_ca
from tests.conftest import MAPPING

MEASUREMENT_ID = "G-RECON00001"
SECRET = "recon-secret"
PROPERTY_ID = "987654321"
NOW = datetime.now(UTC).replace(microsecond=0)
SINCE, UNTIL = (NOW - timedelta(days=3)).date(), NOW.date()  # a window around NOW


@pytest.fixture(scope="session")
def _servers() -> Iterator[tuple[GA4Emulator, GA4DataEmulator]]:
    # One pair per session: stopping a server waits out its poll interval.
    mp = GA4Emulator(measurement_id=MEASUREMENT_ID, api_secret=SECRET)
    with mp, GA4DataEmulator(mp, property_id=PROPERTY_ID) as data:
        yield mp, data


@pytest.fixture
def mp(_servers: tuple[GA4Emulator, GA4DataEmulator]) -> GA4Emulator:
    _servers[0].reset()
    return _servers[0]


@pytest.fixture
def data_emulator(
    _servers: tuple[GA4Emulator, GA4DataEmulator], mp: GA4Emulator
) -> GA4DataEmulator:
    _servers[1].reset()
    return _servers[1]


def settings_for(mp: GA4Emulator, data: GA4DataEmulator, **overrides: object) -> GA4Settings:
    values: dict[str, object] = {
        "measurement_id": MEASUREMENT_ID,
        "api_secret": SECRET,
        "mp_base_url": mp.url,
        "ca_bundle": sandbox_ca().bundle_path,
        "property_id": PROPERTY_ID,
        "data_api_endpoint": data.url,
        "data_api_ca_bundle": sandbox_ca().bundle_path,
        "anonymous_credentials": True,
    }
    values.update(overrides)
    return GA4Settings.model_validate(values)


@pytest.fixture
def client(mp: GA4Emulator, data_emulator: GA4DataEmulator) -> Iterator[GA4Data]:
    with GA4Data(settings_for(mp, data_emulator)) as ga4_data:
        yield ga4_data


@pytest.fixture
def ledger(state_url: str) -> Ledger:
    return Ledger.open(state_url)  # SQLite, and PostgreSQL when CI provides one


def change(lead: str, event: str, hours_ago: float, client_id: str = "111.222") -> Mapped:
    """A lead stage change bound for GA4 as `event`."""
    at = NOW - timedelta(hours=hours_ago)
    stage_change = StageChange(
        lead_id=lead,
        crm_status=event.upper(),
        stage=event,
        changed_at=at,
        source_record_id=f"017{lead}{event}",
        lead_created_at=at - timedelta(days=1),
        attributes={"ga_client_id": client_id, "lead_source": "Web"},
    )
    return Mapped(stage_change, [Target("ga4", event, 50.0, "EUR")])


def deliver(
    ledger: Ledger, settings: GA4Settings, changes: list[Mapped], too_old: str = "skip"
) -> None:
    """Record the changes and send them with the real Measurement Protocol sender."""
    ledger.changes.record(ledger.runs.start(), changes, "test", NOW)
    mapping = load_mapping(MAPPING).model_copy(update={"ga4_too_old": too_old})
    destination = GA4Destination(settings, too_old=mapping.ga4_too_old)
    try:
        ledger.queue.settle(destination.deliver(ledger.queue.pending("ga4")))
    finally:
        destination.close()
