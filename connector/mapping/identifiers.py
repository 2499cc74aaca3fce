"""User and click identifiers: normalise, validate, hash (API-NOTES §2).

Google's own formatting (`google-ads-datamanager-util`) does the email and
E.164 rules; `phonenumbers` first turns national CRM formats into E.164. The
clear value never leaves this module: callers get a SHA-256 hex digest or a
reason why there is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import phonenumbers

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
# A gclid is URL-safe base64-ish; Google documents no length, real ones are 20-200 chars.
_CLICK_ID = re.compile(r"^[A-Za-z0-9_\-]{10,500}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The GA4 guard's shapes (destinations/ga4.py): an address anywhere, a number as the whole value.
_EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_PHONE_SHAPE = re.compile(r"^\+?[\d\s().\-/]{7,}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# What Google can match, as typed: dot-separated atoms before the @ (no leading, trailing or
# double dot), host labels of letters, digits and inner hyphens, a letter TLD (or punycode).
# Google's formatter only trims and lowercases, so anything else would be hashed as it is.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_STRICT_EMAIL = re.compile(
    rf"^{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+(?:[a-z]{{2,63}}|xn--[a-z0-9-]+)$"
)


@dataclass(frozen=True)
class Hashed:
    """A SHA-256 hex digest, or the reason the input could not give one."""

    sha256: str | None = None
    problem: str | None = None


@lru_cache(maxsize=1 << 14)
def hash_email(raw: str | None) -> Hashed:
    if raw is None or not raw.strip():
        return Hashed()
    value = raw.strip()
    if _SHA256_HEX.match(value):
        return Hashed(sha256=value.lower())  # pre-hashed upstream: never hash twice
    if not _EMAIL.match(value) or not _STRICT_EMAIL.match(value.lower()):
        return Hashed(problem="invalid_email")
    try:
        return Hashed(sha256=_formatter().process_email_address(value, _hex()))
    except ValueError:
        return Hashed(problem="invalid_email")


# A lead's changes carry its email and phone each time: normalised and hashed once. Bounded,
# so memory stays flat however many leads a run reads.
@lru_cache(maxsize=1 << 14)
def hash_phone(raw: str | None, default_region: str) -> Hashed:
    if raw is None or not raw.strip():
        return Hashed()
    value = raw.strip()
    if _SHA256_HEX.match(value):
        return Hashed(sha256=value.lower())
    e164 = to_e164(value, default_region)
    if e164 is None:
        return Hashed(problem="invalid_phone")
    return Hashed(sha256=_formatter().process_phone_number(e164, _hex()))


def to_e164(raw: str, default_region: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except phonenumbers.NumberParseException:
        return None
    # Valid, not merely possible: a two-digit "number" has the right shape and matches no one.
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


# UTM values and lead sources repeat across leads; click and client ids (most of what is
# asked) never do, so a small cache keeps the repeating ones without holding every id.
@lru_cache(maxsize=1 << 12)
def looks_like_pii(value: str, default_region: str) -> bool:
    """Whether a CRM value outside the email / phone roles holds an email or phone number.

    Such a value (an address typed into a UTM field, a phone number as LeadSource, an email
    as GA client id) is redacted before it is stored or sent. A phone number is a value of
    digits and separators only that is a valid number (for the default region unless it
    starts with +); ISO dates are not phone numbers, however a numbering plan reads them.
    """
    # The search backtracks over every start of a value without "@" (a 100-character gclid
    # costs tens of microseconds): such a value cannot hold an address, so it is not asked.
    if "@" in value and _EMAIL_LIKE.search(value):
        return True
    if not _PHONE_SHAPE.match(value) or _ISO_DATE.match(value):
        return False
    if not 7 <= sum(map(str.isdigit, value)) <= 15:  # E.164 has at most 15 digits
        return False
    try:
        number = phonenumbers.parse(value, default_region.upper())
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


def forget_hashes() -> None:
    """Empty the hash and PII caches: between pulls, whose leads differ (`connector.memory`)."""
    hash_email.cache_clear()
    hash_phone.cache_clear()
    looks_like_pii.cache_clear()


def click_id_problem(value: str) -> str | None:
    """Why a gclid / gbraid / wbraid is unusable, or None when it is well formed."""
    return None if _CLICK_ID.match(value) else "malformed_click_id"


@cache
def _formatter() -> Any:
    # Imported on first use: the formatter pulls in Google's encryption stack (about a
    # second), which commands that hash nothing (--help, check, report) never need.
    from google.ads.datamanager_util.format import Formatter

    return Formatter()


@cache  # an import statement costs a lookup through the import machinery each time
def _hex() -> Any:
    from google.ads.datamanager_util.format import Encoding

    return Encoding.HEX
