"""The GA4 Data API client for one property: REST with the CA bundle pinned, retries, paging."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import requests
from google.analytics.data_v1beta import BetaAnalyticsDataClient
from google.analytics.data_v1beta.types import (
    Filter,
    FilterExpression,
    ResponseMetaData,
    Row,
    RunReportRequest,
    RunReportResponse,
)
from google.api_core import exceptions as gexc

from connector.errors import ConfigError, ConnectorError
from connector.google_api import GOOGLE_REST_TRANSIENT, google_credentials
from connector.http import pin_ca
from connector.retry import RetryableError, call_with_retries
from connector.settings import GA4Settings, env_name

SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
PAGE_SIZE = 10_000  # the API's default page; at most 250,000


class DataApiError(ConnectorError):
    """The GA4 Data API kept failing after retries: nothing to fix, try later (a refusal is a
    ConfigError: a setting to fix)."""

    exit_code = 3


class GA4Data:
    """The GA4 Data API for the configured property, over REST with the CA bundle pinned."""

    def __init__(self, settings: GA4Settings) -> None:
        if not settings.property_id.isdigit():
            raise ConfigError(
                f"{env_name('ga4', 'property_id')} must be the GA4 property id (digits) "
                "for reconciliation and channel lookup"
            )
        self.property = f"properties/{settings.property_id}"
        self._timeout = settings.timeout_seconds
        credentials = google_credentials(
            anonymous=settings.anonymous_credentials,
            credentials_file=settings.credentials_file,
            scope=SCOPE,
            group="ga4",
        )
        self._client = BetaAnalyticsDataClient(
            credentials=credentials,
            transport="rest",
            client_options={"api_endpoint": settings.data_api_endpoint},
        )
        # The REST transport is a requests session: pin the CA bundle setting on it.
        pin_ca(self._client.transport._session, settings.data_api_ca_bundle)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._client.transport.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> GA4Data:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run_report(self, request: RunReportRequest) -> RunReportResponse:
        """One runReport call for this property; 429 / 5xx / timeouts retried with backoff."""
        request.property = self.property
        try:
            return call_with_retries(lambda: self._call(request))
        except RetryableError as exc:
            raise DataApiError(f"GA4 Data API unavailable after retries: {exc}") from None

    def rows(self, request: RunReportRequest) -> tuple[list[Row], ResponseMetaData]:
        """Every row of a report, paging with offset / limit; and the report's metadata."""
        request.limit = PAGE_SIZE
        request.offset = 0
        response = self.run_report(request)
        rows = list(response.rows)
        while response.rows and len(rows) < response.row_count:
            request.offset = len(rows)
            response = self.run_report(request)
            rows.extend(response.rows)
        return rows, response.metadata

    def _call(self, request: RunReportRequest) -> RunReportResponse:
        try:
            return self._client.run_report(request=request, retry=None, timeout=self._timeout)
        except requests.exceptions.SSLError:
            # A ConnectionError too, but retrying cannot fix trust: name the setting instead.
            raise ConfigError(
                "TLS verification of the GA4 Data API failed: check "
                f"{env_name('ga4', 'data_api_endpoint')} and "
                f"{env_name('ga4', 'data_api_ca_bundle')}"
            ) from None
        except GOOGLE_REST_TRANSIENT as exc:
            raise RetryableError(f"GA4 Data API transient failure: {type(exc).__name__}") from None
        except gexc.GoogleAPICallError as exc:
            # Wrong property, no access, an unregistered custom dimension: settings to fix.
            raise ConfigError(
                f"GA4 Data API refused the report ({exc.code}): {exc.message}"
            ) from None


def in_list(field_name: str, values: Sequence[str]) -> FilterExpression:
    """A filter on `field_name` being one of `values`, case-sensitive."""
    # Case-sensitive: 15-character Salesforce ids differ only by case.
    return FilterExpression(
        filter=Filter(
            field_name=field_name,
            in_list_filter=Filter.InListFilter(values=list(values), case_sensitive=True),
        )
    )
