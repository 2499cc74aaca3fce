"""Which marketing channel brought each lead, and why not when we cannot tell.

Signals are tried in a configurable precedence (the mapping's
`attribution_precedence`), strongest first:

    click_id     a Google Ads click id on the lead: gclid -> "paid search",
                 gbraid / wbraid (iOS app campaigns) -> "paid search (iOS app)"
    utm          the lead's UTM source / medium, grouped by rules modelled on
                 GA4's default channel grouping (see `utm_channel`)
    ga4          the channel GA4's Data API reported for the lead's client id
                 (a lookup lead id -> channel name, stored by the pipeline)
    lead_source  Salesforce LeadSource, the weakest: typed by sales reps

The first signal that yields a channel wins. A lead none of them can place is
"unattributed", with one reason per signal tried (`no_click_id`, `no_utm`,
`no_ga_client_id`, ...) so the report can say what tracking is missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CLICK_ID, UTM, GA4, LEAD_SOURCE = "click_id", "utm", "ga4", "lead_source"
SIGNALS = (CLICK_ID, UTM, GA4, LEAD_SOURCE)
DEFAULT_PRECEDENCE = (CLICK_ID, UTM, GA4, LEAD_SOURCE)

UNATTRIBUTED = "unattributed"
DIRECT = "direct"
PAID_SEARCH = "paid search"
PAID_SEARCH_IOS_APP = "paid search (iOS app)"
PAID_SOCIAL = "paid social"
PAID_OTHER = "paid other"
DISPLAY = "display"
ORGANIC_SOCIAL = "organic social"
ORGANIC_SEARCH = "organic search"
REFERRAL = "referral"
EMAIL = "email"
AFFILIATES = "affiliates"

# Abridged from GA4's source categories; a source matches when it is one of
# these names or has one as a domain label ("l.facebook.com", "google.de").
SEARCH_SITES = frozenset(
    [
        "google",
        "bing",
        "yahoo",
        "baidu",
        "duckduckgo",
        "yandex",
        "ecosia",
        "naver",
        "seznam",
        "qwant",
        "startpage",
        "ask",
        "aol",
        "msn",
        "search",
    ]
)
SOCIAL_SITES = frozenset(
    [
        "facebook",
        "fb",
        "instagram",
        "ig",
        "linkedin",
        "lnkd",
        "twitter",
        "t",
        "x",
        "tiktok",
        "pinterest",
        "reddit",
        "snapchat",
        "youtube",
        "vimeo",
        "xing",
        "threads",
        "quora",
        "tumblr",
        "whatsapp",
        "messenger",
    ]
)
_PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
_DISPLAY_MEDIA = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
_SOCIAL_MEDIA = frozenset(
    {"social", "social-network", "social-media", "sm", "social network", "social media"}
)
_REFERRAL_MEDIA = frozenset({"referral", "app", "link"})
_EMAIL_WORDS = frozenset({"email", "e-mail", "e_mail", "e mail"})
_NO_MEDIUM = frozenset({"", "(none)", "(not set)"})

# Salesforce LeadSource picklist values (standard and common custom ones) that
# name a GA4 channel. Others name a real channel GA4 has no word for ("Trade
# Show", "Purchased List") and are kept as written; generic ones say nothing.
LEAD_SOURCE_CHANNELS: Mapping[str, str] = {
    "paid search": PAID_SEARCH,
    "google ads": PAID_SEARCH,
    "adwords": PAID_SEARCH,
    "ppc": PAID_SEARCH,
    "sem": PAID_SEARCH,
    "organic search": ORGANIC_SEARCH,
    "seo": ORGANIC_SEARCH,
    "social": ORGANIC_SOCIAL,
    "social media": ORGANIC_SOCIAL,
    "paid social": PAID_SOCIAL,
    "email": EMAIL,
    "newsletter": EMAIL,
    "referral": REFERRAL,
    "partner referral": REFERRAL,
    "employee referral": REFERRAL,
    "external referral": REFERRAL,
    "partner": REFERRAL,
    "word of mouth": REFERRAL,
    "affiliate": AFFILIATES,
    "display": DISPLAY,
    "advertisement": DISPLAY,
    "direct": DIRECT,
}
UNINFORMATIVE_LEAD_SOURCES = frozenset(
    {"web", "website", "other", "none", "--none--", "unknown", "n/a", "-"}
)
SIGNAL_LABELS: Mapping[str, str] = {
    CLICK_ID: "Google Ads click id",
    UTM: "UTM fields",
    GA4: "GA4 lookup",
    LEAD_SOURCE: "Salesforce LeadSource",
}
# Every reason code a signal can give, in words for the report.
REASONS: Mapping[str, str] = {
    "no_click_id": "no Google Ads click id",
    "invalid_click_id": "click id damaged in the CRM",
    "no_utm": "no UTM fields",
    "utm_unclassified": "UTM fields match no channel rule",
    "no_ga_client_id": "no GA client id",
    "no_ga4_match": "GA4 lookup found nothing",
    "ga4_unassigned": "GA4 could not assign a channel",
    "no_lead_source": "no LeadSource",
    "lead_source_uninformative": "LeadSource too generic (e.g. Web)",
}
# GA4's own word for "no rule matched": not a channel.
_GA4_NO_CHANNEL = frozenset({"", "unassigned", "(not set)", "(other)"})


@dataclass(frozen=True)
class Attribution:
    """A lead's channel, the signal that decided it, or the reasons nothing did."""

    channel: str
    signal: str | None = None
    reasons: tuple[str, ...] = ()

    @property
    def attributed(self) -> bool:
        return self.signal is not None


