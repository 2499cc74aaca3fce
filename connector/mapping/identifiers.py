"""User and click identifiers: normalise, validate, hash (API-NOTES §2).

Google's own formatting (`google-ads-datamanager-util`) does the email and
E.164 rules; `phonenumbers` first turns national CRM formats into E.164. The
clear value never leaves this module: callers get a SHA-256 hex digest or a
reason why there is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import phonenumbers

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
# A gclid is URL-safe base64-ish; Google documents no length, real ones are 20-200 chars.
_CLICK_ID = re.compile(r"^[A-Za-z0-9_\-]{10,500}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Hashed:
    """A SHA-256 hex digest, or the reason the input could not give one."""

    sha256: str | None = None
    problem: str | None = None


def hash_email(raw: str | None) -> Hashed:
    if raw is None or not raw.strip():
        return Hashed()
    value = raw.strip()
    if _SHA256_HEX.match(value):
        return Hashed(sha256=value.lower())  # pre-hashed upstream: never hash twice
    if not _EMAIL.match(value):
        return Hashed(problem="invalid_email")
    try:
        return Hashed(sha256=_formatter().process_email_address(value, _hex()))
    except ValueError:
        return Hashed(problem="invalid_email")


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
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def click_id_problem(value: str) -> str | None:
    """Why a gclid / gbraid / wbraid is unusable, or None when it is well formed."""
    return None if _CLICK_ID.match(value) else "malformed_click_id"


@cache
def _formatter() -> Any:
    # Imported on first use: the formatter pulls in Google's encryption stack (about a
    # second), which commands that hash nothing (--help, check, report) never need.
    from google.ads.datamanager_util.format import Formatter

    return Formatter()


def _hex() -> Any:
    from google.ads.datamanager_util.format import Encoding

    return Encoding.HEX
