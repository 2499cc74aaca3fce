"""Conversion actions named in the mapping, looked up once per run, on both upload paths."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from connector.ledger.schema import deliveries
from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector_sandbox.dataset import sf_datetime
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING

NOW = datetime.now(UTC).replace(microsecond=0)
LEAD = "00Q000000000001AAA"


def tables() -> dict[str, list[dict[str, Any]]]:
    lead = {
        "Id": LEAD,
        "CreatedDate": sf_datetime(NOW - timedelta(days=3)),
        "Status": "MQL",
        "GCLID__c": "Cj0KCQiA-namedActions_123456",
        "Consent_Ad_User_Data__c": "Granted",
        "CurrencyIsoCode": "EUR",
    }
    history = {
        "LeadId": LEAD,
        "Field": "Status",
        "OldValue": "Open",
        "NewValue": "MQL",
        "CreatedDate": sf_datetime(NOW - timedelta(hours=30)),
    }
    return {"Lead": [lead], "LeadHistory": [history]}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tables()) as box:
        yield box


def named(tmp_path: Path, action: str) -> Path:
    text = MAPPING.read_text(encoding="utf-8").replace('"700000001"', f'"{action}"')
    path = tmp_path / "named.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def google_ads_rows(url: str) -> list[dict[str, Any]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(select(deliveries).where(deliveries.c.destination == "google_ads"))
        rows = [dict(r._mapping) for r in found]
    engine.dispose()
    return rows


@pytest.mark.parametrize("upload_api", ["datamanager", "ads_api"])
def test_a_named_action_is_sent_by_its_id(
    sandbox: Sandbox, tmp_path: Path, upload_api: str
) -> None:
    mapping = named(tmp_path, "Marketing qualified lead")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    settings = sandbox.settings(url, mapping, google_ads={"upload_api": upload_api})
    sync(settings, load_mapping(mapping), SyncOptions())
    assert [r["status"] for r in google_ads_rows(url)] == ["delivered"]
    lookups = [q for q in sandbox.google_ads_api.queries if "conversion_action.name" in q]
    assert len(lookups) == 1
    if upload_api == "datamanager":
        assert ("700000001", f"{LEAD}:mql") in sandbox.datamanager.conversions


def test_an_unknown_name_is_rejected_without_any_developer_token(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    mapping = named(tmp_path, "No such action")
    settings = sandbox.settings(url, mapping)
    assert settings.google_ads.developer_token is None
    sync(settings, load_mapping(mapping), SyncOptions())
    assert [r["reason"] for r in google_ads_rows(url)] == ["unknown_conversion_action"]
    assert all("developer-token" not in m for m in sandbox.google_ads_api.metadata)


def test_a_test_access_project_keeps_named_actions_pending_with_the_fix(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    mapping = named(tmp_path, "Marketing qualified lead")
    sandbox.google_ads_api.production_access = False
    sync(sandbox.settings(url, mapping), load_mapping(mapping), SyncOptions())
    (row,) = google_ads_rows(url)
    assert row["status"] == "pending"
    assert "CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION" in row["last_error"]
    assert sandbox.datamanager.requests == 0
