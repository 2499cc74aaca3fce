"""The Google Ads API client, and conversion actions resolved from names once per run.

A mapping may name a conversion action instead of giving its id; uploads need
the id. `ConversionActions.resolve` looks every unknown name up with one
`GoogleAdsService.Search` (API-NOTES §1) and caches the answer for the run.
Names go into GAQL as escaped string literals: a quote in a name must never
end the literal and change the query.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.v26.errors.types.errors import GoogleAdsFailure
from google.api_core import exceptions as gexc

from connector.destinations.google_ads import _credentials
from connector.destinations.retry import GOOGLE_TRANSIENT, RetryableError, call_with_retries
from connector.settings import GoogleAdsSettings

T = TypeVar("T")
API_VERSION = "v26"
SCOPE = "https://www.googleapis.com/auth/adwords"
FAILURE_KEY = f"google.ads.googleads.{API_VERSION}.errors.googleadsfailure-bin"
NAMES_PER_QUERY = 100  # an IN list far below Google's FILTER_HAS_TOO_MANY_VALUES
_SELECT = (
    "SELECT conversion_action.resource_name, conversion_action.id, conversion_action.name, "
    "conversion_action.type, conversion_action.status FROM conversion_action"
)
_TRANSIENT = GOOGLE_TRANSIENT
# Google Ads error codes that mean "try the same call again shortly" (API-NOTES §1).
TRANSIENT_CODES = frozenset(
    {"TRANSIENT_ERROR", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "RESOURCE_TEMPORARILY_EXHAUSTED"}
)


@dataclass(frozen=True)
class ConversionActionInfo:
    id: str
    name: str
    resource_name: str
    type: str
    status: str


def ads_client(settings: GoogleAdsSettings) -> Any:
    """A GoogleAdsClient for `settings` (always TLS: an emulator must serve it too)."""
    if settings.api_ca_bundle is not None:
        # GoogleAdsClient takes no CA option; gRPC reads this once, before its first channel.
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(settings.api_ca_bundle)
    token = settings.developer_token
    return GoogleAdsClient(
        credentials=_credentials(settings, SCOPE),
        developer_token=token.get_secret_value() if token else None,
        endpoint=settings.api_endpoint,
        login_customer_id=settings.login_account_id or None,
        version=API_VERSION,
        use_proto_plus=True,
    )


def gaql_string(value: str) -> str:
    """`value` as a GAQL string literal: backslashes and quotes escaped."""
    if "\n" in value or "\r" in value:
        raise ValueError("GAQL strings cannot contain line breaks")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def error_code(error: Any) -> tuple[str, str]:
    """(kind, CODE) of one GoogleAdsError, e.g. ("conversion_upload_error", "CLICK_NOT_FOUND")."""
    kind = type(error.error_code).pb(error.error_code).WhichOneof("error_code") or "unknown"
    value = getattr(error.error_code, kind, None)
    return kind, value.name if value is not None else "UNKNOWN"


def describe(exc: Exception) -> str:
    """A short, PII-free account of a failed call, for a delivery's last error."""
    if isinstance(exc, GoogleAdsException):
        codes = ", ".join(".".join(error_code(e)) for e in exc.failure.errors)
        return f"Google Ads API {codes} (request {exc.request_id})"
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"Google Ads API {exc.code}: {exc.message}"
    return str(exc) or f"Google Ads API {type(exc).__name__}"  # RetryableError: described


def call_ads_api(call: Callable[[], T], *, sleep: Callable[[float], None] | None = None) -> T:
    """Run one API call, retrying transient failures with backoff and Google's retry delay."""

    def attempt() -> T:
        try:
            return call()
        except (*_TRANSIENT, GoogleAdsException) as exc:
            retryable = _retryable(exc)
            if retryable is None:
                raise
            raise retryable from None

    return call_with_retries(attempt, sleep=sleep)


def _retryable(exc: Exception) -> RetryableError | None:
    if isinstance(exc, GoogleAdsException):
        codes = {error_code(e)[1] for e in exc.failure.errors}
        if not codes or not codes <= TRANSIENT_CODES:
            return None
        return RetryableError(describe(exc), retry_after=_retry_delay(exc.failure))
    # Quota errors carry a GoogleAdsFailure with Google's retry delay in the gRPC trailers.
    call: Any = getattr(exc, "response", None)
    metadata = call.trailing_metadata() if hasattr(call, "trailing_metadata") else None
    failures = [GoogleAdsFailure.deserialize(v) for k, v in metadata or () if k == FAILURE_KEY]
    delay = max((_retry_delay(f) for f in failures), default=0.0)
    return RetryableError(describe(exc), retry_after=delay)


