"""A Salesforce REST emulator: OAuth token grants, SOQL query / queryAll with paging, describe.

It serves HTTPS on loopback with the test CA (API-NOTES §6), so the real
simple_salesforce client runs against it unchanged. The org's records and the
SOQL engine live in `soql.py`; Bulk API 2.0 query jobs in `salesforce_bulk.py`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from connector.settings import SalesforceSettings
from connector_sandbox.dataset import sf_datetime, sf_id
from connector_sandbox.faults import FaultQueue
from connector_sandbox.server import EmulatorServer, Request, Response, ServedEmulator
from connector_sandbox.soql import (
    KEY_PREFIXES,
    Compiler,
    FieldPath,
    OrgStore,
    Record,
    SoqlError,
    parse_soql,
    project,
    record_attributes,
    select_rows,
    wire_value,
)

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
OLDEST_VERSION, NEWEST_VERSION = 31, 68  # v68.0 is Winter '27, current in late 2026
# A REST call's URI and headers together may not pass this (help article 000386264).
MAX_URI_AND_HEADERS = 16_384
MAX_SOQL = 100_000  # characters in one SOQL statement
COMPOSITE_OPERATIONS, COMPOSITE_QUERIES = 25, 5  # subrequests per Composite call
_CURSOR_CACHE = 256  # open query locators kept; the oldest is dropped beyond this
# Fields with field history tracking on, per history object (what describe reports).
TRACKED_FIELDS = {"LeadHistory": ("Status",), "OpportunityFieldHistory": ("StageName", "Amount")}


# --------------------------------------------------------------------------- HTTP helpers


def _sf_error(status: int, code: str, message: str) -> Response:
    return Response(status, [{"message": message, "errorCode": code}])


def _too_long(request: Request) -> Response | None:
    """Salesforce's answer to a call over its URI and header limit, before anything else."""
    if len(request.target) > MAX_URI_AND_HEADERS:
        return Response(414, raw=b"URI Too Long", content_type="text/plain")
    if request.header_bytes > MAX_URI_AND_HEADERS:
        return Response(431, raw=b"Request Header Fields Too Large", content_type="text/plain")
    return None


def _composite_refusal(message: str) -> Response:
    """How Salesforce refuses a Composite call over its limits: one entry, no referenceId."""
    entry = {"body": [{"errorCode": "LIMIT_EXCEEDED", "message": message}], "httpHeaders": {}}
    return Response(
        200, {"compositeResponse": [entry | {"httpStatusCode": 400, "referenceId": None}]}
    )


def _not_found() -> Response:
    return _sf_error(404, "NOT_FOUND", "The requested resource does not exist")


def _oauth_error(error: str, description: str) -> Response:
    return Response(400, {"error": error, "error_description": description})


def _release_label(major: int) -> str:
    # Three releases a year; v62.0 was Winter '25.
    season = ("Winter", "Spring", "Summer")[(major - 62) % 3]
    return f"{season} '{25 + (major - 62) // 3}"


def _label(name: str) -> str:
    base = name.removesuffix("__c").replace("_", " ")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base)


def certificate_pem(key: rsa.RSAPrivateKey, common_name: str = "connector") -> bytes:
    """A self-signed certificate for `key`, as a connected app with digital signatures holds."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _verification_key(pem: bytes) -> Any:
    """The public key of a connected app's certificate (or of a bare public key PEM)."""
    if b"BEGIN CERTIFICATE" in pem:
        return x509.load_pem_x509_certificate(pem).public_key()
    return serialization.load_pem_public_key(pem)


# What Salesforce answers for each way an assertion can be wrong (jwt.decode's checks).
_JWT_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.InvalidIssuerError, "invalid_client_id", "client identifier invalid"),
    (jwt.InvalidAudienceError, "invalid_grant", "audience is invalid"),
    (jwt.ExpiredSignatureError, "invalid_grant", "expired assertion"),
    (jwt.InvalidSignatureError, "invalid_grant", "invalid assertion: signature does not verify"),
    (jwt.PyJWTError, "invalid_grant", "invalid assertion"),
)


@dataclass
class _Cursor:
    """A query's matching records, each page projected only when it is asked for: a
    100,000-row result is not copied whole to serve its first 2,000 rows. The flip side,
    as in a Bulk job: a record changed after the query shows its new values on a later
    page, where Salesforce would serve the snapshot it took."""

    sobject: str
    records: list[Record]
    paths: list[FieldPath]
    page_size: int


# --------------------------------------------------------------------------- the emulator


