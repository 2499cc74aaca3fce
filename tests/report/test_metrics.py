"""The report's figures on hand-computed fixtures."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from connector.report.attribution import Attribution, attribute
from connector.report.formatting import trust_note
from connector.report.load import DeliveryRow, Lead, LedgerData, Period, RequestRow
from connector.report.metrics import (
    build_report,
    delivery_health,
    funnel,
    funnel_by_channel,
    measurability,
    pipeline_velocity,
    reached,
    trend,
    valuation,
)
from tests.report.cases import T0, lead, worked_funnel

PAID = {"gclid": "Cj0KCQiA-abcdEFGH_1234567890"}
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31))


def test_pipeline_velocity_worked_example() -> None:
    # 120 opportunities x 25 % x €25,000 / 90 days = €8,333 per day
    assert round(pipeline_velocity(120, 0.25, 25_000, 90) or 0) == 8_333
    assert pipeline_velocity(120, 0.25, 25_000, 0) is None
    assert pipeline_velocity(120, None, 25_000, 90) is None


def test_funnel_worked_example() -> None:
    leads = worked_funnel()
    f = funnel(leads, valuation(leads, "EUR"))
    assert (f.leads, f.mql, f.sql, f.opportunities, f.won) == (1000, 1000, 300, 120, 30)
    assert (f.mql_to_sql, f.sql_to_opportunity, f.opportunity_to_won) == (0.30, 0.40, 0.25)
    assert f.overall_conversion == 0.03
    assert f.won_revenue == 750_000 and f.average_deal == 25_000
    assert f.median_days_to_contract == 90 and f.average_cycle_days == 90
    assert f.velocity_per_day == pytest.approx(8_333.33, abs=0.01)


def test_a_later_stage_implies_the_earlier_ones_and_lost_keeps_the_furthest() -> None:
    skipped = lead("A", "lead")
    skipped.stages.pop("lead")
    skipped.stages["sql"] = T0  # straight to SQL: counts as MQL too
    lost = lead("B", "opportunity", then="lost")
    assert [reached(skipped, s) for s in ("lead", "mql", "sql", "opportunity")] == [
        True,
        True,
        True,
        False,
    ]
    assert reached(lost, "opportunity") and not reached(lost, "won")


def test_revenue_without_rates_leaves_out_unknown_amounts_and_other_currencies() -> None:
    leads = [
        lead("A", "won", amount=10_000),
        lead("B", "won", amount=20_000, currency=None),  # no currency: the report's
        lead("C", "won", amount=None),
        lead("D", "won", amount=5_000, currency="USD"),
    ]
    f = funnel(leads, valuation(leads, "EUR"))
    assert (f.won, f.won_revenue, f.deals_with_value, f.won_without_value) == (4, 30_000, 2, 2)
    assert f.average_deal == 15_000


def test_measurability_overall_per_stage_and_revenue_weighted() -> None:
    leads = [
        lead("A", "won", attrs=PAID, amount=30_000),
        lead("B", "won", amount=10_000),
        lead("C", "mql", attrs=PAID),
        lead("D", "lead"),
    ]
    m = measurability(leads, _attributions(leads), valuation(leads, "EUR"))
    assert m.leads.value == 0.5
    assert m.by_stage["mql"].value == pytest.approx(2 / 3)
    assert m.by_stage["won"].value == 0.5
    assert (m.revenue.part, m.revenue.whole, m.revenue.value) == (30_000, 40_000, 0.75)
    assert m.by_signal == {"click_id": 2}
    assert m.unattributed_reasons["no_click_id"] == 2


def test_funnel_by_channel_lists_biggest_first_and_unattributed_last() -> None:
    leads = worked_funnel(PAID, "P")[:10] + [lead(f"U{i}") for i in range(20)]
    leads += [lead(f"E{i}", attrs={"utm_medium": "email"}) for i in range(3)]
    channels = funnel_by_channel(leads, _attributions(leads), valuation(leads, "EUR"))
    assert list(channels) == ["paid search", "email", "unattributed"]
    assert channels["paid search"].won == 10


def test_trend_buckets_by_month_or_iso_week_and_keeps_empty_buckets() -> None:
    leads = [
        lead("A", created=datetime(2026, 3, 2, tzinfo=UTC), attrs=PAID),
        lead("B", created=datetime(2026, 3, 3, tzinfo=UTC)),
        lead("C", created=datetime(2026, 3, 20, tzinfo=UTC), attrs=PAID),
    ]
    attributions = _attributions(leads)
    weeks = trend(leads, attributions, MARCH, "week")
    assert [p.period for p in weeks] == [f"2026-W{w:02d}" for w in range(9, 15)]
    assert {p.period: p.leads.value for p in weeks} == {
        "2026-W09": None,  # March 1st is a Sunday: ISO week 9
        "2026-W10": 0.5,
        "2026-W11": None,
        "2026-W12": 1.0,
        "2026-W13": None,
        "2026-W14": None,
    }
    spring = Period(date(2026, 2, 15), date(2026, 4, 2))
    months = trend(leads, attributions, spring, "month")
    assert [(p.period, p.leads.whole) for p in months] == [
        ("2026-02", 0),
        ("2026-03", 3),
        ("2026-04", 0),
    ]


def test_delivery_health_per_destination() -> None:
    rows = [
        DeliveryRow("google_ads", "delivered", None, "mql"),
        DeliveryRow("google_ads", "delivered", None, "sql"),
        DeliveryRow("google_ads", "rejected", "CLICK_NOT_FOUND", "sql"),
        DeliveryRow("google_ads", "rejected", "not_attributable", "sql"),
        DeliveryRow("google_ads", "rejected", "INVALID_GCLID", "sql"),
        DeliveryRow("google_ads", "skipped", "no_consent", "mql"),
        DeliveryRow("ga4", "skipped", "too_old_for_ga4", "mql"),
        DeliveryRow("ga4", "pending", None, "mql"),
    ]
    requests = [
        RequestRow("google_ads", "PARTIAL_SUCCESS", 4, 2),
        RequestRow("google_ads", "SUCCESS", 1, 1),
        RequestRow("google_ads", "PROCESSING", None, None),
    ]
    health = delivery_health(rows, requests)
    ads, ga4 = health["google_ads"], health["ga4"]
    assert (ads.delivered, ads.not_attributable, ads.rejected, ads.skipped) == (
        2,
        2,
        {"INVALID_GCLID": 1},
        {"no_consent": 1},
    )
    assert (ads.processed, ads.matched, ads.total) == (5, 3, 6)
    assert (ga4.pending, ga4.skipped, ga4.processed) == (1, {"too_old_for_ga4": 1}, None)


def test_build_report_uses_the_given_precedence_and_ga4_lookup() -> None:
    both = {"utm_source": "newsletter", "utm_medium": "email", "lead_source": "Trade Show"}
    data = LedgerData(MARCH, [lead("A", attrs=both), lead("B", attrs={"ga_client_id": "1.2"})])
    report = build_report(
        data,
        currency="EUR",
        precedence=["lead_source", "utm", "ga4"],
        ga4_channels={"B": "Paid Search"},
    )
    assert {k: a.channel for k, a in report.attributions.items()} == {
        "A": "trade show",
        "B": "paid search",
    }
    assert report.precedence == ("lead_source", "utm", "ga4")


def _attributions(leads: list[Lead]) -> dict[str, Attribution]:
    return {x.lead_id: attribute(x.lead_id, x.attributes) for x in leads}


def test_delivery_health_says_what_may_be_doubled_unknown_or_dead() -> None:
    rows = [
        DeliveryRow("ga4", "delivered", None, "mql"),
        DeliveryRow("ga4", "delivered", "may_be_duplicated", "mql"),
        DeliveryRow("ga4", "unknown", "unknown_after_crash", "sql"),
        DeliveryRow("ga4", "dead", "attempts_exhausted", "sql"),
        DeliveryRow("ga4", "in_flight", None, "sql"),
    ]
    (health,) = delivery_health(rows).values()
    assert (health.delivered, health.may_be_duplicated) == (2, 1)
    assert (health.unknown, health.dead, health.in_flight, health.total) == (1, 1, 1, 5)
    note = trust_note(health)
    assert "1 may be duplicated" in note and "1 of unknown fate" in note
    assert "1 out of attempts" in note
