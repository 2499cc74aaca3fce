"""Open and won deals, cost and clicks for the pipeline tests: every figure worked by hand.

All in March 2026, report currency EUR, the org's rates as in `test_currency` (units per
euro: USD 1.25 from Mar 1, 1.50 from Mar 15, else 1.10; GBP 0.80).

    lead  channel      deals (stage on day: amount, currency, CloseDate)     pipeline  won
    A     Brand        OA opportunity 4: 10,000 EUR; opportunity 6: 12,000 EUR  12,000
    B     Brand        OB opportunity 4: 6,000 USD, Mar 20 (1.50)               4,000
    J     Brand        converted (lead status) on 5, no deal change read       unvalued
    C     Generic      OC opportunity 4, won 16: 5,000 USD, Mar 12 (1.25)               4,000
    G     Generic      OG1 won 10: 1,000 EUR; OG2 opportunity 12:
                       2,000 GBP, May 31 (0.80)                                 2,500    1,000
    D     email        OD opportunity 4, lost 8                                   -
    E     email        converted (lead status) on 5                            unvalued
    F     email        OF opportunity 5: no amount                             unvalued
    H     email        OH opportunity 5: 4,000 EUR; a stage the mapping does
                       not list on 9: 4,500 EUR (still open, latest amount)     4,500
    I     (none)       OI won 16: 3,000 USD, no CloseDate: the day (1.50)               2,000
    K     Brand        OK opportunity 4: 8,000 EUR; won 9: 8,000 EUR; reopened
                       (opportunity) 13: 9,000 EUR, Apr 30                      9,000      -
    L     Brand        OL opportunity 4: 3,000 EUR; won 7: 3,000 EUR; lost 11     -        -

Pipeline 32,000 in 8 open deals, 3 without a value; won 7,000 in 3 deals (C, G, I: K and
L were won once, but the CRM's latest word is reopened and lost). Paid search (A, B, C, G,
J, K, L): 27,500 pipeline, 1 open deal without a value, won 5,000 in 2 deals. Cost: Brand
1,000 EUR (100 clicks), Generic 2,000 EUR (50 clicks).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from connector.core import Mapped
from connector.ledger.costs import CampaignDay, ClickCampaign
from connector.report.load import LedgerData, group_leads
from tests.report.cases import MARCH, change
from tests.report.test_currency import RATES

Deal = tuple[float | None, str, str | None]  # amount, currency, CloseDate
CAMPAIGN = {"A": 111, "B": 111, "J": 111, "K": 111, "L": 111, "C": 222, "G": 222}
EMAIL = {"utm_source": "newsletter", "utm_medium": "email"}
CHANGES: list[tuple[str, str, int, str | None, Deal | None]] = [
    ("A", "opportunity", 4, "OA", (10_000, "EUR", "2026-04-30")),
    ("A", "opportunity", 6, "OA", (12_000, "EUR", "2026-04-30")),
    ("B", "opportunity", 4, "OB", (6_000, "USD", "2026-03-20")),
    ("J", "opportunity", 5, None, None),
    ("C", "opportunity", 4, "OC", (5_000, "USD", "2026-03-12")),
    ("C", "won", 16, "OC", (5_000, "USD", "2026-03-12")),
    ("G", "won", 10, "OG1", (1_000, "EUR", "2026-03-10")),
    ("G", "opportunity", 12, "OG2", (2_000, "GBP", "2026-05-31")),
    ("D", "opportunity", 4, "OD", (3_000, "EUR", "2026-03-31")),
    ("D", "lost", 8, "OD", (3_000, "EUR", "2026-03-08")),
    ("E", "opportunity", 5, None, None),
    ("F", "opportunity", 5, "OF", (None, "EUR", "2026-04-15")),
    ("H", "opportunity", 5, "OH", (4_000, "EUR", "2026-04-01")),
    ("H", "unmapped", 9, "OH", (4_500, "EUR", "2026-04-01")),
    ("I", "won", 16, "OI", (3_000, "USD", None)),
    ("K", "opportunity", 4, "OK", (8_000, "EUR", "2026-03-09")),
    ("K", "won", 9, "OK", (8_000, "EUR", "2026-03-09")),
    ("K", "opportunity", 13, "OK", (9_000, "EUR", "2026-04-30")),  # reopened
    ("L", "opportunity", 4, "OL", (3_000, "EUR", "2026-03-07")),
    ("L", "won", 7, "OL", (3_000, "EUR", "2026-03-07")),
    ("L", "lost", 11, "OL", (3_000, "EUR", "2026-03-07")),
]


def attrs(lead: str, deal: Deal | None) -> dict[str, Any]:
    """The lead's signals, and the deal as an opportunity change records it."""
    found: dict[str, Any] = {"gclid": f"g{lead}"} if lead in CAMPAIGN else {}
    found |= EMAIL if lead in "DEFH" else {}
    if deal is not None:
        found |= dict(zip(("deal_amount", "deal_currency", "close_date"), deal, strict=True))
    return found


def mapped() -> list[Mapped]:
    """The changes as the sync records them."""
    return [
        change(lead, stage, at(day), attrs(lead, deal), created=at(2), opportunity=opp)
        for lead, stage, day, opp, deal in CHANGES
    ]


def at(day: int) -> datetime:
    return datetime(2026, 3, day, 10, tzinfo=UTC)


def costs() -> tuple[list[CampaignDay], dict[str, ClickCampaign]]:
    days = [
        CampaignDay("111", date(2026, 3, 2), "Brand", 1_000_000_000, 100, "EUR"),
        CampaignDay("222", date(2026, 3, 3), "Generic", 2_000_000_000, 50, "EUR"),
    ]
    names = {111: "Brand", 222: "Generic"}
    clicks = {
        f"g{lead}": ClickCampaign(f"g{lead}", str(cid), names[cid], date(2026, 3, 2))
        for lead, cid in CAMPAIGN.items()
    }
    return days, clicks


def deals_data() -> LedgerData:
    """The fixture as the report loads it, with the org's rates and Google Ads cost."""
    rows = [
        {
            "lead_id": m.change.lead_id,
            "stage": m.change.stage,
            "changed_at": m.change.changed_at,
            "lead_created_at": m.change.lead_created_at,
            "attributes": m.change.attributes,
            "problems": m.change.problems,
            "opportunity_id": m.change.opportunity_id,
        }
        for m in mapped()
    ]
    days, clicks = costs()
    return LedgerData(MARCH, group_leads(rows), rates=RATES, ad_costs=days, clicks=clicks)
