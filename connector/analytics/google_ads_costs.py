"""Google Ads cost per campaign and day, and the campaign of each lead's click (GAQL).

Two reads through GoogleAdsService.Search (OAuth only: the developer token is
optional since September 2026, API-NOTES §0):
- `campaign` with `metrics.cost_micros` and `metrics.clicks` per `segments.date`
  for a date range: one query;
- `click_view`, which Google answers for one day at a time and keeps for 90
  days: one query per day on which leads with a gclid were first seen (a form
  is filled on the day of its click, or soon after), only within those 90 days.
Dates are formatted here, never taken from input: nothing can inject GAQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from connector.core import utcnow
from connector.destinations.google_ads.account import read_account
from connector.destinations.google_ads.ads_api import ads_client, call_ads_api
from connector.ledger import Ledger
from connector.ledger.costs import CampaignDay, ClickCampaign, LeadClick
from connector.settings import GoogleAdsSettings

CLICK_VIEW_DAYS = 90
COST_QUERY = (
    "SELECT campaign.id, campaign.name, segments.date, metrics.cost_micros, metrics.clicks "
    "FROM campaign WHERE segments.date >= '{since}' AND segments.date <= '{until}'"
)
CLICK_QUERY = (
    "SELECT click_view.gclid, campaign.id, campaign.name, segments.date "
    "FROM click_view WHERE segments.date = '{day}'"
)
Sleep = Callable[[float], None] | None


def read_costs(
    service: Any, customer_id: str, since: date, until: date, currency: str, sleep: Sleep = None
) -> list[CampaignDay]:
    """Each campaign's cost and clicks per day from `since` to `until` (both included)."""
    query = COST_QUERY.format(since=since.isoformat(), until=until.isoformat())
    return [
        CampaignDay(
            campaign_id=str(row.campaign.id),
            day=date.fromisoformat(row.segments.date),
            campaign_name=row.campaign.name,
            cost_micros=int(row.metrics.cost_micros),
            clicks=int(row.metrics.clicks),
            currency=currency,
        )
        for row in _search(service, customer_id, query, sleep)
    ]


def click_days(clicks: Iterable[LeadClick], today: date) -> dict[date, set[str]]:
    """The days to query click_view for, each with its gclids; older than 90 days: none."""
    oldest = today - timedelta(days=CLICK_VIEW_DAYS - 1)
    days: dict[date, set[str]] = {}
    for click in clicks:
        day = click.first_seen.date()
        if oldest <= day <= today:
            days.setdefault(day, set()).add(click.gclid)
    return days


def read_click_campaigns(
    service: Any, customer_id: str, days: dict[date, set[str]], sleep: Sleep = None
) -> list[ClickCampaign]:
    """The campaign of each wanted gclid, one click_view query per day."""
    found = []
    for day in sorted(days):
        query = CLICK_QUERY.format(day=day.isoformat())
        for row in _search(service, customer_id, query, sleep):
            if row.click_view.gclid in days[day]:
                found.append(
                    ClickCampaign(
                        row.click_view.gclid, str(row.campaign.id), row.campaign.name, day
                    )
                )
    return found


def _search(service: Any, customer_id: str, query: str, sleep: Sleep) -> list[Any]:
    return call_ads_api(
        lambda: list(service.search(customer_id=customer_id, query=query, retry=None)),
        sleep=sleep,
    )


def fetch_costs(
    settings: GoogleAdsSettings, ledger: Ledger, since: date, until: date, sleep: Sleep = None
) -> dict[str, Any]:
    """Read cost and click campaigns from Google Ads into the ledger; what was stored."""
    customer = settings.operating_account_id
    service = ads_client(settings).get_service("GoogleAdsService")
    try:
        currency = read_account(service, customer, sleep=sleep).currency_code
        costs = read_costs(service, customer, since, until, currency, sleep)
        known = ledger.costs.clicks()
        oldest = datetime.combine(until - timedelta(days=CLICK_VIEW_DAYS - 1), time(), UTC)
        wanted = [c for c in ledger.costs.lead_clicks(oldest) if c.gclid not in known]
        days = click_days(wanted, min(until, utcnow().date()))
        found = read_click_campaigns(service, customer, days, sleep)
    finally:
        service.transport.close()
    now = utcnow()
    ledger.costs.save_costs(costs, now)
    ledger.costs.save_clicks(found, now)
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "currency": currency,
        "campaign_days": len(costs),
        "cost": round(sum(c.cost_micros for c in costs) / 1_000_000, 2),
        "click_days_queried": len(days),
        "clicks_looked_up": sum(len(g) for g in days.values()),
        "clicks_found": len(found),
    }
