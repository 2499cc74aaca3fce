"""`connector init`: read the org (Lead and Opportunity describe) and draft a mapping.

Field roles are guessed from API names and labels (gclid, GA client id, UTM,
consent, ...); every Lead Status and Opportunity StageName value is listed, the
ones whose funnel stage cannot be guessed commented out for a person to decide.
Google Ads conversion actions are the account's: `init` lists them and says which
stage sends to which (drafted names in ADS_ACTIONS); without that, none is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Role -> patterns on the lowercased API name or label (first match wins, in field order).
ROLES: dict[str, tuple[str, ...]] = {
    "gclid": (r"gclid", r"google.?click.?id"),
    "gbraid": (r"gbraid",),
    "wbraid": (r"wbraid",),
    "ga_client_id": (r"(ga|google.?analytics).?client.?id", r"^_?ga_?cid"),
    "utm_source": (r"utm.?source",),
    "utm_medium": (r"utm.?medium",),
    "utm_campaign": (r"utm.?campaign",),
    "consent_ad_user_data": (r"ad.?user.?data",),
    "consent_ad_personalization": (r"ad.?personali[sz]ation",),
    "currency": (r"^currencyisocode$",),
}
# Lead Status / StageName value -> funnel stage, guessed from common names.
STAGE_GUESSES: tuple[tuple[str, str], ...] = (
    (r"not.?converted|disqualif|unqualif|junk", "disqualified"),
    (r"converted", "opportunity"),
    (r"^mql$|marketing.?qualified", "mql"),
    (r"^sql$|sales.?qualified|working", "sql"),
    (r"^(open|new)\b", "lead"),
    (r"closed.?won|^won$", "won"),
    (r"closed.?lost|^lost$", "lost"),
    (r"prospect|qualification|needs|value|decision|perception|proposal|negotiation", "opportunity"),
)
GA4_EVENTS = {
    "lead": "generate_lead",
    "mql": "qualify_lead",
    "sql": "working_lead",
    "opportunity": "create_opportunity",
    "won": "close_convert_lead",
    "lost": "close_unconvert_lead",
    "disqualified": "disqualify_lead",
}
# Stage -> the conversion action name drafted for it (the names the sandbox account uses):
# the stages worth a Google Ads conversion, not the first touch the website tag counts.
ADS_ACTIONS = {
    "mql": "Marketing qualified lead",
    "sql": "Sales qualified lead",
    "opportunity": "Opportunity",
    "won": "Won deal",
}
SAMPLE = 2000  # records read when describe lists no picklist values


@dataclass
class OrgFacts:
    lead_fields: dict[str, str] = field(default_factory=dict)  # role -> API name
    statuses: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    tracked: dict[str, set[str]] = field(default_factory=dict)  # history object -> fields


def read_org(client: Any) -> OrgFacts:
    """Describe Lead, Opportunity and their history objects; a few reads, nothing written."""
    lead = client.restful("sobjects/Lead/describe")["fields"]
    facts = OrgFacts(lead_fields=guess_roles(lead))
    facts.statuses = _values(client, "Lead", "Status", lead)
    opportunity = client.restful("sobjects/Opportunity/describe")["fields"]
    facts.stages = _values(client, "Opportunity", "StageName", opportunity)
    for history in ("LeadHistory", "OpportunityFieldHistory"):
        described = client.restful(f"sobjects/{history}/describe")["fields"]
        picklist: dict[str, Any] = next((f for f in described if f["name"] == "Field"), {})
        facts.tracked[history] = {v["value"] for v in picklist.get("picklistValues", [])}
    return facts


def guess_roles(fields: Iterable[dict[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in fields:
        text = f"{item['name']} {item.get('label') or ''}".lower()
        for role, patterns in ROLES.items():
            if role not in found and any(re.search(p, text) for p in patterns):
                found[role] = item["name"]
                break
    return found


def guess_stage(value: str) -> str | None:
    text = value.lower()
    return next((stage for pattern, stage in STAGE_GUESSES if re.search(pattern, text)), None)


def _values(client: Any, sobject: str, name: str, fields: list[dict[str, Any]]) -> list[str]:
    """The picklist's active values; else the values recent records hold."""
    item = next((f for f in fields if f["name"] == name), {})
    values = [v["value"] for v in item.get("picklistValues") or [] if v.get("active", True)]
    if values:
        return values
    soql = f"SELECT {name} FROM {sobject} ORDER BY CreatedDate DESC LIMIT {SAMPLE}"
    records = client.query(soql)["records"]
    return sorted({str(r[name]) for r in records if r.get(name)})


