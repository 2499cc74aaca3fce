"""Turn a CRM change into a normalised stage change, and decide where it may go.

The result holds no clear-text PII: email and phone leave this module only
as SHA-256 digests. Every reason a change cannot reach a destination is a
short code (`unknown_stage`, `no_click_id`, ...) recorded per row.

An opportunity's change also records the deal as the CRM has it at that change
(`deal_amount`, `deal_currency`, `close_date`), whatever its stage: the report
values open pipeline and converts at the CloseDate with them. They are never
sent; what a destination gets is its target's value alone.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from connector.core import (
    GA4,
    GOOGLE_ADS,
    UNMAPPED,
    CrmChange,
    Mapped,
    StageChange,
    Target,
    conversion_id,
)
from connector.destinations.client_id import INVALID_GA_CLIENT_ID, ga_client_id
from connector.destinations.ga4.events import TOO_OLD, is_too_old
from connector.destinations.google_ads.eligibility import blocked
from connector.mapping.currency import currencies_in_use
from connector.mapping.identifiers import (
    click_id_problem,
    hash_email,
    hash_phone,
    looks_like_pii,
)
from connector.mapping.rules import Mapping, StageRule, Value

# The roles whose values are meant to be an email or phone number: hashed, never redacted.
_IDENTIFIER_ROLES = frozenset({"email", "phone"})


def translate(
    crm: CrmChange, mapping: Mapping, phone_region: str, *, now: datetime | None = None
) -> Mapped:
    """Normalise one CRM change; a status the mapping doesn't know is kept, sent nowhere.

    `now`, the run's start: a GA4 event already older than GA4 takes is recorded as
    skipped (`ga4_too_old: skip`), as its delivery would settle it. A backfill's events
    are mostly that old, and each would otherwise be claimed, checked and settled for
    nothing. Without `now`, the age is judged when the row is delivered only.
    """
    rule = mapping.rule_for(crm.new_status, opportunity=crm.opportunity_id is not None)
    attributes, problems = _attributes(crm, mapping, phone_region)
    attributes |= _deal(crm, mapping, attributes.get("currency"))
    if rule is None:
        problems["stage"] = "unknown_stage"
    if not crm.has_source_lead:
        problems["lead"] = "no_source_lead"
    if crm.deleted:
        problems["lead"] = "deleted_in_crm"
    change = StageChange(
        lead_id=crm.lead_id,
        crm_status=crm.new_status,
        stage=rule.stage if rule else UNMAPPED,
        changed_at=crm.changed_at,
        source_record_id=crm.record_id,
        lead_created_at=crm.lead_created_at,
        attributes=attributes,
        problems=problems,
        crm_record=crm.record,
        opportunity_id=crm.opportunity_id,
        restatement=crm.restatement and crm.opportunity_id is not None,
    )
    targets = _targets(rule, crm, change, mapping, now) if rule else []
    if retraction := _retraction(rule, crm, change, mapping):
        change = replace(change, retracts=conversion_id(crm.lead_id, "won", crm.opportunity_id))
        targets = [t for t in targets if t.destination != GOOGLE_ADS] + [retraction]
    if "lead" in problems:  # no lead to credit, or it was deleted in the CRM
        targets = [replace(t, skip_reason=problems["lead"]) for t in targets]
    valued = next((t for t in targets if t.value is not None), None)
    if valued is not None:
        attributes["amount"], attributes["currency"] = valued.value, valued.currency
    return Mapped(change=change, targets=targets)


def _attributes(
    crm: CrmChange, mapping: Mapping, phone_region: str
) -> tuple[dict[str, Any], dict[str, str]]:
    lead = _redacted(crm.lead, phone_region)
    problems = {key: "pii_redacted" for key in crm.lead.keys() - lead.keys()}
    attrs: dict[str, Any] = {
        key: _text(lead.get(key))
        for key in ("ga_client_id", "lead_source", "utm_source", "utm_medium", "utm_campaign")
    }
    raw_client = attrs["ga_client_id"]
    attrs["ga_client_id"] = ga_client_id(raw_client) if raw_client else None
    if raw_client and attrs["ga_client_id"] is None:
        problems["ga_client_id"] = INVALID_GA_CLIENT_ID  # maybe an email: never kept in clear
    for kind in ("gclid", "gbraid", "wbraid"):
        value = _text(lead.get(kind))
        if value and (problem := click_id_problem(value)):
            problems[kind] = problem
            value = None
        attrs[kind] = value
    email = hash_email(_text(lead.get("email")))
    phone = hash_phone(_text(lead.get("phone")), phone_region)
    attrs["email_sha256"], attrs["phone_sha256"] = email.sha256, phone.sha256
    problems.update({k: h.problem for k, h in (("email", email), ("phone", phone)) if h.problem})
    consent = mapping.source.consent_values
    for key in ("consent_ad_user_data", "consent_ad_personalization"):
        raw = _text(lead.get(key))
        attrs[key] = consent.read(raw)
        if raw is not None and attrs[key] is None:  # a value the mapping's lists don't name
            problems[key] = "unknown_consent_value"
    attrs["currency"] = _text(lead.get("currency"))
    return attrs, problems


def _deal(crm: CrmChange, mapping: Mapping, currency: str | None) -> dict[str, Any]:
    """The opportunity's amount, currency and CloseDate as read with this change (report only).

    Recorded for every stage, not only won ones: an open deal's value is the pipeline. The
    currency is the opportunity's own (else the lead's, else the mapping's default), never a
    value rule's override, which is what a destination is told, not what the deal is in.
    """
    spec = mapping.opportunity
    if crm.opportunity_id is None or spec is None:
        return {}
    return {
        "deal_amount": _amount(crm.lead.get(spec.amount_field)),
        "deal_currency": currency or mapping.default_currency,
        "close_date": _iso_date(crm.lead.get("close_date")),
    }


def _amount(raw: object) -> float | None:
    try:
        amount = float(raw) if raw not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return amount if amount is not None and math.isfinite(amount) and amount >= 0 else None


def _iso_date(raw: object) -> str | None:
    """A Salesforce date (`2026-11-20`) as ISO text; anything else is no date."""
    try:
        return date.fromisoformat(str(raw)[:10]).isoformat() if raw else None
    except ValueError:
        return None


def _redacted(lead: dict[str, Any], phone_region: str) -> dict[str, Any]:
    """The lead's values without any email or phone number outside the email / phone roles:
    what is redacted is neither stored nor sent, only counted (`pii_redacted` per field)."""
    return {
        key: value
        for key, value in lead.items()
        if key in _IDENTIFIER_ROLES
        or not isinstance(value, str)
        or not looks_like_pii(value.strip(), phone_region)
    }


def _targets(
    rule: StageRule, crm: CrmChange, change: StageChange, mapping: Mapping, now: datetime | None
) -> list[Target]:
    targets = []
    # GA4 has no adjustments: a restated amount would be a second win there.
    if rule.ga4 is not None and not change.restatement:
        value, currency, problem = _value(rule.ga4.value, crm, change, mapping)
        reason = problem or ga4_block(change) or _too_old(change, mapping, now)
        client = change.attributes.get("ga_client_id") or ""
        targets.append(Target(GA4, rule.ga4.event, value, currency, reason, group=client))
    if rule.google_ads is not None:
        value, currency, problem = _value(rule.google_ads.value, crm, change, mapping)
        reason = problem or blocked(change)
        targets.append(
            Target(GOOGLE_ADS, rule.google_ads.conversion_action, value, currency, reason)
        )
    return targets


def _retraction(
    rule: StageRule | None, crm: CrmChange, change: StageChange, mapping: Mapping
) -> Target | None:
    """A won deal reopened or lost takes its Google Ads conversion back (one rule, both paths)."""
    if crm.opportunity_id is None or crm.restatement or crm.old_status is None:
        return None
    was = mapping.rule_for(crm.old_status, opportunity=True)
    if was is None or was.stage != "won" or was.google_ads is None:
        return None
    if rule is not None and rule.stage == "won":
        return None  # one won stage to another: nothing to take back
    action = was.google_ads.conversion_action
    return Target(GOOGLE_ADS, action, None, None, blocked(change))


def _value(
    spec: Value | None, crm: CrmChange, change: StageChange, mapping: Mapping
) -> tuple[float | None, str | None, str | None]:
    """(value, currency, problem); a value rule that cannot be met is the row's problem."""
    if spec is None:
        return None, None, None
    raw = crm.lead.get(spec.field) if spec.field else spec.fixed
    try:
        amount = float(raw) if raw is not None else None
    except (TypeError, ValueError):
        amount = None
    if amount is None or not math.isfinite(amount) or amount < 0:
        return None, None, "missing_amount" if raw in (None, "") else "invalid_amount"
    currency = spec.currency or change.attributes.get("currency") or mapping.default_currency
    if currency not in currencies_in_use():
        return None, None, "unknown_currency"
    return amount, currency, None


def _too_old(change: StageChange, mapping: Mapping, now: datetime | None) -> str | None:
    if now is None or mapping.ga4_too_old != "skip":
        return None
    return TOO_OLD if is_too_old(change.changed_at, now) else None


def ga4_block(change: StageChange) -> str | None:
    if change.attributes.get("ga_client_id"):
        return None
    return change.problems.get("ga_client_id", "no_ga_client_id")


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
