"""The Salesforce emulator driven by the real simple_salesforce client over TLS (no mocks)."""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from simple_salesforce.format import format_soql

from connector_sandbox import tls
from connector_sandbox.dataset import SalesforceData, generate, sf_id
from connector_sandbox.faults import Fault
from connector_sandbox.salesforce import SalesforceEmulator, certificate_pem

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
USERNAME = "demo@example.com"
PASSWORD_GRANT = {
    "grant_type": "password",
    "client_id": "demo-client-id",
    "client_secret": "demo-client-secret",
    "username": USERNAME,
    "password": "demo-password" + "demo-token",
}
STATUS_HISTORY = "SELECT Id, LeadId, NewValue, CreatedDate FROM LeadHistory WHERE Field = 'Status'"


@pytest.fixture(scope="module")
def data() -> SalesforceData:
    return generate(n_leads=3000, seed=7, now=NOW)


@pytest.fixture(scope="module")
def _server(data: SalesforceData) -> Iterator[SalesforceEmulator]:
    # One server per module: stopping one waits out serve_forever's poll interval.
    with SalesforceEmulator(data.tables()) as emu:
        yield emu


@pytest.fixture
def emulator(_server: SalesforceEmulator) -> SalesforceEmulator:
    _server.reset()
    return _server


def http_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the machine's REQUESTS_CA_BUNDLE would override verify
    session.verify = str(tls.sandbox_ca().bundle_path)
    return session


def token_response(emu: SalesforceEmulator, **form: str) -> requests.Response:
    return http_session().post(f"{emu.url}/services/oauth2/token", data=form, timeout=5)


def connect(emu: SalesforceEmulator) -> Salesforce:
    token = token_response(emu, **PASSWORD_GRANT).json()
    session = http_session()
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=session,
        version="62.0",
    )


@pytest.fixture
def sf(emulator: SalesforceEmulator) -> Salesforce:
    return connect(emulator)


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def error_code(exc: pytest.ExceptionInfo[Any]) -> str:
    return str(exc.value.content[0]["errorCode"])


# --------------------------------------------------------------------------- OAuth


def test_password_grant_returns_a_session_for_this_instance(emulator: SalesforceEmulator) -> None:
    response = token_response(emulator, **PASSWORD_GRANT)
    assert response.status_code == 200
    body = response.json()
    assert body["instance_url"] == emulator.url
    assert body["token_type"] == "Bearer"
    assert {"access_token", "id", "issued_at", "signature"} <= body.keys()


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"password": "demo-password"}, "invalid_grant"),  # security token missing
        ({"username": "someone@example.com"}, "invalid_grant"),
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "wrong"}, "invalid_client_id"),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
    ],
)
def test_bad_credentials_are_refused(
    emulator: SalesforceEmulator, override: dict[str, str], error: str
) -> None:
    response = token_response(emulator, **(PASSWORD_GRANT | override))
    assert response.status_code == 400
    assert response.json()["error"] == error
    if error == "invalid_grant":
        assert response.json()["error_description"] == "authentication failure"


JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
APP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
GOOD_CLAIMS = {"iss": "demo-client-id", "sub": USERNAME, "aud": "https://login.salesforce.com"}


def signed_jwt(claims: dict[str, Any], key: rsa.RSAPrivateKey = APP_KEY) -> str:
    return jwt.encode({"exp": int(time.time()) + 180, **claims}, key, algorithm="RS256")


@pytest.mark.parametrize(
    ("assertion", "error", "description"),
    [
        (lambda: signed_jwt(GOOD_CLAIMS), None, None),
        (lambda: unsigned_jwt(GOOD_CLAIMS | {"exp": int(time.time()) + 180}), "invalid_grant",
         "invalid assertion: signature does not verify"),
        (lambda: signed_jwt(GOOD_CLAIMS, rsa.generate_private_key(public_exponent=65537,
         key_size=2048)), "invalid_grant", "invalid assertion: signature does not verify"),
        (lambda: signed_jwt(GOOD_CLAIMS | {"iss": "other-app"}), "invalid_client_id",
         "client identifier invalid"),
        (lambda: signed_jwt(GOOD_CLAIMS | {"aud": "https://evil.example.com"}), "invalid_grant",
         "audience is invalid"),
        (lambda: signed_jwt(GOOD_CLAIMS | {"exp": int(time.time()) - 60}), "invalid_grant",
         "expired assertion"),
        (lambda: signed_jwt(GOOD_CLAIMS | {"sub": "mallory@example.com"}), "invalid_grant",
         "authentication failure"),
        (lambda: "not-a-jwt", "invalid_grant", "invalid assertion"),
    ],
)  # fmt: skip
def test_jwt_bearer_grant_is_verified_against_the_connected_apps_certificate(
    emulator: SalesforceEmulator,
    assertion: Callable[[], str],
    error: str | None,
    description: str | None,
) -> None:
    emulator.certificate = certificate_pem(APP_KEY)
    response = token_response(emulator, grant_type=JWT_GRANT, assertion=assertion())
    if error is None:
        assert response.status_code == 200 and response.json()["access_token"]
        return
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


