"""The currencies a value may be in: one list, for the mapping's checks and each row's.

Its own module because both the mapping file (`rules`, at load) and translation
(`translate`, per row) check against it, and translate already imports rules. The
list is CLDR's (through Babel), not a hand-written table.
"""

from __future__ import annotations

from functools import cache


@cache
def currencies_in_use() -> frozenset[str]:
    """ISO 4217 codes some territory uses today (CLDR, through Babel): a withdrawn or
    made-up code is far more often a CRM typo than a real currency."""
    # Imported here: CLDR's data is only needed once a value is checked.
    from babel.core import get_global
    from babel.numbers import get_territory_currencies

    territories = get_global("territory_currencies")
    return frozenset(code for t in territories for code in get_territory_currencies(t))


def is_currency(code: str) -> bool:
    return code in currencies_in_use()
