"""The Google Ads API client: one place for its construction, retries and error codes.

Access belongs to the Cloud project of the OAuth credentials: developer tokens
were sunset in 2026 (API-NOTES §0), so a token is sent only when one is still
configured, and nothing here needs one. The client has no built-in retry for
these calls (API-NOTES §1): `call_ads_api` retries transient failures with the
shared policy, honouring Google's own retry delay from quota errors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.api_core import exceptions as gexc

from connector.destinations.google_ads.auth import ADWORDS_SCOPE, credentials
from connector.destinations.google_ads.errors import TRANSIENT_CODES, destination_error
from connector.errors import DestinationError
from connector.google_api import GOOGLE_TRANSIENT
from connector.retry import RetryableError, call_with_retries
from connector.settings import GoogleAdsSettings

T = TypeVar("T")
API_VERSION = "v26"
FAILURE_KEY = f"google.ads.googleads.{API_VERSION}.errors.googleadsfailure-bin"
log = logging.getLogger("connector.google_ads")


def ads_client(settings: GoogleAdsSettings) -> Any:
    """A GoogleAdsClient for `settings` (always TLS: an emulator must serve it too)."""
    if settings.api_ca_bundle is not None:
        # GoogleAdsClient takes no CA option; gRPC reads this once, before its first channel.
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(settings.api_ca_bundle)
    token = settings.developer_token  # sunset and ignored by Google: sent only if still set
    return GoogleAdsClient(
        credentials=credentials(settings, ADWORDS_SCOPE),
        developer_token=token.get_secret_value() if token else None,
        endpoint=settings.api_endpoint,
        login_customer_id=settings.login_account_id or None,
        version=API_VERSION,
        use_proto_plus=True,
    )


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


def stops_destination(exc: Exception, reported: set[str]) -> DestinationError | None:
    """The destination-wide error `exc` is (errors.destination_error), logged once per run.

    `reported` holds the codes already logged by this destination's run.
    """
    if not isinstance(exc, GoogleAdsException):
        return None
    found = destination_error({error_code(e)[1] for e in exc.failure.errors})
    if found is not None and found.code not in reported:
        reported.add(found.code)
        log.error("%s", found)
    return found


def call_ads_api(call: Callable[[], T], *, sleep: Callable[[float], None] | None = None) -> T:
    """Run one API call, retrying transient failures with backoff and Google's retry delay."""

    def attempt() -> T:
        try:
            return call()
        except (*GOOGLE_TRANSIENT, GoogleAdsException) as exc:
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
    # Imported here: the v26 types package costs over half a second and 40 MiB to import,
    # which a sync that never meets a quota error does not need.
    from google.ads.googleads.v26.errors.types.errors import GoogleAdsFailure

    failures = [GoogleAdsFailure.deserialize(v) for k, v in metadata or () if k == FAILURE_KEY]
    delay = max((_retry_delay(f) for f in failures), default=0.0)
    return RetryableError(describe(exc), retry_after=delay)


def _retry_delay(failure: Any) -> float:
    """The quota error's own retry delay in seconds (0 when Google gave none)."""
    delays = [e.details.quota_error_details.retry_delay for e in failure.errors]
    return max((d.total_seconds() for d in delays if d), default=0.0)
