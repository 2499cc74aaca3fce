"""Bad input, one table per class (issue #17): what can never work stops at load with exit 2
and the fix; what only one row gets wrong is that row's reason; nothing private leaves.

Data kinds run a sync against the emulators and assert on the ledger and on what the
emulators received; mapping and configuration kinds run `connector check` (typer's
CliRunner, settings from the environment, in an empty working directory).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from connector.cli import app
from connector.ledger.schema import deliveries, metadata, stage_changes
from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector_sandbox import stack
from connector_sandbox.dataset import generate, sf_datetime, sf_id
from connector_sandbox.stack import Sandbox
from connector_sandbox.tls import sandbox_ca
from tests.conftest import MAPPING, REPO
from tests.sandbox_env import sandbox_env

NOW = datetime.now(UTC).replace(microsecond=0)
SECRETS = [stack.SF_PASSWORD, stack.SF_TOKEN, stack.SF_CLIENT_SECRET, stack.GA4_SECRET]

# --------------------------------------------------------------------------- data kinds


@dataclass(frozen=True)
class DataCase:
    name: str
    lead: dict[str, Any]  # Lead fields over a clean lead with a gclid and a GA client id
    problems: dict[str, str]  # expected in the MQL change's problems
    outcomes: dict[str, tuple[str, str | None]]  # destination -> (status, reason)
    clear: list[str] = field(default_factory=list)  # must appear nowhere: ledger, requests


CLEAN = {
    "Email": "jane.doe@acme.example",
    "Phone": "+49 621 53399982",
    "GCLID__c": "Cj0KCQiA-cleanLead_0123456789abcdef",
    "GA_Client_ID__c": "123456789.1700000000",
    "LeadSource": "Web",
    "UTM_Source__c": "google",
    "UTM_Medium__c": "cpc",
    "UTM_Campaign__c": "spring",
    "Consent_Ad_User_Data__c": "Granted",
    "Consent_Ad_Personalization__c": "Granted",
}
DELIVERED = ("delivered", None)
DATA_CASES = [
    DataCase("clean", {}, {}, {"ga4": DELIVERED, "google_ads": DELIVERED}),
    DataCase(
        "email with a trailing dot, nothing else to match",
        {"Email": "bob@acme.example.", "Phone": None, "GCLID__c": None},
        {"email": "invalid_email"},
        {"ga4": DELIVERED, "google_ads": ("skipped", "no_identifier")},
    ),
    DataCase(
        "a merely possible phone number",
        {"Email": None, "Phone": "12", "GCLID__c": None},
        {"phone": "invalid_phone"},
        {"ga4": DELIVERED, "google_ads": ("skipped", "no_identifier")},
    ),
    DataCase(
        "an email typed into a UTM field",
        {"UTM_Source__c": "carol.secret@acme.example"},
        {"utm_source": "pii_redacted"},
        {"ga4": DELIVERED, "google_ads": DELIVERED},
        clear=["carol.secret@acme.example"],
    ),
    DataCase(
        "a phone number as LeadSource",
        {"LeadSource": "+49 30 12345678"},
        {"lead_source": "pii_redacted"},
        {"ga4": DELIVERED, "google_ads": DELIVERED},
        clear=["+49 30 12345678"],
    ),
    DataCase(
        "an email as GA client id",
        {"GA_Client_ID__c": "dave.private@acme.example"},
        {"ga_client_id": "pii_redacted"},
        {"ga4": ("skipped", "pii_redacted"), "google_ads": DELIVERED},
        clear=["dave.private@acme.example"],
    ),
    DataCase(
        "a consent value the mapping does not list",
        {"Consent_Ad_User_Data__c": "Opted in"},
        {"consent_ad_user_data": "unknown_consent_value"},
        {"ga4": DELIVERED, "google_ads": DELIVERED},
    ),
]


def _tables() -> dict[str, list[dict[str, Any]]]:
    """One lead per case, each turned MQL an hour ago (inside GA4's 72 hours)."""
    template = generate(n_leads=1, seed=5, now=NOW).tables()["Lead"][0]
    created, changed = sf_datetime(NOW - timedelta(days=2)), sf_datetime(NOW - timedelta(hours=1))
    leads, history = [], []
    for n, case in enumerate(DATA_CASES, start=1):
        lead_id = sf_id("00Q", 9_000 + n)
        lead = template | CLEAN | case.lead
        leads.append(lead | {"Id": lead_id, "Status": "MQL", "CreatedDate": created})
        leads[-1]["SystemModstamp"] = changed
        history.append(
            {
                "Id": sf_id("017", 9_000 + n),
                "LeadId": lead_id,
                "Field": "Status",
                "OldValue": "Open",
                "NewValue": "MQL",
                "CreatedDate": changed,
                "IsDeleted": False,
            }
        )
    return {"Lead": leads, "LeadHistory": history}


@dataclass(frozen=True)
class DataRun:
    box: Sandbox
    state_url: str
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def data_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataRun]:
    state = tmp_path_factory.mktemp("bad-data")
    state_url = f"sqlite:///{state / 'connector.db'}"
    with Sandbox(_tables()) as box:
        summary = sync(box.settings(state_url, MAPPING), load_mapping(MAPPING), SyncOptions())
        yield DataRun(box, state_url, summary.as_dict())


