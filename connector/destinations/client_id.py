"""GA client ids: the form GA4 recommends, from the `_ga` cookie value CRMs often store.

Only the standard library here: the mapping uses it when a change is recorded, and
the GA4 destination again before sending (rows recorded by an older connector).
"""

from __future__ import annotations

import re

INVALID_GA_CLIENT_ID = "invalid_ga_client_id"

# `<random>.<first visit, unix seconds>`: what gtag.js reports as the client id.
_RECOMMENDED = re.compile(r"\d{1,20}\.\d{1,20}")
# The `_ga` cookie: `GA1.<domain depth>.<client id>`. GA4 takes it since 2026-02 but
# still recommends the plain form (API-NOTES §0).
_COOKIE = re.compile(r"GA\d\.\d{1,3}\.(\d{1,20}\.\d{1,20})")


def ga_client_id(value: str) -> str | None:
    """The recommended form of a GA client id, or None if `value` is not one (an email, a
    name, a typo): such a value is never sent, nor stored."""
    text = value.strip()
    if _RECOMMENDED.fullmatch(text):
        return text
    cookie = _COOKIE.fullmatch(text)
    return cookie.group(1) if cookie else None
