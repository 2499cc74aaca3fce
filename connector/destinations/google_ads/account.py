"""The Google Ads account the conversions go to: its settings, and whether it can take them.

Both upload paths need the same account to be ready (API-NOTES §1): the mapped
conversion actions exist, are enabled and import click conversions; the
customer data terms are accepted and enhanced conversions for leads are on
when hashed email / phone are sent. These are Google Ads API reads
(`GoogleAdsService.Search`) with the OAuth credentials alone: no developer
token since 2026 (API-NOTES §0). The account's time zone is also what the
legacy path writes its conversion and adjustment times in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.ads.googleads.errors import GoogleAdsException
from google.api_core import exceptions as gexc

from connector.destinations.google_ads.actions import ConversionActionInfo, ConversionActions
from connector.destinations.google_ads.ads_api import (
    ads_client,
    call_ads_api,
    describe,
    stops_destination,
)
from connector.errors import ConnectorError
from connector.settings import GoogleAdsSettings, env_name

# UploadClickConversions (both paths: gclid / gbraid / wbraid rows and enhanced conversions
# for leads) only lands in "Import > CRM / clicks" actions. UPLOAD_CALLS imports call
# conversions (caller id + call time), which the connector never sends.
IMPORTABLE_TYPES = frozenset({"UPLOAD_CLICKS"})
_WRONG_TYPE_HINT = {
    "UPLOAD_CALLS": "it imports phone calls (caller id), not clicks",
    "SALESFORCE": "it is fed by Google's own Salesforce link, not by uploads",
    "STORE_SALES_DIRECT_UPLOAD": "it imports store sales, not clicks",
    "WEBPAGE": "it is counted by the website tag, not by uploads",
}
ACCOUNT_QUERY = (
    "SELECT customer.id, customer.time_zone, customer.currency_code, "
    "customer.conversion_tracking_setting.accepted_customer_data_terms, "
    "customer.conversion_tracking_setting.enablement_setting, "
    "customer.conversion_tracking_setting.effective_enablement_setting FROM customer"
)
FAILURES = (ConnectorError, GoogleAdsException, gexc.GoogleAPICallError)
Status = Literal["ok", "warn", "fail"]
log = logging.getLogger("connector.google_ads")


@dataclass(frozen=True)
class Account:
    customer_id: str
    time_zone: str
    currency_code: str
    accepted_customer_data_terms: bool
    enhanced_conversions: str  # EnhancedConversionsConfig: ON, OFF or UNSPECIFIED

    def zone(self) -> tzinfo:
        """The account's time zone; UnknownTimeZone if this machine has no such zone."""
        try:
            return ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UnknownTimeZone(self.time_zone) from None


class UnknownTimeZone(ConnectorError):
    def __init__(self, name: str) -> None:
        super().__init__(f"time zone {name!r} of the Google Ads account is unknown here")


@dataclass(frozen=True)
class Expected:
    """What the mapping will send, which the account must be ready for."""

    actions: frozenset[str]  # conversion action ids or names
    identifiers: bool  # hashed email or phone go out (enhanced conversions for leads)
    currency: str  # the mapping's default_currency


@dataclass(frozen=True)
class AccountCheck:
    """One line of `connector check --online`: what was found and, if not ok, what to do."""

    name: str
    status: Status
    detail: str


def read_account(
    search_service: Any, customer_id: str, *, sleep: Callable[[float], None] | None = None
) -> Account:
    """The customer's settings, with one Search call."""
    rows = call_ads_api(
        lambda: list(
            search_service.search(customer_id=customer_id, query=ACCOUNT_QUERY, retry=None)
        ),
        sleep=sleep,
    )
    if not rows:
        raise ConnectorError(f"Google Ads returned no customer row for {customer_id}")
    customer = rows[0].customer
    setting = customer.conversion_tracking_setting
    # The effective setting includes what a manager account passes down; fall back to our own.
    effective = setting.effective_enablement_setting.name
    own = setting.enablement_setting.name
    return Account(
        customer_id=customer_id,
        time_zone=customer.time_zone,
        currency_code=customer.currency_code,
        accepted_customer_data_terms=bool(setting.accepted_customer_data_terms),
        enhanced_conversions=effective if effective not in ("UNSPECIFIED", "UNKNOWN") else own,
    )


def account_zone(
    search_service: Any, customer_id: str, *, sleep: Callable[[float], None] | None = None
) -> tzinfo:
    """The account's time zone; UTC (logged) if unreadable: the offset keeps times exact."""
    try:
        return read_account(search_service, customer_id, sleep=sleep).zone()
    except FAILURES as exc:
        reason = describe(exc) if not isinstance(exc, ConnectorError) else str(exc)
        log.warning("account time zone unreadable, writing times in UTC: %s", reason)
        return UTC


# --------------------------------------------------------------------------- checks