def _rows(state_url: str) -> dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """lead id -> (its MQL change, its deliveries by destination)."""
    engine = create_engine(state_url)
    with engine.connect() as conn:
        changes = {r.id: dict(r._mapping) for r in conn.execute(select(stage_changes))}
        found: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {}
        for change in changes.values():
            found[change["lead_id"]] = (change, {})
        for row in conn.execute(select(deliveries)):
            found[changes[row.change_id]["lead_id"]][1][row.destination] = dict(row._mapping)
    engine.dispose()
    return found


def _ledger_text(state_url: str) -> str:
    engine = create_engine(state_url)
    with engine.connect() as conn:
        text = "".join(
            json.dumps([list(r) for r in conn.execute(select(t))], default=str)
            for t in metadata.sorted_tables
        )
    engine.dispose()
    return text


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda c: c.name)
def test_bad_data_gets_its_reason_per_row(data_run: DataRun, case: DataCase) -> None:
    lead_id = sf_id("00Q", 9_000 + DATA_CASES.index(case) + 1)
    change, by_destination = _rows(data_run.state_url)[lead_id]
    assert change["problems"] == case.problems
    for destination, (status, reason) in case.outcomes.items():
        row = by_destination[destination]
        assert (row["status"], row["reason"]) == (status, reason), destination


@pytest.mark.parametrize("case", [c for c in DATA_CASES if c.clear], ids=lambda c: c.name)
def test_redacted_values_are_neither_stored_nor_sent(data_run: DataRun, case: DataCase) -> None:
    sent = data_run.box.ga4.received_bodies + data_run.box.datamanager.received_bodies
    for value in case.clear:
        assert value not in _ledger_text(data_run.state_url)
        assert all(value not in body for body in sent)
        assert value not in json.dumps(data_run.summary)


def test_no_clear_email_or_phone_is_stored_or_sent(data_run: DataRun) -> None:
    sent = data_run.box.ga4.received_bodies + data_run.box.datamanager.received_bodies
    stored = _ledger_text(data_run.state_url)
    clear = [CLEAN["Email"], CLEAN["Phone"], "bob@acme.example.", "4962153399982"]
    for value in clear:
        assert value not in stored
        assert all(value not in body for body in sent)


def test_the_summary_counts_each_rows_problems(data_run: DataRun) -> None:
    counted = data_run.summary["row_problems"]
    for code in ("invalid_email", "invalid_phone", "unknown_consent_value"):
        assert counted[code] == 1
    assert counted["pii_redacted"] == 3


# --------------------------------------------------------------------------- configuration


def base_env(tmp_path: Path) -> dict[str, str]:
    """A complete offline configuration (an existing session: check logs in nowhere)."""
    return {
        "CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "CONNECTOR_MAPPING_PATH": str(MAPPING),
        "CONNECTOR_SALESFORCE__SESSION_ID": "00Dxx!session",
        "CONNECTOR_SALESFORCE__INSTANCE_URL": "https://acme.my.salesforce.com",
        "CONNECTOR_SALESFORCE__CA_BUNDLE": str(sandbox_ca().bundle_path),
        "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID": "987-654-3210",
        "CONNECTOR_GA4__MEASUREMENT_ID": "G-ACME12345",
        "CONNECTOR_GA4__API_SECRET": "ga4-secret-value",
    }


@dataclass(frozen=True)
class ConfigCase:
    name: str
    env: dict[str, str]
    exit_code: int
    says: list[str]  # each must be in the output