def test_jwt_bearer_grant_needs_a_certificate(emulator: SalesforceEmulator) -> None:
    emulator.certificate = None
    response = token_response(emulator, grant_type=JWT_GRANT, assertion=signed_jwt(GOOD_CLAIMS))
    assert response.json()["error_description"] == "the connected app has no certificate"


def test_data_calls_need_a_live_session(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    bogus = Salesforce(instance_url=emulator.url, session_id="nope", session=http_session())
    with pytest.raises(SalesforceExpiredSession) as exc:
        bogus.query("SELECT Id FROM Lead LIMIT 1")
    assert error_code(exc) == "INVALID_SESSION_ID"
    assert sf.query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1
    emulator.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Lead LIMIT 1")


# --------------------------------------------------------------------------- SOQL


def test_parent_fields_ride_along_in_one_query(
    emulator: SalesforceEmulator, sf: Salesforce, data: SalesforceData
) -> None:
    soql = (
        "SELECT LeadId, NewValue, CreatedDate, Lead.Email, Lead.GCLID__c, Lead.CreatedDate "
        "FROM LeadHistory WHERE Field = 'Status'"
    )
    records = sf.query_all(soql)["records"]
    leads = {lead["Id"]: lead for lead in data.leads}
    expected = [row for row in data.lead_history if row["Field"] == "Status"]
    assert len(records) == len(expected)
    first = records[0]
    assert list(first) == ["attributes", "LeadId", "NewValue", "CreatedDate", "Lead"]
    assert first["attributes"]["type"] == "LeadHistory"
    lead = leads[first["LeadId"]]
    assert first["Lead"]["attributes"]["url"].endswith(f"/sobjects/Lead/{lead['Id']}")
    assert first["Lead"]["Email"] == lead["Email"]
    assert first["Lead"]["GCLID__c"] == lead["GCLID__c"]
    # One query and its nextRecordsUrl pages (2,000 rows each), never one call per lead.
    assert emulator.query_calls == {"LeadHistory": math.ceil(len(expected) / 2000)}


def test_missing_parent_is_null(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    emulator.insert("LeadHistory", {"LeadId": "00Q000000000000AAA", "Field": "Status"})
    result = sf.query("SELECT Id, Lead.Email FROM LeadHistory WHERE LeadId = '00Q000000000000AAA'")
    assert result["records"][0]["Lead"] is None


@pytest.mark.parametrize(
    "literal", ["2026-11-17T12:00:00Z", "2026-11-17T12:00:00.000+0000", "2026-11-17T13:00:00+01:00"]
)
def test_datetime_literals_compare_as_instants(
    sf: Salesforce, data: SalesforceData, literal: str
) -> None:
    result = sf.query(f"SELECT COUNT() FROM LeadHistory WHERE CreatedDate > {literal}")
    cutoff = "2026-11-17T12:00:00.000+0000"  # same-format strings sort like instants
    assert result["totalSize"] == sum(row["CreatedDate"] > cutoff for row in data.lead_history)
    assert result["totalSize"] > 0


def test_date_literals_and_date_fields(sf: Salesforce, data: SalesforceData) -> None:
    soql = "SELECT Id FROM Lead WHERE ConvertedDate >= 2026-11-01 AND IsConverted = true"
    got = {r["Id"] for r in sf.query_all(soql)["records"]}
    want = {
        x["Id"] for x in data.leads if x["ConvertedDate"] and x["ConvertedDate"] >= "2026-11-01"
    }
    assert got == want
    assert got


def test_in_not_in_and_parentheses(sf: Salesforce, data: SalesforceData) -> None:
    soql = (
        "SELECT Id FROM Lead WHERE Status IN ('MQL', 'sql') "
        "AND (CurrencyIsoCode NOT IN ('EUR') OR GCLID__c != null)"
    )
    got = {r["Id"] for r in sf.query_all(soql)["records"]}
    want = {
        x["Id"]
        for x in data.leads
        if x["Status"] in ("MQL", "SQL") and (x["CurrencyIsoCode"] != "EUR" or x["GCLID__c"])
    }
    assert got == want  # text comparisons are case-insensitive, as in SOQL
    assert got


def test_lookups_by_a_list_of_ids_read_the_index_and_follow_updates(
    emulator: SalesforceEmulator, sf: Salesforce, data: SalesforceData
) -> None:
    converted = [x for x in data.leads if x.get("ConvertedOpportunityId")][:40]
    wanted = [str(x["ConvertedOpportunityId"]) for x in converted]
    # Ids in another case match too (text compares case-insensitively); store order is kept.
    ids = ", ".join(f"'{i.lower() if n % 2 else i}'" for n, i in enumerate(wanted))
    soql = f"SELECT Id FROM Lead WHERE ConvertedOpportunityId IN ({ids}) AND IsConverted = true"
    got = [r["Id"] for r in sf.query_all(soql)["records"]]
    assert got == [x["Id"] for x in data.leads if x.get("ConvertedOpportunityId") in wanted]
    emulator.update("Lead", str(converted[0]["Id"]), {"ConvertedOpportunityId": None})
    again = [r["Id"] for r in sf.query_all(soql)["records"]]
    assert again == got[1:]  # the index follows the change


def test_order_by_with_nulls_and_limit(sf: Salesforce, data: SalesforceData) -> None:
    soql = "SELECT Id, Amount FROM Opportunity ORDER BY Amount DESC NULLS LAST, Id ASC LIMIT 500"
    amounts = [r["Amount"] for r in sf.query(soql)["records"]]
    present = sorted(o["Amount"] for o in data.opportunities if o["Amount"] is not None)
    assert amounts[: len(present)] == present[::-1]
    assert amounts[len(present) :] == [None] * (len(data.opportunities) - len(present))
    newest = sf.query("SELECT CreatedDate FROM Lead ORDER BY CreatedDate DESC LIMIT 3")
    assert [r["CreatedDate"] for r in newest["records"]] == sorted(
        (x["CreatedDate"] for x in data.leads), reverse=True
    )[:3]


def test_quotes_in_literals_are_data_not_syntax(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    tricky = "x' OR Company != '"
    emulator.insert("Lead", {"Company": "O'Brien & Sons", "Status": "Open"})
    emulator.insert("Lead", {"Company": tricky, "Status": "Open"})
    hand_escaped = sf.query(r"SELECT Company FROM Lead WHERE Company = 'O\'Brien & Sons'")
    assert [r["Company"] for r in hand_escaped["records"]] == ["O'Brien & Sons"]
    injected = sf.query(format_soql("SELECT Company FROM Lead WHERE Company = {}", tricky))
    assert [r["Company"] for r in injected["records"]] == [tricky]
    backslash = sf.query(r"SELECT COUNT() FROM Lead WHERE Company = 'a\\' OR Company != null")
    assert backslash["totalSize"] > 1  # '\\' ends the literal: this OR is real syntax


QUOTED_DATETIME = "SELECT Id FROM Lead WHERE CreatedDate > '2026-11-01T00:00:00Z'"
AND_OR_MIXED = "SELECT Id FROM Lead WHERE IsConverted = true AND Status = 'MQL' OR Id = null"


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id, Nope__c FROM Lead", "INVALID_FIELD"),
        ("SELECT Id, Owner.Nope FROM LeadHistory", "INVALID_FIELD"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
        (QUOTED_DATETIME, "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Lead WHERE Status = MQL", "MALFORMED_QUERY"),
        ("SELECT Id FROM LeadHistory WHERE NewValue = 'MQL'", "INVALID_FIELD"),
        (AND_OR_MIXED, "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE Company = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY"),
        ("SELECT Id, Id FROM Lead", "MALFORMED_QUERY"),
        ("DELETE FROM Lead", "MALFORMED_QUERY"),
    ],
)
def test_bad_queries_are_400s_with_salesforce_codes(sf: Salesforce, soql: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(soql)
    assert error_code(exc) == code


def test_count_describe_and_record(sf: Salesforce, data: SalesforceData) -> None:
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == len(data.leads)
    lead_type = cast(SFType, sf.Lead)  # sf.<Object> is typed as a union with the bulk handlers
    fields = {f["name"]: f for f in lead_type.describe()["fields"]}
    assert fields["CreatedDate"]["type"] == "datetime"
    assert fields["GCLID__c"]["custom"] is True
    assert fields["ConvertedOpportunityId"]["referenceTo"] == ["Opportunity"]
    lead = data.leads[0]
    assert lead_type.get(lead["Id"])["Email"] == lead["Email"]


# ------------------------------------------------------------------ paging, deletes, changes


def test_query_all_iter_pages_through_next_records_url(
    emulator: SalesforceEmulator, data: SalesforceData
) -> None:
    emulator.page_size = 250
    sf = connect(emulator)
    first = sf.query("SELECT Id FROM Lead")
    assert first["done"] is False
    assert first["totalSize"] == len(data.leads)
    assert re.fullmatch(r"/services/data/v62\.0/query/01g\w{15}-250", first["nextRecordsUrl"])
    ids = [r["Id"] for r in sf.query_all_iter("SELECT Id FROM Lead ORDER BY CreatedDate, Id")]
    assert ids == [x["Id"] for x in sorted(data.leads, key=lambda x: (x["CreatedDate"], x["Id"]))]
    pages = math.ceil(len(data.leads) / 250)
    assert emulator.query_calls == {"Lead": 1 + pages}
    assert emulator.api_usage == 1 + pages


def test_query_excludes_deleted_and_query_all_includes_them(
    emulator: SalesforceEmulator, sf: Salesforce, data: SalesforceData
) -> None:
    gone = data.leads[10]["Id"]
    emulator.delete("Lead", gone)
    soql = format_soql("SELECT Id, IsDeleted FROM Lead WHERE Id = {}", gone)
    assert sf.query(soql)["totalSize"] == 0
    rows = sf.query_all(soql, include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(gone, True)]


def test_incremental_pull_sees_inserts_and_updates(
    emulator: SalesforceEmulator, sf: Salesforce, data: SalesforceData
) -> None:
    cursor = max(x["SystemModstamp"] for x in data.leads)
    since = f"SELECT Id, Status FROM Lead WHERE SystemModstamp > {cursor[:19]}Z"
    assert sf.query(since)["totalSize"] == 0
    later = NOW + timedelta(minutes=5)  # explicit: the machine clock may be anywhere
    new = {"LastName": "Late", "Company": "Newco", "Status": "Open", "CreatedDate": later}
    new_id = emulator.insert("Lead", new | {"SystemModstamp": later})
    changed = data.leads[0]["Id"]
    emulator.update("Lead", changed, {"Status": "MQL", "SystemModstamp": later})
    change = {"LeadId": changed, "Field": "Status", "NewValue": "MQL", "CreatedDate": later}
    emulator.insert("LeadHistory", change)
    rows = {r["Id"]: r["Status"] for r in sf.query_all(since)["records"]}
    assert rows == {new_id: "Open", changed: "MQL"}
    latest = sf.query(f"{STATUS_HISTORY} ORDER BY CreatedDate DESC LIMIT 1")["records"][0]
    assert (latest["LeadId"], latest["NewValue"]) == (changed, "MQL")


# --------------------------------------------------------------------------- faults and limits


def _sf_fault(status: int, code: str, message: str) -> Fault:
    return Fault(status, [{"message": message, "errorCode": code}], path_contains="/query")


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        (
            _sf_fault(401, "INVALID_SESSION_ID", "Session expired or invalid"),
            SalesforceExpiredSession,
        ),
        (
            _sf_fault(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
            SalesforceRefusedRequest,
        ),
        (_sf_fault(503, "SERVER_UNAVAILABLE", "Server unavailable"), SalesforceGeneralError),
    ],
)
def test_injected_faults_surface_as_simple_salesforce_errors(
    emulator: SalesforceEmulator, sf: Salesforce, fault: Fault, raised: type[Exception]
) -> None:
    emulator.faults.push(fault)
    with pytest.raises(raised):
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert sf.query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1  # one fault, one failure


def test_a_call_over_16384_bytes_of_uri_and_headers_is_refused(sf: Salesforce) -> None:
    ids = ", ".join(f"'{sf_id('006', n)}'" for n in range(600))  # ~16.8 kB once encoded
    with pytest.raises(SalesforceError) as refused:
        sf.query(f"SELECT Id FROM Lead WHERE ConvertedOpportunityId IN ({ids})")
    assert refused.value.status == 414
    fits = ", ".join(f"'{sf_id('006', n)}'" for n in range(500))  # ~14 kB: the URI fits
    with pytest.raises(SalesforceError) as too_big:  # ... but not with 3 kB of headers
        sf.query(
            f"SELECT Id FROM Lead WHERE ConvertedOpportunityId IN ({fits})",
            headers={"X-Padding": "p" * 3000},
        )
    assert too_big.value.status == 431
    assert sf.query(f"SELECT Id FROM Lead WHERE ConvertedOpportunityId IN ({fits})")


def composite(sf: Salesforce, *soql: str) -> list[dict[str, Any]]:
    requests_ = [
        {"method": "GET", "url": f"/services/data/v{sf.sf_version}/query/?{urlencode({'q': q})}",
         "referenceId": f"q{n}"}
        for n, q in enumerate(soql)
    ]  # fmt: skip
    answer = sf.restful("composite", method="POST", json={"compositeRequest": requests_})
    return list(answer["compositeResponse"])


def test_a_composite_call_carries_queries_no_url_could_for_one_api_call(
    emulator: SalesforceEmulator, sf: Salesforce, data: SalesforceData
) -> None:
    wanted = [str(x["ConvertedOpportunityId"]) for x in data.leads if x.get("IsConverted")]
    ids = ", ".join(f"'{i}'" for i in [*wanted, *(sf_id("006", n) for n in range(2000))])
    long = f"SELECT Id FROM Lead WHERE ConvertedOpportunityId IN ({ids})"  # ~ 60 kB
    before = emulator.api_usage
    [lead, bad] = composite(sf, long, "SELECT Nope FROM Lead")
    assert emulator.api_usage == before + 1
    assert lead["httpStatusCode"] == 200 and lead["referenceId"] == "q0"
    assert len(lead["body"]["records"]) == len(wanted) and lead["body"]["done"]
    assert bad["httpStatusCode"] == 400 and bad["body"][0]["errorCode"] == "INVALID_FIELD"


def test_a_composite_call_holds_at_most_five_queries(sf: Salesforce) -> None:
    [refused] = composite(sf, *["SELECT Id FROM Lead LIMIT 1"] * 6)
    assert refused["httpStatusCode"] == 400 and refused["referenceId"] is None
    assert refused["body"][0]["errorCode"] == "LIMIT_EXCEEDED"
    assert len(composite(sf, *["SELECT Id FROM Lead LIMIT 1"] * 5)) == 5


def test_soql_over_100000_characters_is_malformed(sf: Salesforce) -> None:
    ids = ", ".join(f"'{sf_id('006', n)}'" for n in range(5000))
    [answer] = composite(sf, f"SELECT Id FROM Lead WHERE ConvertedOpportunityId IN ({ids})")
    assert answer["httpStatusCode"] == 400
    assert answer["body"][0]["errorCode"] == "MALFORMED_QUERY"


def test_slow_response_times_out_on_the_client(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    emulator.faults.push(Fault(503, delay_seconds=0.6, path_contains="/query"))
    with pytest.raises(requests.exceptions.Timeout):
        sf.query("SELECT Id FROM Lead LIMIT 1", timeout=0.2)


def test_limit_info_header_feeds_api_usage(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    emulator.api_limit = 3
    for _ in range(3):
        sf.query("SELECT Id FROM Lead LIMIT 1")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (3, 3) == (emulator.api_usage, emulator.api_limit)
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert error_code(exc) == "REQUEST_LIMIT_EXCEEDED"
    assert emulator.query_calls == {"Lead": 3}


# --------------------------------------------------------------------------- the dataset


def _reached(data: SalesforceData) -> dict[str, set[str]]:
    reached: dict[str, set[str]] = {}
    for row in data.lead_history:
        if row["Field"] == "Status":
            reached.setdefault(row["NewValue"], set()).add(row["LeadId"])
    return reached


def test_dataset_is_deterministic(data: SalesforceData) -> None:
    assert generate(n_leads=3000, seed=7, now=NOW) == data
    assert generate(n_leads=3000, seed=8, now=NOW) != data


def test_dataset_funnel_rates(data: SalesforceData) -> None:
    reached, n = _reached(data), len(data.leads)
    mql = reached["MQL"] | reached["SQL"]  # a few leads skip MQL
    converted = reached["Closed - Converted"]
    assert 0.41 <= len(mql) / n <= 0.49
    assert 0.25 <= len(reached["SQL"]) / len(mql) <= 0.35
    assert 0.32 <= len(converted) / len(reached["SQL"]) <= 0.48
    assert len(data.opportunities) == len(converted)
    won = [o for o in data.opportunities if o["IsWon"]]
    assert 0.15 <= len(won) / len(data.opportunities) <= 0.35
    assert reached["Closed - Not Converted"] and 0 < len(reached["Nurture"]) < 0.05 * n
    converted_leads = [x for x in data.leads if x["IsConverted"]]
    assert all(x["ConvertedOpportunityId"] and x["ConvertedDate"] for x in converted_leads)


def test_dataset_timing(data: SalesforceData) -> None:
    by_lead: dict[str, list[str]] = {}
    for row in data.lead_history:
        if row["Field"] == "Status":
            by_lead.setdefault(row["LeadId"], []).append(row["CreatedDate"])
    assert all(len(set(times)) == len(times) for times in by_lead.values())  # strictly increasing
    recent = (NOW - timedelta(hours=72)).strftime("%Y-%m-%dT%H:%M:%S")
    assert sum(t > recent for times in by_lead.values() for t in times) >= 50
    oldest = (NOW - timedelta(days=121)).strftime("%Y-%m-%dT%H:%M:%S")
    assert min(x["CreatedDate"] for x in data.leads) > oldest
    assert max(x["SystemModstamp"] for x in data.leads) < NOW.strftime("%Y-%m-%dT%H:%M:%S")
    assert Counter(row["Field"] for row in data.lead_history)["Rating"] > 0


def test_dataset_is_realistically_messy(data: SalesforceData) -> None:
    leads, n = data.leads, len(data.leads)
    gclids = [x["GCLID__c"] for x in leads if x["GCLID__c"]]
    assert 0.31 <= len(gclids) / n <= 0.39
    clean = re.compile(r"[A-Za-z0-9_-]{60,100}")
    assert 0 < sum(not clean.fullmatch(g) for g in gclids) < 0.05 * len(gclids)
    assert any(x["GBRAID__c"] for x in leads) and any(x["WBRAID__c"] for x in leads)
    assert 0.65 <= sum(bool(x["GA_Client_ID__c"]) for x in leads) / n <= 0.75
    emails = [x["Email"] for x in leads if x["Email"]]
    assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
    assert any("+" in e and "gmail" in e for e in emails) and "no email" in emails
    phones = [x["Phone"] for x in leads if x["Phone"]]
    assert any(p.startswith("0") for p in phones) and any(p.startswith("(") for p in phones)
    assert Counter(x["CurrencyIsoCode"] for x in leads).most_common(1)[0][0] == "EUR"
    assert any(x["CurrencyIsoCode"] == "XYZ" for x in leads)
    consent = Counter(x["Consent_Ad_User_Data__c"] for x in leads)
    assert consent["Granted"] > consent["Denied"] > 0 and consent[None] > 0
    assert any(o["IsWon"] and o["Amount"] is None for o in data.opportunities)


def test_dataset_ids_and_timestamps_look_like_salesforce(data: SalesforceData) -> None:
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000")
    for prefix, rows in (("00Q", data.leads), ("006", data.opportunities)):
        assert all(re.fullmatch(prefix + r"\w{15}", r["Id"]) for r in rows)
        assert all(stamp.fullmatch(r["CreatedDate"]) for r in rows)
    history = data.lead_history + data.opportunity_history
    assert all(r["Id"].startswith("017") and len(r["Id"]) == 18 for r in history)
    assert len({r["Id"] for r in history}) == len(history)
    assert {r["Field"] for r in data.opportunity_history} >= {"StageName", "Amount"}
    assert all(x["ConvertedContactId"].startswith("003") for x in data.leads if x["IsConverted"])
