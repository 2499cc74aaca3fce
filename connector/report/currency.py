"""Won deals in the report's currency, converted with the org's own rates.

Salesforce gives each currency a rate against the corporate currency: units of
it per one corporate unit. With advanced currency management an opportunity
converts at the `DatedConversionRate` in force on its close date (here: the day
it was recorded won, which is the CloseDate where deals are closed on the day);
otherwise, or when no dated rate covers that day, at the `CurrencyType` rate.
So `amount` in X is `amount / rate(X) * rate(report currency)`.

A won deal that still has no value (no amount, or a currency without a rate) is
not guessed at: it is listed with its amount and currency. Only the report
converts; what goes to Google Ads keeps the deal's own currency.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from babel.numbers import is_currency

from connector.ledger.rates import CURRENT, DATED, CurrencyRate

NO_AMOUNT, NO_RATE, UNKNOWN_CURRENCY = "no_amount", "no_rate", "unknown_currency"
UNVALUED_REASONS = {
    NO_AMOUNT: "won without an amount",
    NO_RATE: "no conversion rate for its currency",
    # The mapping refuses a code that is no currency, so no amount was recorded with it.
    UNKNOWN_CURRENCY: "not a currency code: amount not recorded",
}


@dataclass(frozen=True)
class RateUse:
    """A rate the report applied: `rate` units of `currency` per unit of `per`."""

    currency: str
    per: str  # the org's corporate currency
    rate: float
    kind: str  # CurrencyType or DatedConversionRate
    valid_from: date | None = None
    valid_until: date | None = None  # exclusive, as Salesforce's NextStartDate


@dataclass(frozen=True)
class UnvaluedDeal:
    lead_id: str
    amount: float | None
    currency: str | None
    reason: str  # NO_AMOUNT or NO_RATE


@dataclass(frozen=True)
class Valuation:
    """Each won lead's value in `currency`, and how it was reached."""

    currency: str
    values: dict[str, float] = field(default_factory=dict)  # lead id -> value
    unvalued: list[UnvaluedDeal] = field(default_factory=list)
    rates_used: dict[RateUse, int] = field(default_factory=dict)  # rate -> deals converted
    converted: int = 0  # deals valued from another currency

    def value(self, lead_id: str) -> float | None:
        return self.values.get(lead_id)


@dataclass(frozen=True)
class WonDeal:
    lead_id: str
    amount: float | None
    currency: str | None  # None: in the report's currency
    closed_on: date


def value_deals(
    deals: Iterable[WonDeal], currency: str, rates: Sequence[CurrencyRate]
) -> Valuation:
    """Every won deal in `currency`, or listed as unvalued with why."""
    table = _Rates(rates)
    values: dict[str, float] = {}
    unvalued: list[UnvaluedDeal] = []
    used: Counter[RateUse] = Counter()
    converted = 0
    for deal in deals:
        own = deal.currency or currency
        if deal.amount is None:
            reason = NO_AMOUNT if is_currency(own) else UNKNOWN_CURRENCY
            unvalued.append(UnvaluedDeal(deal.lead_id, None, deal.currency, reason))
            continue
        if own == currency:
            values[deal.lead_id] = deal.amount
            continue
        found = table.convert(deal.amount, own, currency, deal.closed_on)
        if found is None:
            unvalued.append(UnvaluedDeal(deal.lead_id, deal.amount, own, NO_RATE))
            continue
        values[deal.lead_id], rates_applied = found
        used.update(rates_applied)
        converted += 1
    return Valuation(currency, values, unvalued, dict(used.most_common()), converted)


class _Rates:
    def __init__(self, rates: Sequence[CurrencyRate]) -> None:
        self._current = {r.iso_code: r for r in rates if r.kind == CURRENT}
        self._dated: dict[str, list[CurrencyRate]] = {}
        for r in rates:
            if r.kind == DATED:
                self._dated.setdefault(r.iso_code, []).append(r)
        self.corporate = next((r.iso_code for r in self._current.values() if r.corporate), None)

    def convert(
        self, amount: float, source: str, target: str, on: date
    ) -> tuple[float, list[RateUse]] | None:
        """`amount` of `source` in `target` on day `on`, with the rates applied; None: no rate."""
        if self.corporate is None:
            return None
        own, wanted = self._rate(source, on), self._rate(target, on)
        if own is None or wanted is None:
            return None
        value = amount / own.rate * wanted.rate
        return value, [r for r in (own, wanted) if r.currency != self.corporate]

    def _rate(self, code: str, on: date) -> RateUse | None:
        per = self.corporate or code
        if code == self.corporate:
            return RateUse(code, per, 1.0, CURRENT)
        for r in self._dated.get(code, []):
            start = r.start_date or date.min
            if start <= on and (r.next_start_date is None or on < r.next_start_date):
                return RateUse(code, per, r.rate, DATED, r.start_date, r.next_start_date)
        current = self._current.get(code)
        return RateUse(code, per, current.rate, CURRENT) if current else None


def convert_amount(
    amount: float, source: str, target: str, on: date, rates: Sequence[CurrencyRate]
) -> float | None:
    """`amount` of `source` in `target` on day `on` (Google Ads cost, say); None: no rate."""
    if source == target:
        return amount
    found = _Rates(rates).convert(amount, source, target, on)
    return found[0] if found else None
