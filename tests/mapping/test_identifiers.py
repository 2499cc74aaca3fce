"""Hashing matches Google's published normalisation (API-NOTES §2)."""

import hashlib

import pytest

from connector.mapping.identifiers import (
    Hashed,
    click_id_problem,
    hash_email,
    hash_phone,
    to_e164,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("John.Doe@Example.com", "john.doe@example.com"),
        ("  jane@example.com \t", "jane@example.com"),
        ("J.O.H.N+newsletter@gmail.com", "john@gmail.com"),
        ("first.last+x@googlemail.com", "firstlast@googlemail.com"),
        ("first.last+x@example.org", "first.last+x@example.org"),  # dots and tags kept off gmail
    ],
)
def test_email_normalised_then_hashed(raw: str, normalised: str) -> None:
    assert hash_email(raw).sha256 == sha(normalised)


@pytest.mark.parametrize("raw", ["john@", "no email", "jo hn@example.com", "@example.com"])
def test_bad_email_has_a_reason_and_no_hash(raw: str) -> None:
    result = hash_email(raw)
    assert result.sha256 is None
    assert result.problem == "invalid_email"


def test_prehashed_email_is_not_hashed_twice() -> None:
    digest = sha("john@gmail.com")
    assert hash_email(digest.upper()).sha256 == digest


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("0621 533 999 82", "DE", "+4962153399982"),
        ("(415) 555-0134", "US", "+14155550134"),
        ("+44 20 7946 0958", "DE", "+442079460958"),
        ("+1 415 555 0134", "US", "+14155550134"),
    ],
)
def test_national_phones_become_e164_before_hashing(raw: str, region: str, e164: str) -> None:
    assert to_e164(raw, region) == e164
    assert hash_phone(raw, region).sha256 == sha(e164)


def test_garbage_phone_has_a_reason() -> None:
    assert hash_phone("call me", "DE").problem == "invalid_phone"


def test_empty_identifiers_are_simply_absent() -> None:
    assert hash_email(None).sha256 is None and hash_email(None).problem is None
    assert hash_phone("  ", "DE").problem is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("Cj0KCQiA-abcdEFGH_1234567890", True),
        ("gclid with spaces", False),
        ("Cj0KCQiA!!bad", False),
        ("short", False),
    ],
)
def test_click_id_format(value: str, ok: bool) -> None:
    assert (click_id_problem(value) is None) is ok


@pytest.mark.parametrize(
    "raw",
    [
        "john@example.com.",  # trailing dot: Google's formatter would hash it as it is
        "john.@example.com",
        ".john@example.com",
        "jo..hn@example.com",
        "john@exa mple.com",
        "john@-example.com",
        "john@example..com",
        "john@example.c0m",
        "john@@example.com",
    ],
)
def test_an_address_google_cannot_match_is_refused_not_repaired(raw: str) -> None:
    assert hash_email(raw) == Hashed(problem="invalid_email")


@pytest.mark.parametrize(
    ("raw", "region"),
    [("12", "DE"), ("+49 12", "DE"), ("555 0134", "US"), ("+1 000 000 0000", "US")],
)
def test_a_merely_possible_phone_number_is_refused(raw: str, region: str) -> None:
    assert hash_phone(raw, region) == Hashed(problem="invalid_phone")