def sent_stages(facts: OrgFacts) -> dict[str, list[str]]:
    """Funnel stage -> the CRM values whose drafted rule sends it (what a conversion can be
    chosen for), in funnel order."""
    found: dict[str, list[str]] = {}
    for values, opportunity in ((facts.statuses, False), (facts.stages, True)):
        for value in values:
            stage, send = _drafted_stage(value, opportunity=opportunity)
            if stage is not None and send:
                found.setdefault(stage, []).append(value)
    order = list(GA4_EVENTS)
    return dict(sorted(found.items(), key=lambda item: order.index(item[0])))


def draft_mapping(
    facts: OrgFacts, currency: str = "EUR", actions: Mapping[str, str] | None = None
) -> str:
    """The mapping YAML, with comments saying what to decide; `actions` (stage -> conversion
    action name) adds a google_ads target to every rule that sends that stage."""
    actions = actions or {}
    lead_mode = "history" if "Status" in facts.tracked.get("LeadHistory", set()) else "snapshot"
    opp_tracked = facts.tracked.get("OpportunityFieldHistory", set())
    opp_mode = "history" if {"StageName", "Amount"} <= opp_tracked else "snapshot"
    lines = [
        "# Drafted by `connector init` from the org's describe: review every line.",
        "# Statuses whose funnel stage could not be guessed are commented out: an unlisted",
        "# status is recorded as `unknown_stage` and sent nowhere.",
        _ads_comment(actions),
        "version: 1",
        "",
        "source:",
        "  object: Lead",
        f"  mode: {lead_mode}                # history needs Field History Tracking on Status",
        "  history_object: LeadHistory",
        "  status_field: Status",
        "  fields:",
        "    email: Email",
        "    phone: Phone",
        "    lead_source: LeadSource",
    ]
    for role in ROLES:
        name = facts.lead_fields.get(role)
        lines.append(f"    {role}: {name}" if name else f"    # {role}: <no field found>")
    lines += ["", f"default_currency: {currency}", "ga4_too_old: skip", "", "stages:"]
    lines += _stage_lines(facts.statuses, "  ", actions, opportunity=False)
    lines += [
        "",
        "opportunity:",
        f"  mode: {opp_mode}   # history needs tracking on StageName and Amount",
        "  history_object: OpportunityFieldHistory",
        "  stage_field: StageName",
        "  amount_field: Amount",
        "  stages:",
    ]
    lines += _stage_lines(facts.stages, "    ", actions, opportunity=True)
    return "\n".join(lines) + "\n"


def _ads_comment(actions: Mapping[str, str]) -> str:
    if actions:
        return "# google_ads.conversion_action: chosen at init (an id or the exact name)."
    return '# google_ads: add {conversion_action: "<id or name>", value: {...}} per stage to send.'


def _drafted_stage(value: str, *, opportunity: bool) -> tuple[str | None, bool]:
    """(the funnel stage guessed for a CRM value, whether its drafted rule sends it)."""
    stage = guess_stage(value)
    if opportunity and stage not in ("won", "lost", None):
        # The lead's conversion already counted the opportunity: its stages are only recorded.
        return "opportunity", False
    return stage, stage is not None


def _stage_lines(
    values: list[str], indent: str, actions: Mapping[str, str], *, opportunity: bool
) -> list[str]:
    lines = []
    for value in values:
        stage, send = _drafted_stage(value, opportunity=opportunity)
        key = _yaml_key(value)
        if stage is None:
            lines.append(f"{indent}# {key}: {{stage: ...}}   # lead, mql, sql, opportunity, ...")
            continue
        value_rule = ", value: {field: Amount}" if stage == "won" else ""
        ga4 = f", ga4: {{event: {GA4_EVENTS[stage]}{value_rule}}}" if send else ""
        action = actions.get(stage) if send else None
        # A JSON string is a valid YAML double-quoted scalar: any name, quotes included.
        ads = f", google_ads: {{conversion_action: {json.dumps(action)}{value_rule}}}"
        lines.append(f"{indent}{key}: {{stage: {stage}{ga4}{ads if action else ''}}}")
    if not lines:
        lines.append(f"{indent}{{}}")
    return lines


def _yaml_key(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return value if re.fullmatch(r"[A-Za-z][A-Za-z0-9 _-]*", value) else json.dumps(value)