class SalesforceEmulator(ServedEmulator):
    """Salesforce REST over HTTPS on loopback, for simple_salesforce and the connector.

    `data` maps object names ("Lead", "LeadHistory", ...) to records in REST
    shape (see `connector_sandbox.dataset`). Every data request counts against
    `api_limit` and reports usage in `Sforce-Limit-Info`; faults pushed onto
    `faults` are served before anything else.
    """

    def __init__(
        self,
        data: dict[str, list[dict[str, Any]]],
        *,
        username: str = "demo@example.com",
        password: str = "demo-password",  # noqa: S107 - the emulator's demo org
        security_token: str = "demo-token",  # noqa: S107
        client_id: str = "demo-client-id",
        client_secret: str = "demo-client-secret",  # noqa: S107
        api_limit: int = 100_000,
        page_size: int = 2000,
        certificate: bytes | None = None,
    ) -> None:
        self.username, self.password, self.security_token = username, password, security_token
        # The connected app's X.509 certificate (PEM): JWT bearer assertions must verify with it.
        self.certificate = certificate
        self.client_id, self.client_secret = client_id, client_secret
        self.api_limit, self.page_size = api_limit, page_size
        self.faults = FaultQueue()
        self._initial = (data, api_limit, page_size)
        self._lock = threading.RLock()
        self._store = OrgStore(data)
        self._tokens: set[str] = set()
        self._api_usage = 0
        self._query_calls: dict[str, int] = {}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._cursor_serial = 0
        self._org_id, self._user_id = sf_id("00D", 4_242_424), sf_id("005", 4_242_424)
        # Imported here: salesforce_bulk is built on this module's SOQL engine.
        from connector_sandbox.salesforce_bulk import BulkQueryJobs

        self.bulk_jobs = BulkQueryJobs(self._user_id)  # Bulk API 2.0 query jobs
        self._server = EmulatorServer(self._handle)
        self.tracked_fields = {k: set(v) for k, v in TRACKED_FIELDS.items()}

    def reset(self) -> None:
        """Back to the constructor's data, limits and counters; tokens and faults are dropped.

        Lets tests share one running server (stopping one waits out the poll interval).
        """
        data, api_limit, page_size = self._initial
        self.faults.clear()
        with self._lock:
            self._store = OrgStore(data)
            self.api_limit, self.page_size = api_limit, page_size
            self._tokens.clear()
            self._api_usage = 0
            self._query_calls.clear()
            self.bulk_jobs.clear()
            self._cursors.clear()
            self.tracked_fields = {k: set(v) for k, v in TRACKED_FIELDS.items()}

    def login_settings(self) -> SalesforceSettings:
        """Connector settings that log in to this emulator (password grant, test CA)."""
        from connector_sandbox.tls import sandbox_ca

        return SalesforceSettings(
            login_url=self.url,
            username=self.username,
            password=SecretStr(self.password),
            security_token=SecretStr(self.security_token),
            client_id=self.client_id,
            client_secret=SecretStr(self.client_secret),
            ca_bundle=sandbox_ca().bundle_path,
        )

    # counters
    @property
    def api_usage(self) -> int:
        with self._lock:
            return self._api_usage

    def set_api_usage(self, used: int) -> None:
        """Pretend `used` calls were already made today (to test the daily limit)."""
        with self._lock:
            self._api_usage = used

    @property
    def query_calls(self) -> dict[str, int]:
        """query / queryAll / nextRecordsUrl calls per FROM object (a copy)."""
        with self._lock:
            return dict(self._query_calls)

    @property
    def bulk_calls(self) -> dict[str, int]:
        """Bulk API 2.0 query job calls (create, poll, results, ...) per FROM object (a copy)."""
        with self._lock:
            return self.bulk_jobs.calls

    @property
    def bulk_job_states(self) -> list[str]:
        """Each Bulk API 2.0 query job's state, oldest first."""
        with self._lock:
            return self.bulk_jobs.states

    def expire_sessions(self) -> None:
        """Invalidate every access token issued so far (the next data call gets 401)."""
        with self._lock:
            self._tokens.clear()

    # data changes at run time
    def insert(self, object_name: str, record: dict[str, Any]) -> str:
        """Add a record (Id, CreatedDate, SystemModstamp default to new / now); returns its Id."""
        with self._lock:
            sobject = self._store.add_object(object_name)
            return str(self._store.add(sobject, record, now=datetime.now(UTC))["Id"])

    def update(self, object_name: str, record_id: str, changes: dict[str, Any]) -> None:
        """Change fields of a record; SystemModstamp moves to now unless given."""
        with self._lock:
            sobject, record = self._find(object_name, record_id)
            if "SystemModstamp" in self._store.fields[sobject]:
                record["SystemModstamp"] = sf_datetime(datetime.now(UTC))
            for name, value in changes.items():
                record[name] = wire_value(value)
            self._store.learn_record(sobject, record)

    def delete(self, object_name: str, record_id: str) -> None:
        """Soft-delete: the record leaves `query` results but stays in `queryAll`."""
        self.update(object_name, record_id, {"IsDeleted": True})

    def merge(self, object_name: str, master_id: str, loser_id: str) -> None:
        """Merge `loser_id` into `master_id`: the loser is deleted and names its master."""
        self._find(object_name, master_id)
        self.update(object_name, loser_id, {"IsDeleted": True, "MasterRecordId": master_id})

    def records(self, object_name: str) -> list[dict[str, Any]]:
        """Copies of all records of an object, deleted ones included."""
        with self._lock:
            sobject = self._store.object_name(object_name)
            return [dict(r) for r in self._store.records[sobject]] if sobject else []

    def _find(self, object_name: str, record_id: str) -> tuple[str, Record]:
        sobject = self._store.object_name(object_name)
        record = self._store.by_id[sobject].get(record_id) if sobject else None
        if sobject is None or record is None:
            raise KeyError(f"no {object_name} with Id {record_id}")
        return sobject, record

    # HTTP entry point
    def _handle(self, request: Request) -> Response:
        injected = self.faults.take(request.path, request.method)
        if injected is not None:
            return injected
        if (refused := _too_long(request)) is not None:
            return refused
        if request.path == "/services/oauth2/token":
            return self._token(request) if request.method == "POST" else _not_found()
        if request.path.rstrip("/") == "/services/data":
            return self._with_limit_info(Response(200, self._versions()))
        match = re.fullmatch(r"/services/data/v(\d+)\.0(/.*)?", request.path)
        if match is None:
            return _not_found()
        with self._lock:
            response = self._serve_data(request, int(match[1]), match[2] or "/")
            return self._with_limit_info(response)

    def _with_limit_info(self, response: Response) -> Response:
        response.headers["Sforce-Limit-Info"] = f"api-usage={self._api_usage}/{self.api_limit}"
        return response

    def _serve_data(self, request: Request, major: int, rest: str) -> Response:
        if not self._authorized(request):
            return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self._api_usage >= self.api_limit:
            return _sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        self._api_usage += 1
        if rest.startswith("/jobs/query"):  # Bulk API 2.0: POST, PATCH, DELETE too
            return self.bulk_jobs.serve(self._store, request, major, rest)
        if re.fullmatch(r"/composite/?", rest) and request.method == "POST":
            return self._composite(request)
        if not OLDEST_VERSION <= major <= NEWEST_VERSION or request.method != "GET":
            return _not_found()
        version = f"{major}.0"
        for pattern, route in self._routes():
            found = re.fullmatch(pattern, rest)
            if found is not None:
                return route(request, found, version)
        return _not_found()

    def _routes(self) -> list[tuple[str, Callable[[Request, re.Match[str], str], Response]]]:
        return [
            (r"/?", self._resources),
            (r"/(query|queryAll)/?", self._query),
            (r"/(query|queryAll)/(01g\w+)-(\d+)", self._query_more),
            (r"/sobjects/?", self._global_describe),
            (r"/sobjects/(\w+)/describe/?", self._describe),
            (r"/sobjects/(\w+)/(\w{15}|\w{18})/?", self._record),
            (r"/limits/?", self._limits),
        ]

    def _composite(self, request: Request) -> Response:
        """POST /composite: up to 25 subrequests, at most 5 of them queries, all for one API
        call. Only query subrequests are served (the connector's lookups); each is answered
        as the same GET would be, except that no URL limit applies to it."""
        try:
            body = request.json()
        except ValueError:
            body = None
        subrequests = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subrequests, list) or not subrequests:
            return _sf_error(400, "JSON_PARSER_ERROR", "compositeRequest: a list is required")
        if len(subrequests) > COMPOSITE_OPERATIONS:
            return _composite_refusal("The request can’t contain more than 25 operations.")
        if len(subrequests) > COMPOSITE_QUERIES:  # every subrequest served here is a query
            return _composite_refusal("The request can’t contain more than 5 query operations.")
        return Response(200, {"compositeResponse": [self._subrequest(s) for s in subrequests]})

    def _subrequest(self, subrequest: Any) -> dict[str, Any]:
        ref = subrequest.get("referenceId") if isinstance(subrequest, dict) else None
        url = subrequest.get("url") if isinstance(subrequest, dict) else None
        found = re.fullmatch(r"/services/data/v(\d+)\.0(/[^?]*)(\?.*)?", str(url or ""))
        answer = _sf_error(400, "INVALID_INPUT", "a subrequest needs a method, url and referenceId")
        if ref and found and subrequest.get("method") == "GET":
            version, rest = f"{int(found[1])}.0", found[2]
            inner = Request("GET", f"{found[2]}{found[3] or ''}", {}, b"")
            answer = _not_found()
            for pattern, route in self._routes():
                if (matched := re.fullmatch(pattern, rest)) is not None and route in (
                    self._query,
                    self._query_more,
                ):
                    answer = route(inner, matched, version)
        return {
            "body": json.loads(answer.payload or b"null"),
            "httpHeaders": {},
            "httpStatusCode": answer.status,
            "referenceId": ref,
        }

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "oauth") and token.strip() in self._tokens

    # OAuth
    def _token(self, request: Request) -> Response:
        form = dict(request.query)
        parsed = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        form |= {key: values[-1] for key, values in parsed.items()}
        grant = form.get("grant_type", "")
        checks: dict[str, Callable[[dict[str, str]], Response | None]] = {
            "password": self._check_password,
            JWT_BEARER: self._check_jwt,
            "client_credentials": self._check_client,
        }
        if grant not in checks:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        failure = checks[grant](form)
        return failure if failure is not None else Response(200, self._issue_token())

    def _check_client(self, form: dict[str, str]) -> Response | None:
        if form.get("client_id") != self.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(form.get("client_secret", ""), self.client_secret):
            return _oauth_error("invalid_client", "invalid client credentials")
        return None

    def _check_password(self, form: dict[str, str]) -> Response | None:
        failure = self._check_client(form)
        if failure is not None:
            return failure
        same_user = form.get("username", "").lower() == self.username.lower()
        secret = self.password + self.security_token
        if not (same_user and hmac.compare_digest(form.get("password", ""), secret)):
            return _oauth_error("invalid_grant", "authentication failure")
        return None

    def _check_jwt(self, form: dict[str, str]) -> Response | None:
        """As Salesforce does: signed by the connected app's certificate, issued by its
        consumer key, for this login server, unexpired, for a known user."""
        if self.certificate is None:
            return _oauth_error("invalid_grant", "the connected app has no certificate")
        audiences = [self.url, "https://login.salesforce.com", "https://test.salesforce.com"]
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                _verification_key(self.certificate),
                algorithms=["RS256"],
                audience=audiences,
                issuer=self.client_id,
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.PyJWTError as exc:
            error, description = next(
                (e, d) for kind, e, d in _JWT_REFUSALS if isinstance(exc, kind)
            )
            return _oauth_error(error, description)
        if str(claims.get("sub", "")).lower() != self.username.lower():
            return _oauth_error("invalid_grant", "authentication failure")
        return None

    def _issue_token(self) -> dict[str, str]:
        token = f"{self._org_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        issued_at = str(int(time.time() * 1000))
        identity = f"{self.url}/id/{self._org_id}/{self._user_id}"
        mac = hmac.new(self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256)
        with self._lock:
            self._tokens.add(token)
        return {
            "access_token": token,
            "instance_url": self.url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(mac.digest()).decode(),
            "scope": "api",
        }

    # data endpoints (called with the lock held)
    def _versions(self) -> list[dict[str, str]]:
        return [
            {
                "label": _release_label(major),
                "url": f"/services/data/v{major}.0",
                "version": f"{major}.0",
            }
            for major in range(OLDEST_VERSION, NEWEST_VERSION + 1)
        ]

    def _resources(self, request: Request, match: re.Match[str], version: str) -> Response:
        names = ("sobjects", "query", "queryAll", "limits")
        return Response(200, {name: f"/services/data/v{version}/{name}" for name in names})

    def _limits(self, request: Request, match: re.Match[str], version: str) -> Response:
        remaining = max(0, self.api_limit - self._api_usage)
        return Response(200, {"DailyApiRequests": {"Max": self.api_limit, "Remaining": remaining}})

    def _query(self, request: Request, match: re.Match[str], version: str) -> Response:
        soql = request.query.get("q", "")
        if len(soql) > MAX_SOQL:
            message = f"SOQL statements cannot be longer than {MAX_SOQL} characters"
            return _sf_error(400, "MALFORMED_QUERY", message)
        try:
            query = parse_soql(soql)
            counted = self._store.object_name(query.sobject) or query.sobject
            self._query_calls[counted] = self._query_calls.get(counted, 0) + 1
            sobject, paths, rows = select_rows(
                self._store, query, soql, include_deleted=match[1] == "queryAll"
            )
        except SoqlError as exc:
            return _sf_error(400, exc.code, exc.message)
        if query.count_only:
            return Response(200, {"totalSize": len(rows), "done": True, "records": []})
        cursor = _Cursor(sobject, rows, paths, self._page_size(request))
        return Response(200, self._page(cursor, self._new_locator(), 0, version))

    def _query_more(self, request: Request, match: re.Match[str], version: str) -> Response:
        cursor = self._cursors.get(match[2])
        if cursor is None:
            return _sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        self._query_calls[cursor.sobject] = self._query_calls.get(cursor.sobject, 0) + 1
        return Response(200, self._page(cursor, match[2], int(match[3]), version))

    def _page_size(self, request: Request) -> int:
        # Clients may ask for smaller batches (200..2000) with Sforce-Query-Options.
        options = request.headers.get("sforce-query-options", "")
        asked = re.search(r"batchSize=(\d+)", options)
        batch = min(max(int(asked[1]), 200), 2000) if asked else 2000
        return max(1, min(self.page_size, batch))

    def _new_locator(self) -> str:
        self._cursor_serial += 1
        return sf_id("01g", 7_000_000 + self._cursor_serial)

    def _page(self, cursor: _Cursor, locator: str, offset: int, version: str) -> dict[str, Any]:
        rows = cursor.records[offset : offset + cursor.page_size]
        chunk = project(self._store, cursor.sobject, rows, cursor.paths, version)
        end = offset + len(chunk)
        done = end >= len(cursor.records)
        body: dict[str, Any] = {"totalSize": len(cursor.records), "done": done, "records": chunk}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
            self._cursors[locator] = cursor
            self._cursors.move_to_end(locator)
            while len(self._cursors) > _CURSOR_CACHE:
                self._cursors.popitem(last=False)
        return body

    def _global_describe(self, request: Request, match: re.Match[str], version: str) -> Response:
        sobjects = [self._object_summary(name, version) for name in self._store.records]
        return Response(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})

    def _object_summary(self, sobject: str, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{sobject}"
        return {
            "name": sobject,
            "label": _label(sobject),
            "keyPrefix": KEY_PREFIXES.get(sobject),
            "custom": sobject.endswith("__c"),
            "queryable": True,
            "urls": {"sobject": base, "describe": f"{base}/describe"},
        }

    def _describe(self, request: Request, match: re.Match[str], version: str) -> Response:
        sobject = self._store.object_name(match[1])
        if sobject is None:
            return _not_found()
        fields = [
            self._field_summary(sobject, n, t) for n, t in self._store.fields[sobject].items()
        ]
        return Response(200, self._object_summary(sobject, version) | {"fields": fields})

    def _field_summary(self, sobject: str, name: str, field_type: str) -> dict[str, Any]:
        step = None
        if field_type == "reference":
            custom = name.endswith("__c")
            relationship = name[:-3] + "__r" if custom else name.removesuffix("Id")
            step = Compiler(self._store, sobject, "").relationship(sobject, relationship)
        return {
            "name": name,
            "type": field_type,
            "label": _label(name),
            "custom": name.endswith("__c"),
            "nillable": name != "Id",
            "filterable": field_type != "anyType",
            "sortable": field_type != "anyType",
            "referenceTo": [step.target] if step else [],
            "relationshipName": step.relationship if step else None,
            "picklistValues": self._picklist(sobject, name),
        }

    def _picklist(self, sobject: str, name: str) -> list[dict[str, Any]]:
        # A history object's Field picklist lists the fields whose history is tracked:
        # that is how a client tells, through describe, whether tracking is on.
        if name != "Field" or sobject not in self.tracked_fields:
            return []
        return [
            {"value": f, "label": _label(f), "active": True, "defaultValue": False}
            for f in sorted(self.tracked_fields[sobject])
        ]

    def _record(self, request: Request, match: re.Match[str], version: str) -> Response:
        sobject = self._store.object_name(match[1])
        record = self._store.by_id[sobject].get(match[2]) if sobject else None
        if sobject is None or record is None or record.get("IsDeleted"):
            return _not_found()
        return Response(200, {"attributes": record_attributes(sobject, record, version)} | record)
