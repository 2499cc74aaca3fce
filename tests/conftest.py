"""Shared fixtures: state stores (SQLite, and PostgreSQL when CI provides one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from simple_salesforce.api import Salesforce
from sqlalchemy import create_engine, text

from connector.source.auth import connect
from connector_sandbox.salesforce import SalesforceEmulator
from connector_sandbox.tls import trust_test_ca_for_grpc

REPO = Path(__file__).resolve().parent.parent
MAPPING = REPO / "mappings" / "salesforce.yaml"
POSTGRES_URL = os.environ.get("CONNECTOR_TEST_POSTGRES_URL")

# gRPC reads its root bundle once per process: point it at the test CA before any channel.
trust_test_ca_for_grpc()


def _postgres_database(options: str = "") -> Iterator[str]:
    assert POSTGRES_URL
    name = f"connector_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" {options}'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state store URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'connector.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("CONNECTOR_TEST_POSTGRES_URL not set (.ci/run starts a PostgreSQL server)")
    yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'connector.db'}"


# The Salesforce emulator and a logged-in client for the modules that read an org of their own:
# such a module defines `org()` (its tables); modules with another emulator define their own
# `emulator` fixture, which wins over this one.
@pytest.fixture(scope="module")
def salesforce_server(request: pytest.FixtureRequest) -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator(request.module.org()) as emulator:
        yield emulator


@pytest.fixture(name="emulator")
def salesforce_emulator(salesforce_server: SalesforceEmulator) -> SalesforceEmulator:
    salesforce_server.reset()
    return salesforce_server


@pytest.fixture(name="client")
def salesforce_client(emulator: SalesforceEmulator) -> Salesforce:
    return connect(emulator.login_settings())  # the product's login: pinned CA, instance URL