NOT_UTF8 = "not-utf8.yaml"
CONFIG_CASES = [
    ConfigCase("complete", {}, 0, ["configuration ok"]),
    ConfigCase(
        "GA4 over plain HTTP",
        {"CONNECTOR_GA4__MP_BASE_URL": "http://www.google-analytics.com"},
        2,
        ["CONNECTOR_GA4__MP_BASE_URL", "https://"],
    ),
    ConfigCase(
        "Data Manager over plain HTTP",
        {"CONNECTOR_GOOGLE_ADS__DATAMANAGER_ENDPOINT": "http://datamanager.googleapis.com"},
        2,
        ["CONNECTOR_GOOGLE_ADS__DATAMANAGER_ENDPOINT", "https://"],
    ),
    ConfigCase(
        "Data Manager as a bare gRPC target",
        {"CONNECTOR_GOOGLE_ADS__DATAMANAGER_ENDPOINT": "datamanager.googleapis.com:443"},
        0,
        ["configuration ok"],
    ),
    ConfigCase(
        "Data Manager with a path",
        {"CONNECTOR_GA4__DATAMANAGER_ENDPOINT": "https://datamanager.googleapis.com/v1"},
        2,
        ["CONNECTOR_GA4__DATAMANAGER_ENDPOINT", "without a path"],
    ),
    ConfigCase(
        "Data Manager on a port that is none",
        {"CONNECTOR_GOOGLE_ADS__DATAMANAGER_ENDPOINT": "localhost:0"},
        2,
        ["CONNECTOR_GOOGLE_ADS__DATAMANAGER_ENDPOINT", "port"],
    ),
    ConfigCase(
        "a gRPC target with a scheme",
        {"CONNECTOR_GOOGLE_ADS__API_ENDPOINT": "http://googleads.googleapis.com"},
        2,
        ["CONNECTOR_GOOGLE_ADS__API_ENDPOINT", "host:port"],
    ),
    ConfigCase(
        "the Data API over plain HTTP",
        {"CONNECTOR_GA4__DATA_API_ENDPOINT": "http://analyticsdata.googleapis.com"},
        2,
        ["CONNECTOR_GA4__DATA_API_ENDPOINT", "https://"],
    ),
    ConfigCase(
        "a 9-digit customer id",
        {"CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID": "123-456-789"},
        2,
        ["CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID", "10 digits"],
    ),
    ConfigCase(
        "a CA bundle that does not exist",
        {"CONNECTOR_SALESFORCE__CA_BUNDLE": "/nonexistent/ca.pem"},
        2,
        ["CONNECTOR_SALESFORCE__CA_BUNDLE", "does not exist"],
    ),
    ConfigCase(
        "a CA bundle that holds no certificate",
        {"CONNECTOR_GA4__CA_BUNDLE": str(MAPPING)},
        2,
        ["CONNECTOR_GA4__CA_BUNDLE", "is not a PEM bundle of CA certificates"],
    ),
    ConfigCase(
        "a mapping path that is a directory",
        {"CONNECTOR_MAPPING_PATH": str(REPO / "mappings")},
        2,
        ["is a directory", "CONNECTOR_MAPPING_PATH"],
    ),
    ConfigCase(
        "a mapping file that is not UTF-8",
        {"CONNECTOR_MAPPING_PATH": NOT_UTF8},
        2,
        ["is not UTF-8", "CONNECTOR_MAPPING_PATH"],
    ),
    ConfigCase(
        "a placeholder copied from .env.example",
        {"CONNECTOR_GA4__API_SECRET": "change-me", "CONNECTOR_GA4__MEASUREMENT_ID": "G-XXXXXXXXXX"},
        2,
        ["CONNECTOR_GA4__API_SECRET still holds", "CONNECTOR_GA4__MEASUREMENT_ID still holds"],
    ),
    ConfigCase(
        "a misspelled variable",
        {"CONNECTOR_SALESFORCE__USRENAME": "someone@acme.example"},
        2,
        ["CONNECTOR_SALESFORCE__USRENAME is not a setting", "CONNECTOR_SALESFORCE__USERNAME?"],
    ),
    ConfigCase(
        "empty values mean unset",
        {"CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE": "", "CONNECTOR_GA4__CA_BUNDLE": ""},
        0,
        ["configuration ok"],
    ),
    ConfigCase(
        "choices in any case",
        {
            "CONNECTOR_LOG_LEVEL": "info",
            "CONNECTOR_LOG_FORMAT": "JSON",
            "CONNECTOR_GOOGLE_ADS__UPLOAD_API": "Ads_API",
        },
        0,
        ["configuration ok"],
    ),
]


