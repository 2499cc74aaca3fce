"""simple-salesforce's errors translated at the boundary, for the REST and the Bulk API reader.

str() of a simple-salesforce error includes the URL and the response body: the
messages here say only the kind of failure, the error code and what to do.
"""

from __future__ import annotations

import re

from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from connector.errors import ConfigError, ConnectorError, SourceError
from connector.retry import RetryableError


class TransientSalesforceError(RetryableError):
    """A Salesforce failure worth another try (5xx): what `connector.retry` retries."""

    def __init__(self, error: SalesforceGeneralError) -> None:
        super().__init__(f"Salesforce failed ({error.status})", status=error.status)
        self.error = error


# Salesforce's INVALID_FIELD names the field; the rest of its message repeats the whole query.
_MISSING_FIELD = re.compile(
    r"No such column '(?P<field>[^']+)' on entity '(?P<object>[^']+)'"
    r"|Didn't understand relationship '(?P<relationship>[^']+)'"
)


def source_error(exc: SalesforceError) -> ConnectorError:
    """What a Salesforce failure means for the run, without its URL, body or query."""
    if isinstance(exc, SalesforceMalformedRequest) and (missing := _missing_field(exc)):
        return missing
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


def _missing_field(exc: SalesforceMalformedRequest) -> ConfigError | None:
    """A mapped field the org lacks (or hides from the integration user): the mapping's to fix,
    not a Salesforce outage to wait out."""
    code, message = _first_error(exc)
    found = _MISSING_FIELD.search(message) if code == "INVALID_FIELD" else None
    if found is None:
        return None
    name = found["field"] or found["relationship"]
    where = f"on {found['object']} " if found["object"] else ""
    return ConfigError(
        f"Salesforce has no field {name!r} {where}(INVALID_FIELD): fix its name in the mapping "
        "(source.fields, value fields, opportunity fields), or give the integration user "
        "field-level read access to it; `connector check --online` lists every missing field"
    )


def _first_error_code(exc: SalesforceError) -> str:
    code, message = _first_error(exc)
    # Salesforce's message quotes the query (with a caret under the culprit): keep its last line.
    detail = message.strip().splitlines()[-1] if message.strip() else "no detail"
    return f"{code}: {detail}" if code else "no detail"


def _first_error(exc: SalesforceError) -> tuple[str, str]:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode") or ""), str(content[0].get("message") or "")
    return "", ""
