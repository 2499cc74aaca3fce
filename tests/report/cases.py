"""Hand-built leads for the report tests: the figures they give are worked out in each test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from connector.core import Mapped, StageChange, Target
from connector.ledger.costs import CampaignDay, ClickCampaign
from connector.report.load import (
    Deal,
    DeliveryRow,
    Lead,
    LedgerData,
    Period,
    RequestRow,
    RunRow,
)
from connector.report.metrics import Report, build_report

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PAID = {"gclid": "Cj0KCQiA-abcdEFGH_1234567890"}
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31))
FUNNEL_ORDER = ("lead", "mql", "sql", "opportunity", "won")


def lead(
    lead_id: str,
    furthest: str = "lead",
    *,
    created: datetime = T0,
    attrs: dict[str, Any] | None = None,
    amount: float | None = None,
    currency: str | None = "EUR",
    days_to_won: float = 90,
    then: str | None = None,
    open_deals: tuple[Deal, ...] = (),
) -> Lead:
    """A lead that went through every stage up to `furthest`, a day apart, then `then`;
    `open_deals`: its opportunities still open (the pipeline)."""
    stages = FUNNEL_ORDER[: FUNNEL_ORDER.index(furthest) + 1]
    reached = {stage: created + timedelta(days=i) for i, stage in enumerate(stages)}
    if furthest == "won":
        reached["won"] = created + timedelta(days=days_to_won)
    if then:
        reached[then] = max(reached.values()) + timedelta(days=1)
    won = (Deal(amount, currency),) if furthest == "won" else ()
    return Lead(lead_id, created, created, reached, attrs or {}, {}, won, open_deals)


def worked_funnel(attrs: dict[str, Any] | None = None, prefix: str = "L") -> list[Lead]:
    """1,000 MQL -> 300 SQL -> 120 opportunities -> 30 won.

    Won deals alternate €15,000 / €35,000 (average €25,000) and 60 / 120 days
    to contract (average and median 90 days).
    """
    leads = []
    for i in range(1000):
        furthest = "won" if i < 30 else "opportunity" if i < 120 else "sql" if i < 300 else "mql"
        odd = i % 2
        leads.append(
            lead(
                f"{prefix}{i:04d}",
                furthest,
                attrs=attrs,
                amount=35_000.0 if odd else 15_000.0,
                days_to_won=120 if odd else 60,
                then="lost" if furthest == "opportunity" else None,
            )
        )
    return leads


def change(
    lead: str,
    stage: str,
    at: datetime,
    attrs: dict[str, Any],
    created: datetime | None = None,
    problems: dict[str, str] | None = None,
    opportunity: str | None = None,
) -> Mapped:
    """A change as the pipeline records it, bound for Google Ads (of `opportunity`'s stage)."""
    sc = StageChange(
        lead_id=lead,
        crm_status=stage.upper(),
        stage=stage,
        changed_at=at,
        source_record_id=f"017{lead}{stage}",
        lead_created_at=created,
        attributes=attrs,
        problems=problems or {},
        opportunity_id=opportunity,
    )
    return Mapped(sc, [Target("google_ads", "700000001", None, None)])


def worked_report() -> Report:
    """The worked funnel, all of it paid search, in March, in euros."""
    return build_report(LedgerData(MARCH, worked_funnel(PAID)), currency="EUR")


CHANNEL_ATTRS: dict[str, dict[str, Any]] = {
    "paid search": {"gclid": "Cj0KCQiA-abcdEFGH_1234567890", "ga_client_id": "1.2"},
    "paid social": {"utm_source": "linkedin", "utm_medium": "paid_social"},
    "organic search": {"utm_source": "google", "utm_medium": "organic"},
    "email": {"utm_source": "newsletter", "utm_medium": "email"},
    "trade show": {"lead_source": "Trade Show"},
    "unattributed": {"lead_source": "Web", "ga_client_id": "9.9"},
}


# Per channel: leads, then the share of them reaching MQL, SQL, opportunity, won.
_PROFILES: dict[str, tuple[int, float, float, float, float]] = {
    "paid search": (110, 0.80, 0.45, 0.25, 0.12),
    "paid social": (80, 0.70, 0.30, 0.12, 0.04),
    "organic search": (60, 0.85, 0.50, 0.30, 0.15),
    "email": (45, 0.75, 0.35, 0.18, 0.08),
    "trade show": (30, 0.90, 0.60, 0.35, 0.18),
    "unattributed": (50, 0.60, 0.30, 0.15, 0.07),
}


# Google Ads campaigns of the sample's paid search clicks, one with a long name.
_CAMPAIGNS = ("Brand DE", "Generic CRM EMEA | Performance Max | Q2 2026 expansion", "Retargeting")


def sample_data() -> LedgerData:
    """Six channels over four months, with wins, open deals, deliveries and Google Ads
    cost: for rendering tests.

    Unattributed leads cluster in the later weeks, so measurability falls over time.
    """
    leads: list[Lead] = []
    n = 0
    for channel, (count, *shares) in _PROFILES.items():
        for i in range(count):
            n += 1
            u = (i * 37 % 100) / 100  # evenly spread, deterministic
            furthest = FUNNEL_ORDER[sum(u < share for share in shares)]
            offset = 55 + (i * 13) % 65 if channel == "unattributed" else (i * 29) % 120
            attrs = CHANNEL_ATTRS[channel]
            if channel == "paid search":  # each lead its own click, in one of the campaigns
                attrs = attrs | {"gclid": f"Cj0KCQiA-sample_{n:05d}"}
            # Every fifth open deal has no amount yet: counted, not in the pipeline.
            priced = None if n % 5 == 0 else 5_000.0 + 2_500.0 * (n % 7)
            leads.append(
                lead(
                    f"00Q{n:05d}",
                    furthest,
                    created=T0 + timedelta(days=offset, hours=n % 9),
                    attrs=attrs,
                    amount=8_000.0 + 1_500.0 * ((n * 13) % 17) if furthest == "won" else None,
                    days_to_won=30 + (n * 11) % 80,
                    open_deals=(Deal(priced, "EUR"),) if furthest == "opportunity" else (),
                )
            )
    deliveries = [DeliveryRow("google_ads", "delivered", None, "mql")] * 140
    deliveries += [DeliveryRow("google_ads", "rejected", "CLICK_NOT_FOUND", "sql")] * 6
    deliveries += [DeliveryRow("google_ads", "skipped", "no_consent", "mql")] * 12
    deliveries += [DeliveryRow("google_ads", "pending", None, "won")] * 3
    deliveries += [DeliveryRow("google_ads", "rejected", "INVALID_CONVERSION_ACTION", "won")] * 2
    deliveries += [DeliveryRow("ga4", "delivered", None, "mql")] * 90
    deliveries += [DeliveryRow("ga4", "skipped", "too_old_for_ga4", "mql")] * 40
    deliveries += [DeliveryRow("ga4", "skipped", "no_ga_client_id", "mql")] * 25
    runs = [RunRow(T0, "ok", {})]
    requests = [RequestRow("google_ads", "PARTIAL_SUCCESS", 146, 131)]
    period = Period(date(2026, 3, 1), date(2026, 6, 30))
    days, clicks = _sample_costs(leads)
    return LedgerData(
        period, leads, deliveries, runs, requests=requests, ad_costs=days, clicks=clicks
    )


def _sample_costs(leads: list[Lead]) -> tuple[list[CampaignDay], dict[str, ClickCampaign]]:
    """A cost per campaign and week, and each paid search lead's click in a campaign."""
    days = [
        CampaignDay(
            str(i), date(2026, 3, 2) + timedelta(weeks=w), name, (i + 1) * 900_000_000, 40, "EUR"
        )
        for i, name in enumerate(_CAMPAIGNS)
        for w in range(17)
    ]
    gclids = [
        str(x.attributes["gclid"]) for x in leads if "sample_" in str(x.attributes.get("gclid"))
    ]
    clicks = {
        g: ClickCampaign(g, str(k % 3), _CAMPAIGNS[k % 3], date(2026, 3, 2))
        for k, g in enumerate(gclids)
        if k % 10  # a few clicks click_view did not find
    }
    return days, clicks
