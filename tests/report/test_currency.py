"""Won deals converted to the report's currency with the org's rates: hand-computed figures."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from connector.ledger.rates import CURRENT, DATED, CurrencyRate
from connector.report.currency import (
    NO_AMOUNT,
    NO_RATE,
    UNKNOWN_CURRENCY,
    RateUse,
    UnvaluedDeal,
)
from connector.report.load import Lead, LedgerData
from connector.report.metrics import build_report, valuation
from tests.report.cases import MARCH, lead

# Units per euro, the corporate currency: USD has dated rates, GBP only a current one.
RATES = [
    CurrencyRate(CURRENT, "EUR", 1.0, corporate=True),
    CurrencyRate(CURRENT, "USD", 1.10),
    CurrencyRate(CURRENT, "GBP", 0.80),
    CurrencyRate(
        DATED, "USD", 1.25, start_date=date(2026, 3, 1), next_start_date=date(2026, 3, 15)
    ),
    CurrencyRate(DATED, "USD", 1.50, start_date=date(2026, 3, 15)),
]
MAR = datetime(2026, 3, 1, 9, tzinfo=UTC)


def deals() -> list[Lead]:
    """Won on March 10 (created Mar 1, won 9 days later) or March 20 (19 days)."""
    return [
        lead("A", "won", amount=10_000, currency="EUR", created=MAR, days_to_won=9),
        lead("B", "won", amount=5_000, currency="USD", created=MAR, days_to_won=9),
        lead("C", "won", amount=8_000, currency="GBP", created=MAR, days_to_won=19),
        lead("D", "won", amount=3_000, currency="USD", created=MAR, days_to_won=19),
        lead("E", "won", amount=1_000, currency="XYZ", created=MAR, days_to_won=19),
        lead("F", "won", amount=None, currency="USD", created=MAR, days_to_won=19),
    ]


def test_deals_convert_at_the_dated_rate_of_their_close_day_else_the_current_one() -> None:
    v = valuation(deals(), "EUR", RATES)
    # A stays; B 5,000 / 1.25 = 4,000; C 8,000 / 0.80 = 10,000; D 3,000 / 1.50 = 2,000
    assert v.values == pytest.approx({"A": 10_000, "B": 4_000, "C": 10_000, "D": 2_000})
    assert v.unvalued == [
        UnvaluedDeal("E", 1_000, "XYZ", NO_RATE),
        UnvaluedDeal("F", None, "USD", NO_AMOUNT),
    ]
    assert v.converted == 3
    assert v.rates_used == {
        RateUse("USD", "EUR", 1.25, DATED, date(2026, 3, 1), date(2026, 3, 15)): 1,
        RateUse("USD", "EUR", 1.50, DATED, date(2026, 3, 15), None): 1,
        RateUse("GBP", "EUR", 0.80, CURRENT): 1,
    }


def test_a_report_in_another_currency_than_the_corporate_one() -> None:
    v = valuation(deals()[:3], "USD", RATES)
    # A 10,000 EUR x 1.25 = 12,500 USD; C 8,000 GBP / 0.80 x 1.50 (Mar 20) = 15,000 USD
    assert v.values == pytest.approx({"A": 12_500, "B": 5_000, "C": 15_000})


def test_without_rates_only_the_report_currency_is_valued() -> None:
    v = valuation(deals(), "EUR", [])
    assert v.values == {"A": 10_000}
    assert [(u.lead_id, u.reason) for u in v.unvalued] == [
        ("B", NO_RATE),
        ("C", NO_RATE),
        ("D", NO_RATE),
        ("E", NO_RATE),
        ("F", NO_AMOUNT),
    ]


def test_the_report_counts_every_won_deal_and_revenue_in_one_currency() -> None:
    report = build_report(LedgerData(MARCH, deals(), rates=RATES), currency="EUR")
    f = report.funnel
    assert (f.won, f.deals_with_value, f.won_without_value) == (6, 4, 2)
    assert f.won_revenue == pytest.approx(26_000)  # 10,000 + 4,000 + 10,000 + 2,000
    assert f.average_deal == pytest.approx(6_500)


def test_a_deal_in_a_code_that_is_no_currency_says_so() -> None:
    # The mapping refuses "XYZ" (unknown_currency), so no amount was recorded with it.
    typo = lead("T", "won", amount=None, currency="XYZ", created=MAR, days_to_won=9)
    assert valuation([typo], "EUR", RATES).unvalued == [
        UnvaluedDeal("T", None, "XYZ", UNKNOWN_CURRENCY)
    ]
