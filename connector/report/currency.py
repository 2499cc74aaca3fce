"""Deals in the report's currency, converted with the org's own rates.

Salesforce gives each currency a rate against the corporate currency: units of
it per one corporate unit. With advanced currency management an opportunity
converts at the `DatedConversionRate` in force on its CloseDate (as recorded
with the change; for a change recorded before the CloseDate was, the day of the
change stands in); otherwise, or when no dated rate covers that day, at the
`CurrencyType` rate. So `amount` in X is `amount / rate(X) * rate(report
currency)`. Won deals and open ones (the pipeline, at their expected CloseDate)
are valued alike, each in a `Valuation` of its own.

A deal that still has no value (no amount, or a currency without a rate) is not
guessed at: it is listed with its amount and currency. Only the report
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
NOT_RECORDED = "no_opportunity_change"
UNVALUED_REASONS = {
    NO_AMOUNT: "no amount in the CRM",
    NO_RATE: "no conversion rate for its currency",
    # The mapping refuses a code that is no currency, so no amount was recorded with it.
    UNKNOWN_CURRENCY: "not a currency code: amount not recorded",
    # Converted into an opportunity no change of which was read since (or only by a
    # connector that recorded no deal amounts).
    NOT_RECORDED: "amount not recorded yet (no opportunity change read with it)",
}
# The day that chose a converted deal's rate: its CloseDate, or the day of its change.
AT_CLOSE_DATE, AT_CHANGE_DATE = "close_date", "change_date"


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
    reason: str  # one of UNVALUED_REASONS


@dataclass(frozen=True)
class Valuation:
    """Each lead's deals (won, or open) in `currency`, and how they were valued."""

    currency: str
    values: dict[str, float] = field(default_factory=dict)  # lead id -> its deals' value
    unvalued: list[UnvaluedDeal] = field(default_factory=list)
    rates_used: dict[RateUse, int] = field(default_factory=dict)  # rate -> deals converted
    converted: int = 0  # deals valued from another currency
    # Deals converted, by the day that chose their rate (AT_CLOSE_DATE or AT_CHANGE_DATE).
    converted_at: dict[str, int] = field(default_factory=dict)

    def value(self, lead_id: str) -> float | None:
        return self.values.get(lead_id)

    def unvalued_of(self, lead_ids: Iterable[str]) -> int:
        """How many of these leads' deals have no value."""
        wanted = set(lead_ids)
        return sum(1 for d in self.unvalued if d.lead_id in wanted)


@dataclass(frozen=True)
class DealAmount:
    """One deal to value: a lead's won deal, or one of its open ones."""

    lead_id: str
    amount: float | None
    currency: str | None  # None: in the report's currency
    on: date  # the day whose rate applies: the CloseDate, else the change's day
    at_close_date: bool = False  # `on` is the CloseDate
    recorded: bool = True  # False: no change of the opportunity was recorded


def value_deals(
    deals: Iterable[DealAmount], currency: str, rates: Sequence[CurrencyRate]
) -> Valuation:
    """Every deal in `currency` (a lead's several deals summed), or listed as unvalued."""
    table = _Rates(rates)
    values: dict[str, float] = {}
    unvalued: list[UnvaluedDeal] = []
    used: Counter[RateUse] = Counter()
    converted_at: Counter[str] = Counter()
    for deal in deals:
        own = deal.currency or currency
        if deal.amount is None:
            unvalued.append(UnvaluedDeal(deal.lead_id, None, deal.currency, _no_amount(deal, own)))
            continue
        found = (
            (deal.amount, [])
            if own == currency
            else table.convert(deal.amount, own, currency, deal.on)
        )
        if found is None:
            unvalued.append(UnvaluedDeal(deal.lead_id, deal.amount, own, NO_RATE))
            continue
        values[deal.lead_id] = values.get(deal.lead_id, 0.0) + found[0]
        if own != currency:
            used.update(found[1])
            converted_at[AT_CLOSE_DATE if deal.at_close_date else AT_CHANGE_DATE] += 1
    return Valuation(
        currency,
        values,
        unvalued,
        dict(used.most_common()),
        converted_at.total(),
        dict(converted_at.most_common()),
    )


def _no_amount(deal: DealAmount, currency: str) -> str:
    if not deal.recorded:
        return NOT_RECORDED
    return NO_AMOUNT if is_currency(currency) else UNKNOWN_CURRENCY


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
