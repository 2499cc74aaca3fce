"""simple-salesforce's errors translated at the boundary, for the REST and the Bulk API reader.

str() of a simple-salesforce error includes the URL and the response body: the
messages here say only the kind of failure, the error code and what to do.
"""

from __future__ import annotations

from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from connector.errors import SourceError
from connector.retry import RetryableError


class TransientSalesforceError(RetryableError):
    """A Salesforce failure worth another try (5xx): what `connector.retry` retries."""

    def __init__(self, error: SalesforceGeneralError) -> None:
        super().__init__(f"Salesforce failed ({error.status})", status=error.status)
        self.error = error


def source_error(exc: SalesforceError) -> SourceError:
    """What a Salesforce failure means for the run, without its URL or body."""
    if isinstance(exc, SalesforceRefusedRequest):
        return SourceError(
            "Salesforce refused the request (403): the org's daily API limit is used up "
            "(REQUEST_LIMIT_EXCEEDED) or the user lacks access; the cursor was kept, rerun later",
            retryable=False,
        )
    if isinstance(exc, SalesforceExpiredSession):
        return SourceError(
            "Salesforce session expired or invalid (401 INVALID_SESSION_ID): log in again",
            retryable=True,
        )
    if isinstance(exc, SalesforceMalformedRequest):
        return SourceError(
            f"Salesforce rejected the query (400): {_first_error_code(exc)}; check the field "
            "names in the mapping against the org",
            retryable=False,
        )
    return SourceError(
        f"Salesforce failed ({exc.status}) after retries; the cursor was kept, rerun later",
        retryable=True,
    )


def _first_error_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return f"{content[0].get('errorCode')}: {content[0].get('message')}"
    return "no detail"
