"""The currencies a value may be in: one list, for the mapping's checks and each row's.

Its own module because both the mapping file (`rules`, at load) and translation
(`translate`, per row) check against it, and translate already imports rules.
"""

from __future__ import annotations

# ISO 4217 codes in active use; the list is short on purpose: an exotic code
# is far more often a CRM typo than a real currency.
ISO_4217 = frozenset(
    [
        "AED",
        "ARS",
        "AUD",
        "BGN",
        "BRL",
        "CAD",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CZK",
        "DKK",
        "EGP",
        "EUR",
        "GBP",
        "HKD",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "ISK",
        "JPY",
        "KES",
        "KRW",
        "MAD",
        "MXN",
        "MYR",
        "NGN",
        "NOK",
        "NZD",
        "PEN",
        "PHP",
        "PKR",
        "PLN",
        "QAR",
        "RON",
        "RSD",
        "SAR",
        "SEK",
        "SGD",
        "THB",
        "TRY",
        "TWD",
        "UAH",
        "USD",
        "VND",
        "ZAR",
    ]
)


def is_currency(code: str) -> bool:
    return code in ISO_4217
