"""A deterministic, realistic B2B Salesforce dataset for the sandbox and the tests.

Leads move through a funnel (Open -> MQL -> SQL -> Closed - Converted), some are
disqualified, a few land in a status no mapping knows ("Nurture"); converted
leads get an Opportunity that may be won or lost. The data is deliberately
messy the way CRM data is: national phone formats, gmail dots and +tags,
invalid emails, malformed click ids, unknown currencies, won deals without an
amount. Records are plain dicts in Salesforce REST shape. `google_ads_account`
gives the Google Ads side: a campaign per paid search `utm_campaign`, its cost
per day, and the click behind each lead's gclid.
"""

from __future__ import annotations

import math
import random
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX_CHARS = string.ascii_uppercase + "012345"
_CLICK_ID_CHARS = string.ascii_letters + string.digits + "_-"

OPEN, MQL, SQL = "Open", "MQL", "SQL"
CONVERTED, NOT_CONVERTED, NURTURE = "Closed - Converted", "Closed - Not Converted", "Nurture"
OPP_OPEN_STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation")
WON, LOST = "Closed Won", "Closed Lost"


def _words(text: str, sep: str = " ") -> tuple[str, ...]:
    return tuple(text.split(sep))


_FIRST_NAMES = _words(
    "Anna Lukas Marie Jonas Sophie Felix Emma Paul Laura Leon James Olivia Liam Charlotte Noah "
    "Amelia Lucas Chloé Hugo Léa Mateo Sofía Giulia Marco Sean Aoife Priya Arjun Mei Kenji"
)
_LAST_NAMES = _words(
    "Müller|Schmidt|Schneider|Fischer|Weber|Meyer|Wagner|Becker|Smith|Johnson|Brown|Taylor|"
    "Wilson|Martin|Bernard|Dubois|Rossi|Russo|García|Fernández|O'Brien|Murphy|Patel|Sharma|"
    "Tanaka|Nakamura|van der Berg|de Vries|Kowalski|Nowak",
    "|",
)
_COMPANY_STEMS = _words(
    "Nord Blue Alpen Rhein Data Cloud Quant Pixel Vector Helix Atlas Orbit Nimbus Cobalt "
    "Granite Lumen Vertex Kraft Summit Delta"
)
_COMPANY_TAILS = ("works", "soft", "logic", "tech", "labs", "systems", "data", "ware", "line")
_COMPANY_FORMS = ("GmbH", "AG", "Ltd", "Inc.", "SAS", "B.V.", "S.r.l.", "LLC", "")
_CURRENCIES = (("EUR", 0.74), ("USD", 0.16), ("GBP", 0.095), ("XYZ", 0.005))
# (LeadSource, utm_source, utm_medium, weight) for leads without a Google click.
_CHANNELS = (
    ("Social", "linkedin", "paid_social", 0.20),
    ("Email", "newsletter", "email", 0.15),
    ("Web", "google", "organic", 0.25),
    ("Referral", "partner-site.example", "referral", 0.10),
    ("Trade Show", None, None, 0.12),
    ("Web", None, None, 0.18),
)
_CAMPAIGNS = ("brand_de", "nonbrand_crm_emea", "nonbrand_sales_us", "retargeting_q4", "pmax_uk")
# Per campaign: cost per click in EUR micros and clicks per lead (brand converts best).
_CAMPAIGN_ECONOMICS = {
    "brand_de": (1_200_000, 12),
    "nonbrand_crm_emea": (5_800_000, 30),
    "nonbrand_sales_us": (7_400_000, 34),
    "retargeting_q4": (2_100_000, 18),
    "pmax_uk": (3_300_000, 26),
}
CAMPAIGN_IDS = {name: 21_000_000_001 + i for i, name in enumerate(_CAMPAIGNS)}
_VALID_CLICK_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass
class SalesforceData:
    """The generated records, one list per Salesforce object."""

    leads: list[dict[str, Any]] = field(default_factory=list)
    lead_history: list[dict[str, Any]] = field(default_factory=list)
    opportunities: list[dict[str, Any]] = field(default_factory=list)
    opportunity_history: list[dict[str, Any]] = field(default_factory=list)
    currency_types: list[dict[str, Any]] = field(default_factory=list)
    dated_rates: list[dict[str, Any]] = field(default_factory=list)

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """Object name -> records, the shape `SalesforceEmulator` takes."""
        tables = {
            "Lead": self.leads,
            "LeadHistory": self.lead_history,
            "Opportunity": self.opportunities,
            "OpportunityFieldHistory": self.opportunity_history,
        }
        # A multi-currency org with advanced currency management; absent: single-currency.
        if self.currency_types:
            tables["CurrencyType"] = self.currency_types
        if self.dated_rates:
            tables["DatedConversionRate"] = self.dated_rates
        return tables