# (channel, None) when the signal decides; (None, reason) when it cannot.
_Found = tuple[str | None, str | None]


def check_precedence(names: Sequence[str]) -> tuple[str, ...]:
    """The precedence as given, without repeats; an unknown name is a ValueError."""
    unknown = [n for n in names if n not in SIGNALS]
    if unknown:
        raise ValueError(
            f"unknown attribution signal(s) {', '.join(unknown)}: use {', '.join(SIGNALS)}"
        )
    return tuple(dict.fromkeys(names))


def attribute(
    lead_id: str,
    attributes: Mapping[str, Any],
    *,
    problems: Mapping[str, str] | None = None,
    ga4_channels: Mapping[str, str] | None = None,
    precedence: Sequence[str] = DEFAULT_PRECEDENCE,
) -> Attribution:
    """Place one lead in a channel by the first signal in `precedence` that can."""
    checks: dict[str, Callable[[], _Found]] = {
        CLICK_ID: lambda: _click_id(attributes, problems or {}),
        UTM: lambda: _utm(attributes),
        GA4: lambda: _ga4(lead_id, attributes, ga4_channels),
        LEAD_SOURCE: lambda: _lead_source(attributes),
    }
    reasons = []
    for signal in check_precedence(precedence):
        channel, reason = checks[signal]()
        if channel is not None:
            return Attribution(channel, signal)
        reasons.append(reason or f"no_{signal}")
    return Attribution(UNATTRIBUTED, None, tuple(reasons))


def utm_channel(source: str | None, medium: str | None) -> str | None:
    """GA4's default channel grouping, abridged, in GA4's rule order; None when no rule fits.

    Video sites count as social; shopping, video, cross-network and audio
    rules are left out: B2B leads rarely come from them.
    """
    src = (source or "").strip().lower()
    med = (medium or "").strip().lower()
    if src == "(direct)" and med in _NO_MEDIUM:
        return DIRECT
    paid = bool(_PAID_MEDIUM.match(med))
    rules = (
        (paid and _site_in(src, SEARCH_SITES), PAID_SEARCH),
        (paid and _site_in(src, SOCIAL_SITES), PAID_SOCIAL),
        (med in _DISPLAY_MEDIA, DISPLAY),
        (paid, PAID_OTHER),
        (_site_in(src, SOCIAL_SITES) or med in _SOCIAL_MEDIA, ORGANIC_SOCIAL),
        (_site_in(src, SEARCH_SITES) or med == "organic", ORGANIC_SEARCH),
        (med in _REFERRAL_MEDIA, REFERRAL),
        (src in _EMAIL_WORDS or med in _EMAIL_WORDS, EMAIL),
        (med == "affiliate", AFFILIATES),
    )
    return next((channel for matches, channel in rules if matches), None)


def lead_source_channel(value: str | None) -> str | None:
    """A GA4 channel for a known LeadSource, the value itself for others, None if generic."""
    text = " ".join((value or "").split())
    key = text.lower()
    if key in UNINFORMATIVE_LEAD_SOURCES or not key:
        return None
    return LEAD_SOURCE_CHANNELS.get(key, key)


def _site_in(source: str, sites: frozenset[str]) -> bool:
    if source in sites:
        return True
    return any(label in sites for label in source.removeprefix("www.").split(".")[:-1])


def _click_id(attributes: Mapping[str, Any], problems: Mapping[str, str]) -> _Found:
    if attributes.get("gclid"):
        return PAID_SEARCH, None
    if attributes.get("gbraid") or attributes.get("wbraid"):
        return PAID_SEARCH_IOS_APP, None
    # The mapping drops a malformed click id and records why: say so, it is fixable.
    damaged = any(k in problems for k in ("gclid", "gbraid", "wbraid"))
    return None, "invalid_click_id" if damaged else "no_click_id"


def _utm(attributes: Mapping[str, Any]) -> _Found:
    source, medium = attributes.get("utm_source"), attributes.get("utm_medium")
    if not source and not medium:
        return None, "no_utm"
    channel = utm_channel(source, medium)
    return (channel, None) if channel else (None, "utm_unclassified")


def _ga4(lead_id: str, attributes: Mapping[str, Any], lookup: Mapping[str, str] | None) -> _Found:
    found = (lookup or {}).get(lead_id)
    if found is None:
        return None, "no_ga4_match" if attributes.get("ga_client_id") else "no_ga_client_id"
    channel = " ".join(found.split()).lower()
    return (None, "ga4_unassigned") if channel in _GA4_NO_CHANNEL else (channel, None)


def _lead_source(attributes: Mapping[str, Any]) -> _Found:
    value = attributes.get("lead_source")
    if not value:
        return None, "no_lead_source"
    channel = lead_source_channel(str(value))
    return (channel, None) if channel else (None, "lead_source_uninformative")
