"""What the Google Ads API emulator reports: campaigns' cost per day and the campaign of a click.

- `campaign` rows, one per campaign and day: `campaign.id`, `campaign.name`,
  `segments.date`, `metrics.cost_micros`, `metrics.clicks`, `metrics.impressions`
  (a query selecting `segments.date` must filter it: `gaql` enforces that);
- `click_view` rows, one per click: `click_view.gclid`, `campaign.*`,
  `segments.date`; Google keeps click_view for 90 days and answers one day per
  query (`gaql` enforces the single day; older clicks are simply not there).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from google.ads.googleads.v26.common.types.metrics import Metrics
from google.ads.googleads.v26.common.types.segments import Segments
from google.ads.googleads.v26.resources.types.campaign import Campaign
from google.ads.googleads.v26.resources.types.click_view import ClickView
from google.ads.googleads.v26.services.types.google_ads_service import GoogleAdsRow

REPORTING_RESOURCES = frozenset({"campaign", "click_view"})
CLICK_VIEW_DAYS = 90


@dataclass
class EmulatedCampaign:
    id: int
    name: str
    status: str = "ENABLED"
    days: dict[date, tuple[int, int]] = field(default_factory=dict)  # day -> (cost_micros, clicks)


@dataclass(frozen=True)
class EmulatedClick:
    gclid: str
    day: date
    campaign_id: int


class AdsReporting:
    """The account's campaigns and clicks, as GoogleAdsRow protobufs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.campaigns: dict[int, EmulatedCampaign] = {}
        self.clicks: list[EmulatedClick] = []

    def add_campaign(self, campaign: EmulatedCampaign) -> None:
        with self._lock:
            self.campaigns[campaign.id] = campaign

    def add_click(self, gclid: str, day: date, campaign_id: int) -> None:
        with self._lock:
            self.clicks.append(EmulatedClick(gclid, day, campaign_id))

    def rows(
        self, customer_id: str, resource: str, today: date, day: str | None = None
    ) -> list[Any]:
        """The resource's rows; for click_view only those of `day` when the query names one
        (the demo asks for 90 days one by one: building all clicks each time is slow)."""
        with self._lock:
            if resource == "campaign":
                return [self._cost_row(customer_id, c, d) for c in self.campaigns.values()
                        for d in sorted(c.days)]  # fmt: skip
            oldest = today - timedelta(days=CLICK_VIEW_DAYS - 1)
            clicks = [k for k in self.clicks if k.day >= oldest]
            if day is not None:
                clicks = [k for k in clicks if k.day.isoformat() == day]
            return [self._click_row(customer_id, k) for k in clicks]

    def _cost_row(self, customer_id: str, campaign: EmulatedCampaign, day: date) -> Any:
        cost, clicks = campaign.days[day]
        row = GoogleAdsRow(
            campaign=_campaign(customer_id, campaign),
            segments=Segments(date=day.isoformat()),
            metrics=Metrics(cost_micros=cost, clicks=clicks, impressions=clicks * 20),
        )
        return GoogleAdsRow.pb(row)

    def _click_row(self, customer_id: str, click: EmulatedClick) -> Any:
        campaign = self.campaigns.get(click.campaign_id) or EmulatedCampaign(click.campaign_id, "")
        view = ClickView(
            resource_name=f"customers/{customer_id}/clickViews/{click.day}~{click.gclid}",
            gclid=click.gclid,
        )
        row = GoogleAdsRow(
            click_view=view,
            campaign=_campaign(customer_id, campaign),
            segments=Segments(date=click.day.isoformat()),
        )
        return GoogleAdsRow.pb(row)


def _campaign(customer_id: str, campaign: EmulatedCampaign) -> Any:
    return Campaign(
        resource_name=f"customers/{customer_id}/campaigns/{campaign.id}",
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
    )