def _retry_delay(failure: Any) -> float:
    """The quota error's own retry delay in seconds (0 when Google gave none)."""
    delays = [e.details.quota_error_details.retry_delay for e in failure.errors]
    return max((d.total_seconds() for d in delays if d), default=0.0)


class ConversionActions:
    """Conversion actions of one customer by name, each name looked up at most once."""

    def __init__(
        self,
        search_service: Any,
        customer_id: str,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._service = search_service
        self._customer_id = customer_id
        self._sleep = sleep
        self._found: dict[str, ConversionActionInfo] = {}
        self._missing: set[str] = set()

    def resolve(self, names: Iterable[str]) -> dict[str, ConversionActionInfo]:
        """The actions among `names` that exist (removed ones do not count)."""
        wanted = set(names)
        unknown = sorted(wanted - self._found.keys() - self._missing)
        for start in range(0, len(unknown), NAMES_PER_QUERY):
            chunk = unknown[start : start + NAMES_PER_QUERY]
            self._found.update(self._search(chunk))
            self._missing.update(name for name in chunk if name not in self._found)
        return {name: self._found[name] for name in wanted if name in self._found}

    def by_ids(self, ids: Iterable[str]) -> dict[str, ConversionActionInfo]:
        """The actions with these numeric ids, removed ones included (a check names them)."""
        wanted = sorted({int(i) for i in ids})  # int(): only digits can reach the query
        found: dict[str, ConversionActionInfo] = {}
        for start in range(0, len(wanted), NAMES_PER_QUERY):
            listed = ", ".join(str(i) for i in wanted[start : start + NAMES_PER_QUERY])
            rows = self._run(f"{_SELECT} WHERE conversion_action.id IN ({listed})")
            found.update((str(r.conversion_action.id), _info(r.conversion_action)) for r in rows)
        return found

    def _search(self, names: list[str]) -> dict[str, ConversionActionInfo]:
        rows = self._run(
            f"{_SELECT} "
            f"WHERE conversion_action.name IN ({', '.join(gaql_string(n) for n in names)}) "
            "AND conversion_action.status != 'REMOVED'"
        )
        return {row.conversion_action.name: _info(row.conversion_action) for row in rows}

    def _run(self, query: str) -> list[Any]:
        return call_ads_api(
            lambda: list(
                self._service.search(customer_id=self._customer_id, query=query, retry=None)
            ),
            sleep=self._sleep,
        )


def _info(action: Any) -> ConversionActionInfo:
    return ConversionActionInfo(
        id=str(action.id),
        name=action.name,
        resource_name=action.resource_name,
        type=action.type_.name,
        status=action.status.name,
    )


class ActionIds:
    """Numeric conversion action ids for the mapping's targets, on either upload path.

    Ids are taken as given; names are looked up once per run (a developer token
    is needed for that: GoogleAdsService is part of the Google Ads API).
    """

    def __init__(
        self,
        settings: GoogleAdsSettings,
        search_service: Callable[[], Any],
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._settings = settings
        self._search_service = search_service
        self._sleep = sleep
        self._actions: ConversionActions | None = None

    def ids(self, targets: Iterable[str]) -> tuple[dict[str, str], str | None]:
        """(id by target for those known, why the names could not be looked up or None)."""
        wanted = set(targets)
        by_id = {t: t for t in wanted if t.isdigit()}
        names = wanted - by_id.keys()
        if not names:
            return by_id, None
        if self._settings.developer_token is None:
            return by_id, (
                "conversion actions named in the mapping are looked up with "
                "CONNECTOR_GOOGLE_ADS__DEVELOPER_TOKEN: set it, or put their ids in the mapping"
            )
        try:
            found = self._resolver().resolve(names)
        except (RetryableError, GoogleAdsException, gexc.GoogleAPICallError) as exc:
            return by_id, f"conversion action lookup failed: {describe(exc)}"
        return by_id | {name: info.id for name, info in found.items()}, None

    def _resolver(self) -> ConversionActions:
        if self._actions is None:
            customer = self._settings.operating_account_id
            self._actions = ConversionActions(self._search_service(), customer, sleep=self._sleep)
        return self._actions
