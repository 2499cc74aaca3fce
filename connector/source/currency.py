"""The org's currency conversion rates, read from Salesforce for the report.

Two objects (API-NOTES §0, multi-currency), both against the corporate currency:
- `CurrencyType`: the current rate of each active currency; only multi-currency
  orgs have it (a single-currency org answers INVALID_TYPE: nothing to convert);
- `DatedConversionRate`: the dated rates of advanced currency management, each
  valid from StartDate up to NextStartDate; orgs without it answer INVALID_TYPE.

`convertCurrency()` is not allowed in WHERE and would convert at today's rate
anyway, so the rates are read whole (a few hundred rows at most) and stored.
Reading them can fail without failing the sync: the last stored set stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, cast

from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
)

from connector.errors import SourceError
from connector.ledger import CurrencyRate, Ledger
from connector.ledger.rates import CURRENT, DATED
from connector.retry import call_with_retries
from connector.source.errors import TransientSalesforceError, source_error

CURRENT_SOQL = "SELECT IsoCode, ConversionRate, IsCorporate FROM CurrencyType WHERE IsActive = true"
DATED_SOQL = (
    "SELECT IsoCode, ConversionRate, StartDate, NextStartDate FROM DatedConversionRate "
    "ORDER BY IsoCode, StartDate"
)
log = logging.getLogger("connector.source.currency")


def read_rates(
    client: Salesforce, *, sleep: Callable[[float], None] | None = None
) -> list[CurrencyRate] | None:
    """The org's current and dated rates; None for a single-currency org."""
    current = _query(client, CURRENT_SOQL, sleep)
    if current is None:
        return None
    dated = _query(client, DATED_SOQL, sleep) or []
    rates = [_current(r) for r in current] + [_dated(r) for r in dated]
    return [rate for rate in rates if rate is not None]


def refresh_rates(client: Salesforce, ledger: Ledger, now: datetime) -> int | None:
    """Read the rates and store them; None (and a warning) when they could not be read."""
    try:
        rates = read_rates(client)
    except SourceError as exc:
        log.warning("currency rates not read, the report keeps the last ones: %s", exc)
        return None
    return ledger.rates.replace(rates or [], now)


def _query(
    client: Salesforce, soql: str, sleep: Callable[[float], None] | None
) -> list[dict[str, Any]] | None:
    """The records of `soql`; None when the org has no such object (a feature not enabled)."""

    def attempt() -> list[dict[str, Any]]:
        try:
            return cast(list[dict[str, Any]], client.query_all(soql)["records"])
        except SalesforceGeneralError as exc:
            raise TransientSalesforceError(exc) from exc

    try:
        return call_with_retries(attempt, attempts=4, sleep=sleep)
    except TransientSalesforceError as exc:
        raise source_error(exc.error) from None
    except SalesforceMalformedRequest as exc:
        if _error_code(exc) == "INVALID_TYPE":
            return None
        raise source_error(exc) from None
    except SalesforceError as exc:
        raise source_error(exc) from None


def _error_code(exc: SalesforceError) -> str | None:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode"))
    return None


def _current(record: dict[str, Any]) -> CurrencyRate | None:
    rate = _positive(record.get("ConversionRate"))
    if rate is None or not record.get("IsoCode"):
        return None
    return CurrencyRate(CURRENT, str(record["IsoCode"]), rate, bool(record.get("IsCorporate")))


def _dated(record: dict[str, Any]) -> CurrencyRate | None:
    rate, start = _positive(record.get("ConversionRate")), _date(record.get("StartDate"))
    if rate is None or start is None or not record.get("IsoCode"):
        return None
    iso, until = str(record["IsoCode"]), _date(record.get("NextStartDate"))
    return CurrencyRate(DATED, iso, rate, start_date=start, next_start_date=until)


def _positive(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]  # JSON numbers, or null
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _date(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