def account_checks(
    settings: GoogleAdsSettings,
    expected: Expected,
    *,
    client: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> list[AccountCheck]:
    """The account lines of `connector check --online` (none when Google Ads is off)."""
    if not settings.enabled:
        return []
    return [_token_line(settings), *_account_lines(settings, expected, client, sleep)]


def _token_line(settings: GoogleAdsSettings) -> AccountCheck:
    """Developer tokens were sunset (API-NOTES §0): none is needed, a leftover one is ignored."""
    name = "google_ads developer token"
    if settings.developer_token is None:
        return AccountCheck(
            name, "ok", "none needed: access belongs to the Cloud project of the credentials"
        )
    return AccountCheck(
        name,
        "warn",
        "set, but Google ignores it since 2026-09-09 and a future API version rejects it: "
        f"remove {env_name('google_ads', 'developer_token')}",
    )


def _account_lines(
    settings: GoogleAdsSettings,
    expected: Expected,
    client: Any,
    sleep: Callable[[float], None] | None,
) -> list[AccountCheck]:
    customer = settings.operating_account_id
    try:
        service = (client or ads_client(settings)).get_service("GoogleAdsService")
        try:
            account = read_account(service, customer, sleep=sleep)
            actions = _action_info(ConversionActions(service, customer, sleep=sleep), expected)
        finally:
            service.transport.close()
    except FAILURES as exc:
        return [AccountCheck("google_ads account", "fail", _failure(exc))]
    return [
        _account_line(account, expected.currency),
        _terms_line(account, expected.identifiers),
        _enhanced_line(account, expected.identifiers),
        *(_action_line(i, actions.get(i), customer) for i in sorted(expected.actions)),
    ]


def _action_info(actions: ConversionActions, expected: Expected) -> dict[str, ConversionActionInfo]:
    """What Google knows of each mapped action, by the id or name the mapping gives."""
    ids = {t for t in expected.actions if t.isdigit()}
    return {**actions.by_ids(ids), **actions.resolve(expected.actions - ids)}


def _failure(exc: Exception) -> str:
    """Why the account could not be read, and what to do (no developer token is needed)."""
    if (stop := stops_destination(exc, set())) is not None:
        return str(stop)
    reason = str(exc) if isinstance(exc, ConnectorError) else describe(exc)
    return (
        f"{reason}: check the customer id and that the credentials can access it "
        "(no developer token is needed: access belongs to their Cloud project)"
    )


def _account_line(account: Account, currency: str) -> AccountCheck:
    detail = f"customer {account.customer_id}: time zone {account.time_zone}, "
    detail += f"currency {account.currency_code}"
    if account.currency_code != currency:
        return AccountCheck(
            "google_ads account",
            "warn",
            f"{detail}, but the mapping's default_currency is {currency}: "
            "values without a CRM currency are sent in that currency and converted by Google; "
            "set default_currency if that is not what the CRM amounts are in",
        )
    return AccountCheck("google_ads account", "ok", detail)


def _terms_line(account: Account, identifiers: bool) -> AccountCheck:
    name = "google_ads customer data terms"
    if account.accepted_customer_data_terms:
        return AccountCheck(name, "ok", "accepted")
    if not identifiers:
        return AccountCheck(name, "ok", "not accepted; not needed: no email/phone is sent")
    return AccountCheck(
        name,
        "fail",
        "not accepted, and the mapping sends hashed email/phone: accept them in Google Ads "
        "(Goals > Settings > Customer data terms), or those uploads are rejected",
    )


def _enhanced_line(account: Account, identifiers: bool) -> AccountCheck:
    name = "google_ads enhanced conversions for leads"
    state = account.enhanced_conversions
    if state == "ON":
        return AccountCheck(name, "ok", "on")
    if not identifiers:
        return AccountCheck(name, "ok", f"{state.lower()}, not needed: no email/phone sent")
    return AccountCheck(
        name,
        "warn",
        f"{state.lower()}: leads without a click id cannot be matched by hashed email/phone; "
        "turn on enhanced conversions for leads in Goals > Settings",
    )


def _action_line(action_id: str, found: ConversionActionInfo | None, customer: str) -> AccountCheck:
    name = f"google_ads conversion action {action_id}"
    if found is None or found.status == "REMOVED":
        where = "removed from" if found else "not found in"
        return AccountCheck(
            name,
            "fail",
            f"{where} customer {customer}: fix the id in the mapping (the ctId in the "
            "conversion action's Google Ads URL) or the operating account",
        )
    label = f"{found.name!r} ({found.type}, {found.status})"
    if found.type not in IMPORTABLE_TYPES:
        hint = _WRONG_TYPE_HINT.get(found.type, "it does not take imported conversions")
        return AccountCheck(
            name,
            "fail",
            f"{label}: cannot take uploaded click conversions, {hint}; map the stage to an "
            "'Import from clicks' (UPLOAD_CLICKS) conversion action",
        )
    if found.status != "ENABLED":
        return AccountCheck(
            name, "fail", f"{label}: enable it in Google Ads, or uploads to it are not counted"
        )
    return AccountCheck(name, "ok", label)