def run_check(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in [n for n in os.environ if n.startswith("CONNECTOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env of the repository's
    (tmp_path / NOT_UTF8).write_bytes(
        MAPPING.read_bytes().replace(b"Lead Status", b"Lead St\xe4tus")
    )
    return CliRunner().invoke(app, ["check"], env=env)


def assert_no_secret(output: str) -> None:
    for secret in [*SECRETS, "ga4-secret-value", "00Dxx!session"]:
        assert secret not in output


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.name)
def test_bad_configuration_exits_2_naming_the_setting(
    case: ConfigCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_check(tmp_path, base_env(tmp_path) | case.env, monkeypatch)
    output = result.output + result.stderr
    assert result.exit_code == case.exit_code, output
    for text in case.says:
        assert text in output
    assert "Traceback" not in output
    assert_no_secret(output)


def test_a_copied_env_example_names_every_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = (REPO / ".env.example").read_text()
    # The example's key files, where it points them: stand-ins (their paths must exist).
    for secret in ("salesforce-jwt.key", "google-service-account.json"):
        (tmp_path / secret).write_text("stand-in", encoding="utf-8")
    example = example.replace("/etc/connector/secrets/", f"{tmp_path}/")
    (tmp_path / ".env").write_text(example.replace("mappings/salesforce.yaml", str(MAPPING)))
    result = run_check(tmp_path, {"CONNECTOR_MAPPING_PATH": str(MAPPING)}, monkeypatch)
    output = result.output + result.stderr
    assert result.exit_code == 2, output
    for name in ("SALESFORCE__USERNAME", "GA4__API_SECRET", "GA4__MEASUREMENT_ID"):
        assert f"CONNECTOR_{name} still holds" in output
    assert "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID still holds" in output
    assert "directory" not in output.lower() and "Traceback" not in output


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class MappingCase:
    name: str
    old: str  # replaced in the shipped mapping
    new: str
    says: list[str]


MAPPING_CASES = [
    MappingCase(
        "a reserved GA4 event",
        "{event: qualify_lead,",
        "{event: session_start,",
        ["stages.MQL.ga4.event", "'session_start' is reserved by GA4"],
    ),
    MappingCase(
        "a reserved GA4 prefix",
        "{event: working_lead,",
        "{event: google_working_lead,",
        ["stages.SQL.ga4.event", "reserved by GA4"],
    ),
    MappingCase(
        "a default currency that is no currency",
        "default_currency: EUR",
        "default_currency: XXX",
        ["default_currency", "'XXX' is not a currency"],
    ),
    MappingCase(
        "a value currency that is no currency",
        "value: {fixed: 50}}\n    google_ads",
        "value: {fixed: 50, currency: EUX}}\n    google_ads",
        ["stages.MQL.ga4.value.currency", "'EUX' is not a currency"],
    ),
]


@pytest.mark.parametrize("case", MAPPING_CASES, ids=lambda c: c.name)
def test_a_mapping_that_can_never_work_exits_2_with_the_fix(
    case: MappingCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = MAPPING.read_text()
    assert case.old in shipped
    path = tmp_path / "mapping.yaml"
    path.write_text(shipped.replace(case.old, case.new, 1))
    env = base_env(tmp_path) | {"CONNECTOR_MAPPING_PATH": str(path)}
    result = run_check(tmp_path, env, monkeypatch)
    output = result.output + result.stderr
    assert result.exit_code == 2, output
    for text in case.says:
        assert text in output
    assert "Traceback" not in output


def test_a_mapped_field_the_org_lacks_stops_sync_with_exit_2_naming_it(
    data_run: DataRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = data_run.box
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING.read_text().replace("UTM_Source__c", "UTM_Src__c"))
    env = sandbox_env(box, f"sqlite:///{tmp_path / 'state.db'}", mapping=path, google_ads=False)
    for name in [n for n in os.environ if n.startswith("CONNECTOR_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sync", "--json"], env=env)
    output = result.output + result.stderr
    assert result.exit_code == 2, output
    assert "no field 'UTM_Src__c' on Lead (INVALID_FIELD)" in output
    assert "SELECT" not in output and "Traceback" not in output
    assert_no_secret(output)
