"""`connector check --online` in process: GA4 on Data Manager, and the advice to move there."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.check import CheckResult, online_checks
from connector.mapping.rules import load_mapping
from connector_sandbox.dataset import generate
from connector_sandbox.stack import Sandbox
from connector_sandbox.tls import sandbox_ca
from tests.conftest import MAPPING

PROPERTY = "123456789"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    tables = generate(n_leads=20, seed=5, now=datetime.now(UTC).replace(microsecond=0)).tables()
    with Sandbox(tables) as box:
        yield box


def ga4_on_datamanager(box: Sandbox, **extra: Any) -> dict[str, Any]:
    return {
        "property_id": PROPERTY,
        "datamanager_endpoint": box.datamanager.endpoint,
        "datamanager_ca_bundle": sandbox_ca().bundle_path,
        "anonymous_credentials": True,
        **extra,
    }


def checks(box: Sandbox, tmp_path: Path, ga4: dict[str, Any]) -> dict[str, CheckResult]:
    settings = box.settings(f"sqlite:///{tmp_path / 's.db'}", MAPPING, ga4=ga4)
    return {c.name: c for c in online_checks(settings, load_mapping(MAPPING))}


def test_ga4_samples_are_validated_by_data_manager_on_that_path(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.datamanager.reset()
    found = checks(sandbox, tmp_path, ga4_on_datamanager(sandbox, upload_api="datamanager"))
    assert found["ga4 qualify_lead"].status == "ok"
    assert "ga4 upload path" not in found
    assert found["google_ads developer token"].status == "ok"
    assert sandbox.datamanager.ga4_events == []  # validate_only: nothing ingested
    assert sandbox.datamanager.validated_requests >= 2  # GA4's sample and Google Ads' ones


def test_the_data_manager_path_is_recommended_when_the_credentials_allow_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    advice = checks(sandbox, tmp_path, ga4_on_datamanager(sandbox))["ga4 upload path"]
    assert advice.status == "warn" and "CONNECTOR_GA4__UPLOAD_API=datamanager" in advice.detail
    without_property = checks(sandbox, tmp_path, {})["ga4 upload path"]
    assert without_property.status == "ok"
    assert "CONNECTOR_GA4__PROPERTY_ID" in without_property.detail
