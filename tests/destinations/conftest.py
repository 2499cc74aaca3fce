"""The Data Manager emulator and a Google Ads destination on it, shared by the destination tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector.destinations.google_ads.datamanager import DataManagerDestination
from connector.settings import GoogleAdsSettings
from connector_sandbox.datamanager import DataManagerEmulator
from connector_sandbox.tls import sandbox_ca

ACCOUNT = "1234567890"


@pytest.fixture(scope="module")
def _shared() -> Iterator[DataManagerEmulator]:
    with DataManagerEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(_shared: DataManagerEmulator) -> DataManagerEmulator:
    _shared.reset()
    return _shared


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def destination(
    emulator: DataManagerEmulator, sleeps: list[float]
) -> Iterator[DataManagerDestination]:
    dest = make_destination(emulator, sleeps)
    yield dest
    dest.close()


def make_destination(
    emulator: DataManagerEmulator, sleeps: list[float] | None = None, **extra: Any
) -> DataManagerDestination:
    """Google Ads on `emulator` (its gRPC endpoint, the test CA pinned, no credentials), with
    `extra` settings; backoff waits go to `sleeps` instead of passing."""
    settings = GoogleAdsSettings.model_validate(
        {
            "operating_account_id": ACCOUNT,
            "datamanager_endpoint": emulator.endpoint,
            "datamanager_ca_bundle": sandbox_ca().bundle_path,
            "anonymous_credentials": True,
            **extra,
        }
    )
    return DataManagerDestination(settings, sleep=(sleeps if sleeps is not None else []).append)