def sf_id(prefix: str, number: int) -> str:
    """An 18-character Salesforce-style id: key prefix, pod, counter, case-safe suffix."""
    digits = ""
    for _ in range(9):
        number, rest = divmod(number, len(_ALPHABET))
        digits = _ALPHABET[rest] + digits
    base = f"{prefix}5g0{digits}"[:15]
    return base + _case_suffix(base)


def _case_suffix(base: str) -> str:
    # Salesforce's own checksum: one char per 5-char chunk encoding which chars are uppercase.
    suffix = ""
    for chunk in (base[0:5], base[5:10], base[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if ch.isupper())
        suffix += _SUFFIX_CHARS[bits]
    return suffix


def sf_datetime(value: datetime) -> str:
    """Salesforce REST datetime text, always UTC: `2026-11-20T14:03:11.000+0000`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def sf_date(value: date | datetime) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date()
    return value.isoformat()


def generate(n_leads: int = 3000, seed: int = 7, now: datetime | None = None) -> SalesforceData:
    """`n_leads` leads with their history and opportunities; same seed and `now`, same data."""
    if now is None:
        now = datetime.now(UTC)
    now = now.astimezone(UTC).replace(microsecond=0)
    rng = random.Random(seed)
    # At least an hour old, so squeezed stage changes still fit before `now`.
    ages = sorted((rng.randrange(3600, 120 * 86_400) for _ in range(n_leads)), reverse=True)
    builder = _Builder(rng, now)
    for age in ages:  # oldest first: lead ids grow with CreatedDate, as in a real org
        builder.add_lead(now - timedelta(seconds=age))
    data = builder.finish()
    data.currency_types, data.dated_rates = currency_rates(now)
    return data


# Units per euro (the corporate currency): current, then monthly from 5 months back.
# XYZ, a CRM typo, has no rate: its won deals stay unvalued in the report.
_RATES = {
    "EUR": (1.0, ()),
    "USD": (1.08, (1.05, 1.07, 1.10, 1.09, 1.08)),
    "GBP": (0.86, (0.84, 0.85, 0.87, 0.86, 0.86)),
    "CHF": (0.94, ()),
}


def currency_rates(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """CurrencyType and DatedConversionRate records (no randomness: the leads stay the same)."""
    created = sf_datetime(now - timedelta(days=400))
    current = [
        {
            "Id": sf_id("02c", i + 1),
            "IsoCode": code,
            "ConversionRate": rate,
            "DecimalPlaces": 2,
            "IsActive": True,
            "IsCorporate": code == "EUR",
            "CreatedDate": created,
        }
        for i, (code, (rate, _)) in enumerate(_RATES.items())
    ]
    months = [_month_start(now, back) for back in range(len(_RATES["USD"][1]), -1, -1)]
    dated: list[dict[str, Any]] = []
    for code, (_, monthly) in _RATES.items():
        for i, rate in enumerate(monthly):
            until = months[i + 1] if i + 1 < len(monthly) else None
            dated.append(
                {
                    "Id": sf_id("04w", len(dated) + 1),
                    "IsoCode": code,
                    "ConversionRate": rate,
                    "StartDate": sf_date(months[i]),
                    "NextStartDate": sf_date(until) if until else None,
                    "CreatedDate": created,
                }
            )
    return current, dated


def _month_start(now: datetime, back: int) -> date:
    year, month = divmod(now.year * 12 + now.month - 1 - back, 12)
    return date(year, month + 1, 1)


class _Builder:
    def __init__(self, rng: random.Random, now: datetime) -> None:
        self.rng = rng
        self.now = now
        self.data = SalesforceData()
        self._counters: dict[str, int] = {}

    def next_id(self, prefix: str) -> str:
        # Start high and step irregularly so ids look like a busy org's, not 1, 2, 3.
        count = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = count
        return sf_id(prefix, 48_000_000 + count * 37 + self.rng.randrange(37))

    def add_lead(self, created: datetime) -> None:
        lead = {"Id": self.next_id("00Q"), "CreatedDate": sf_datetime(created), "IsDeleted": False}
        lead |= _lead_identity(self.rng) | _lead_tracking(self.rng, created)
        path = _lead_path(self.rng)
        times = _stage_times(self.rng, created, self.now, len(path) - 1, (1, 12))
        self._lead_history(lead, path, times)
        lead |= _conversion_fields(None, None, None)
        if path[-1] == CONVERTED:
            self._convert(lead, times[-1])
        lead |= {"Status": path[-1], "SystemModstamp": sf_datetime(times[-1])}
        self.data.leads.append(lead)

    def _history(self, table: list[dict[str, Any]], parent: tuple[str, str], **row: Any) -> None:
        table.append({"Id": self.next_id("017"), parent[0]: parent[1], **row, "IsDeleted": False})

    def _lead_history(self, lead: dict[str, Any], path: list[str], times: list[datetime]) -> None:
        table, parent = self.data.lead_history, ("LeadId", lead["Id"])
        when = sf_datetime(times[0])
        self._history(
            table, parent, Field="created", OldValue=None, NewValue=None, CreatedDate=when
        )
        for old, new, at in zip(path[:-1], path[1:], times[1:], strict=True):
            change = {"OldValue": old, "NewValue": new, "CreatedDate": sf_datetime(at)}
            self._history(table, parent, Field="Status", **change)
        if self.rng.random() < 0.15:  # noise a Field = 'Status' filter must skip
            rated = times[0] + (times[-1] - times[0]) / 2 + timedelta(minutes=5)
            rating = {"OldValue": None, "NewValue": self.rng.choice(("Hot", "Warm", "Cold"))}
            self._history(table, parent, Field="Rating", CreatedDate=sf_datetime(rated), **rating)

    def _convert(self, lead: dict[str, Any], converted_at: datetime) -> None:
        opp_id = self.next_id("006")
        lead |= _conversion_fields(opp_id, self.next_id("003"), self.next_id("001"))
        lead |= {"IsConverted": True, "ConvertedDate": sf_date(converted_at)}
        opp = _opportunity(self.rng, lead, opp_id, converted_at)
        self._opportunity_history(opp, converted_at)
        self.data.opportunities.append(opp)

    def _opportunity_history(self, opp: dict[str, Any], created: datetime) -> None:
        path = _opportunity_path(self.rng)
        times = _stage_times(self.rng, created, self.now, len(path) - 1, (2, 20))
        table, parent = self.data.opportunity_history, ("OpportunityId", opp["Id"])
        self._history(
            table,
            parent,
            Field="created",
            OldValue=None,
            NewValue=None,
            CreatedDate=opp["CreatedDate"],
        )
        for old, new, at in zip(path[:-1], path[1:], times[1:], strict=True):
            change = {"OldValue": old, "NewValue": new, "CreatedDate": sf_datetime(at)}
            self._history(table, parent, Field="StageName", **change)
        self._settle_amount(opp, path[-1], times[-1])
        opp |= {
            "StageName": path[-1],
            "IsClosed": path[-1] in (WON, LOST),
            "IsWon": path[-1] == WON,
        }
        close = (
            _signed(opp, times[-1], created)
            if opp["IsClosed"]
            else self.now + timedelta(days=self.rng.randint(7, 90))  # the expected close
        )
        opp |= {"CloseDate": sf_date(close), "SystemModstamp": sf_datetime(times[-1])}

    def _settle_amount(self, opp: dict[str, Any], stage: str, at: datetime) -> None:
        """A won deal's amount is often restated on closing; a few are won without one."""
        if stage == WON and self.rng.random() < 0.04:
            opp["Amount"] = None
            return
        if stage != WON or self.rng.random() < 0.6:
            return
        final = _amount(self.rng)
        if final != opp["Amount"]:
            change = {"OldValue": opp["Amount"], "NewValue": final, "CreatedDate": sf_datetime(at)}
            parent = ("OpportunityId", opp["Id"])
            self._history(self.data.opportunity_history, parent, Field="Amount", **change)
            opp["Amount"] = final

    def finish(self) -> SalesforceData:
        for table in self.data.tables().values():
            table.sort(key=lambda record: (record["CreatedDate"], record["Id"]))
        # History rows are written lead by lead; renumber so their ids, too, follow time.
        self._counters.pop("017", None)
        for row in self.data.lead_history + self.data.opportunity_history:
            row["Id"] = self.next_id("017")
        return self.data


def _signed(opp: dict[str, Any], recorded: datetime, created: datetime) -> datetime:
    """A closed deal's CloseDate: often the day its stage was set, else the day it was signed,
    up to a week before (a rep catching up), never before the opportunity existed.

    Drawn from the deal's own id, not the dataset's generator, so every other record
    stays as it was generated before CloseDate mattered.
    """
    own = random.Random(opp["Id"])
    back = 0 if own.random() < 0.6 else own.randint(1, 7)
    return max(recorded - timedelta(days=back), created)


def _conversion_fields(
    opp_id: str | None, contact: str | None, account: str | None
) -> dict[str, Any]:
    return {
        "IsConverted": opp_id is not None,
        "ConvertedDate": None,
        "ConvertedOpportunityId": opp_id,
        "ConvertedContactId": contact,
        "ConvertedAccountId": account,
    }


def _lead_path(rng: random.Random) -> list[str]:
    """The statuses one lead goes through: 45% reach MQL, 30% of those SQL, 40% of those convert."""
    if rng.random() >= 0.45:
        return _dead_end(rng, [OPEN], disqualify=0.25, nurture=0.02)
    # A few sales teams skip MQL and accept a lead straight as SQL.
    if rng.random() >= 0.30:
        return _dead_end(rng, [OPEN, MQL], disqualify=0.35, nurture=0.04)
    path = [OPEN, SQL] if rng.random() < 0.05 else [OPEN, MQL, SQL]
    if rng.random() < 0.40:
        return [*path, CONVERTED]
    return _dead_end(rng, path, disqualify=0.50, nurture=0.0)


def _dead_end(rng: random.Random, path: list[str], disqualify: float, nurture: float) -> list[str]:
    roll = rng.random()
    if roll < disqualify:
        return [*path, NOT_CONVERTED]
    if roll < disqualify + nurture:
        return [*path, NURTURE]
    return path


def _opportunity_path(rng: random.Random) -> list[str]:
    roll = rng.random()
    if roll < 0.25:
        return [*OPP_OPEN_STAGES, WON] if rng.random() < 0.7 else ["Prospecting", "Proposal", WON]
    reached = list(OPP_OPEN_STAGES[: rng.randint(1, len(OPP_OPEN_STAGES))])
    return [*reached, LOST] if roll < 0.80 else reached


def _stage_times(
    rng: random.Random, start: datetime, now: datetime, changes: int, gap_days: tuple[int, int]
) -> list[datetime]:
    """`changes` strictly increasing times after `start`, days apart, all before `now`.

    Gaps that would run past `now` are squeezed to fit, which keeps the funnel
    rates independent of a lead's age and puts recent leads' changes in the
    last hours and days (the 72-hour GA4 window matters for them).
    """
    gaps = [rng.uniform(*gap_days) * 86_400 + rng.randrange(3600) for _ in range(changes)]
    room = (now - start).total_seconds() * 0.97
    scale = min(1.0, room / sum(gaps)) if gaps else 1.0
    times, at = [start], start
    for gap in gaps:
        at += timedelta(seconds=max(1, int(gap * scale)))
        times.append(at)
    return times


def _opportunity(
    rng: random.Random, lead: dict[str, Any], opp_id: str, at: datetime
) -> dict[str, Any]:
    return {
        "Id": opp_id,
        "Name": f"{lead['Company']} - New Business",
        "StageName": "Prospecting",
        "Amount": _amount(rng),
        "CurrencyIsoCode": lead["CurrencyIsoCode"],
        "CreatedDate": sf_datetime(at),
        "IsDeleted": False,
    }


def _amount(rng: random.Random) -> float:
    # Lognormal around 25k: most deals 10k-60k, a long tail of big ones.
    return float(round(math.exp(rng.gauss(math.log(25_000), 0.6)), -2))


def _weighted(rng: random.Random, options: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    return rng.choices(options, weights=[option[-1] for option in options])[0]


def _lead_identity(rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    company, domain = _company(rng)
    return {
        "FirstName": first,
        "LastName": last,
        "Email": _email(rng, first, last, domain),
        "Phone": _phone(rng),
        "Company": company,
        "CurrencyIsoCode": _weighted(rng, _CURRENCIES)[0],
    }


def _company(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(_COMPANY_STEMS) + rng.choice(_COMPANY_TAILS)
    form = rng.choice(_COMPANY_FORMS)
    return (f"{name} {form}".strip(), f"{name.lower()}.example")


def _ascii(text: str) -> str:
    table = str.maketrans({"ü": "ue", "é": "e", "í": "i", "á": "a", "'": "", " ": ""})
    return text.lower().translate(table)


def _email(rng: random.Random, first: str, last: str, domain: str) -> str | None:
    local = f"{_ascii(first)}.{_ascii(last)}"
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.065:
        return rng.choice(("john@", "no email", "n/a", "anna.schmidt@@example", "max@example"))
    if roll < 0.16:  # private mailbox: gmail ignores dots and +tags, hashing must too
        tag = rng.choice(("", "", "+crm", "+newsletter"))
        return f"{local}{tag}@{rng.choice(('gmail.com', 'googlemail.com'))}"
    email = f"{local}@{domain}"
    if rng.random() < 0.06:
        email = email.title() if rng.random() < 0.5 else email.upper()
    if rng.random() < 0.04:
        email = f" {email}  "
    return email


def _phone(rng: random.Random) -> str | None:
    roll = rng.random()
    n = [rng.randrange(10) for _ in range(10)]
    if roll < 0.15:
        return None
    if roll < 0.45:  # German national format, as typed into the CRM
        return (
            f"0{rng.choice((621, 30, 89, 40))} {n[0]}{n[1]}{n[2]} {n[3]}{n[4]}{n[5]} {n[6]}{n[7]}"
        )
    if roll < 0.65:
        return f"({rng.choice((415, 212, 646, 312))}) 555-{n[0]}{n[1]}{n[2]}{n[3]}"
    if roll < 0.75:
        return f"+44 20 7946 {n[0]}{n[1]}{n[2]}{n[3]}"
    if roll < 0.98:
        return "+49" + rng.choice(("621", "30", "89")) + "".join(map(str, n[:8]))
    return rng.choice(("n/a", "12", "call me"))


def _click_id(rng: random.Random, prefix: str) -> str:
    length = rng.randint(60, 100) - len(prefix)
    return prefix + "".join(rng.choice(_CLICK_ID_CHARS) for _ in range(length))


def _lead_tracking(rng: random.Random, created: datetime) -> dict[str, Any]:
    tracking = _click_ids(rng)
    if tracking["GCLID__c"] or tracking["GBRAID__c"] or tracking["WBRAID__c"]:
        channel: tuple[Any, ...] = ("Paid Search", "google", "cpc")
        campaign: str | None = rng.choice(_CAMPAIGNS)
    else:
        channel = _weighted(rng, _CHANNELS)
        campaign = rng.choice(_CAMPAIGNS) if channel[2] in ("paid_social", "email") else None
    tracking |= {
        "LeadSource": channel[0],
        "UTM_Source__c": channel[1],
        "UTM_Medium__c": channel[2],
        "UTM_Campaign__c": campaign,
        "GA_Client_ID__c": _ga_client_id(rng, created) if rng.random() < 0.70 else None,
    }
    return tracking | _consent(rng)


def _click_ids(rng: random.Random) -> dict[str, str | None]:
    ids: dict[str, str | None] = {"GCLID__c": None, "GBRAID__c": None, "WBRAID__c": None}
    roll = rng.random()
    if roll < 0.35:
        ids["GCLID__c"] = _click_id(rng, rng.choice(("Cj0KCQiA", "Cj0KCQjw", "EAIaIQobChMI")))
        if rng.random() < 0.015:  # copy-paste damage an upload must reject
            gclid = ids["GCLID__c"] or ""
            ids["GCLID__c"] = rng.choice((gclid[:30] + " " + gclid[30:], gclid + "!", f" {gclid}"))
    elif roll < 0.37:
        ids["GBRAID__c"] = _click_id(rng, "0AAAAAD")
    elif roll < 0.38:
        ids["WBRAID__c"] = _click_id(rng, "ClkKCQ")
    elif roll < 0.383:  # both braids set: Google Ads rejects the pair
        ids["GBRAID__c"], ids["WBRAID__c"] = _click_id(rng, "0AAAAAD"), _click_id(rng, "ClkKCQ")
    return ids


def _ga_client_id(rng: random.Random, created: datetime) -> str:
    first_visit = created - timedelta(days=rng.randint(0, 200), seconds=rng.randrange(86_400))
    return f"{rng.randrange(10**8, 2**31)}.{int(first_visit.timestamp())}"


def _consent(rng: random.Random) -> dict[str, str | None]:
    roll = rng.random()
    if roll < 0.80:
        user_data: str | None = "Granted"
        personalization: str | None = "Granted" if rng.random() < 0.92 else "Denied"
    elif roll < 0.90:
        user_data, personalization = "Denied", "Denied"
    else:
        user_data, personalization = None, None
    return {"Consent_Ad_User_Data__c": user_data, "Consent_Ad_Personalization__c": personalization}


@dataclass(frozen=True)
class AdCampaign:
    id: int
    name: str
    days: dict[date, tuple[int, int]]  # day -> (cost_micros, clicks)


@dataclass(frozen=True)
class AdClick:
    gclid: str
    day: date
    campaign_id: int


@dataclass(frozen=True)
class AdAccount:
    """Plain data, so generating a dataset needs no Google Ads library."""

    campaigns: list[AdCampaign]
    clicks: list[AdClick]


def google_ads_account(data: SalesforceData, seed: int = 7) -> AdAccount:
    """The Google Ads campaigns behind the leads' gclids: each click on the lead's CreatedDate
    in the campaign of its `utm_campaign`, and each campaign's daily cost from its clicks
    (the leads' and those that brought none). A damaged gclid has no click at Google."""
    clicks = [
        AdClick(gclid, _created_day(lead), CAMPAIGN_IDS[lead["UTM_Campaign__c"]])
        for lead in data.leads
        # Padded with spaces in the CRM is still Google's click; other damage is not one.
        if (gclid := (lead["GCLID__c"] or "").strip())
        and _VALID_CLICK_ID.fullmatch(gclid)
        and lead["UTM_Campaign__c"] in CAMPAIGN_IDS
    ]
    leads_per_day: dict[tuple[int, date], int] = {}
    for click in clicks:
        key = (click.campaign_id, click.day)
        leads_per_day[key] = leads_per_day.get(key, 0) + 1
    days = sorted({day for _, day in leads_per_day})
    campaigns = [
        _campaign(name, days, leads_per_day, random.Random(f"{seed}:{name}")) for name in _CAMPAIGNS
    ]
    return AdAccount(campaigns, clicks)


def _campaign(
    name: str, days: list[date], leads: dict[tuple[int, date], int], rng: random.Random
) -> AdCampaign:
    """A campaign spending every day of the dataset, more on days it brought leads."""
    cpc, per_lead = _CAMPAIGN_ECONOMICS[name]
    campaign_id = CAMPAIGN_IDS[name]
    spend: dict[date, tuple[int, int]] = {}
    for day in days:
        n = leads.get((campaign_id, day), 0) * per_lead + rng.randint(2, per_lead)
        spend[day] = (int(n * cpc * rng.uniform(0.8, 1.2)), n)
    return AdCampaign(campaign_id, name, spend)


def _created_day(lead: dict[str, Any]) -> date:
    return datetime.strptime(lead["CreatedDate"], "%Y-%m-%dT%H:%M:%S.000%z").astimezone(UTC).date()
