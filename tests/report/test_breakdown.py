"""Leads and won revenue per channel and campaign, period by period: hand-computed figures."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

from rich.console import Console

from connector.report.breakdown import Cell
from connector.report.html import to_html
from connector.report.load import Lead, LedgerData, Period
from connector.report.metrics import build_report
from connector.report.tabular import to_wide_csv
from connector.report.terminal import print_table
from tests.report.cases import PAID, lead

SPRING = Period(date(2026, 3, 1), date(2026, 4, 30))
MARCH, APRIL = datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 4, 5, tzinfo=UTC)
EMAIL = {"utm_source": "newsletter", "utm_medium": "email"}


def leads() -> list[Lead]:
    return [
        lead("P1", "won", created=MARCH, attrs=PAID | {"utm_campaign": "brand"}, amount=10_000),
        lead("P2", created=MARCH, attrs=PAID | {"utm_campaign": "brand"}),
        lead("E1", created=MARCH, attrs=EMAIL | {"utm_campaign": "nl_march"}),
        lead("U1", created=MARCH),
        lead("P3", "won", created=APRIL, attrs=PAID | {"utm_campaign": " brand "}, amount=5_000),
        lead("E2", "won", created=APRIL, attrs=EMAIL | {"utm_campaign": "nl_april"}, amount=5_000),
    ]


def test_channel_mix_per_month_with_counts_beside_shares() -> None:
    mix = build_report(LedgerData(SPRING, leads()), currency="EUR").by_channel
    assert mix.periods == ["2026-03", "2026-04"]
    rows = {row.name: row for row in mix.rows}
    assert [row.name for row in mix.rows] == ["paid search", "email", "unattributed"]
    assert rows["paid search"].cells == [Cell(2, 4, 10_000, 10_000), Cell(1, 2, 5_000, 10_000)]
    assert rows["paid search"].total == Cell(3, 6, 15_000, 20_000)
    assert rows["paid search"].cells[1].revenue_share == 0.5
    assert rows["email"].cells == [Cell(1, 4, 0, 10_000), Cell(1, 2, 5_000, 10_000)]
    assert rows["unattributed"].total.lead_share == 1 / 6


def test_campaign_mix_groups_by_utm_campaign_and_keeps_leads_without_one() -> None:
    mix = build_report(LedgerData(SPRING, leads()), currency="EUR").by_campaign
    assert [row.name for row in mix.rows] == ["brand", "nl_april", "nl_march", "(no campaign)"]
    brand = mix.rows[0]
    assert brand.cells == [Cell(2, 4, 10_000, 10_000), Cell(1, 2, 5_000, 10_000)]
    assert mix.rows[-1].total == Cell(1, 6, 0, 20_000)


def test_the_trend_gives_won_revenue_measurability_per_period() -> None:
    trend = build_report(LedgerData(SPRING, leads()), currency="EUR").trend
    assert [(p.leads.part, p.leads.whole) for p in trend] == [(3, 4), (2, 2)]
    assert [(p.revenue.part, p.revenue.whole) for p in trend] == [
        (10_000, 10_000),
        (10_000, 10_000),
    ]


def test_every_format_shows_each_groups_won_revenue_per_period() -> None:
    report = build_report(LedgerData(SPRING, leads()), currency="EUR")
    console = Console(record=True, width=120)
    print_table(report, console)
    text = console.export_text()
    assert "Won revenue (EUR) by channel and month" in text
    # paid search: March €10,000 of €10,000; April €5,000 of €10,000; all €15,000 of €20,000
    paid = next(line for line in text.splitlines() if "€15,000" in line and "paid" in line)
    assert [c.strip() for c in paid.split("│")[1:]] == ["€10,000 100%", "€5,000 50%", "€15,000 75%"]
    assert "€5,000 · 50%" in to_html(report)
    rows = {
        (r["dimension"], r["name"]): r for r in csv.DictReader(io.StringIO(to_wide_csv(report)))
    }
    email = rows[("channel", "email")]
    assert (email["won revenue 2026-03"], email["won revenue 2026-04"]) == ("0.0", "5000.0")
    assert (email["revenue share 2026-04"], email["leads 2026-04"]) == ("0.5", "1")
    assert rows[("campaign", "brand")]["revenue share 2026-03"] == "1.0"
