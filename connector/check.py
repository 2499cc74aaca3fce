"""`connector check --online`: ask each API whether this configuration will work.

Nothing is written or ingested: Salesforce is only described, GA4 answers on
its debug endpoint and Data Manager validates with `validate_only`, each for
one sample event per mapped event name or conversion action. The Google Ads
account and its mapped conversion actions are read (destinations/google_ads/account.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connector.core import GA4, GOOGLE_ADS, Delivery, StageChange, Status, utcnow
from connector.destinations.google_ads.account import Expected, account_checks
from connector.errors import ConnectorError
from connector.mapping.rules import Mapping
from connector.pipeline import build_destinations
from connector.settings import Settings
from connector.source.auth import connect

SAMPLE_GCLID = "Cj0KCQiA-connectorCheckSample_0123456789"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # ok, but worth a look (detail says what to do)

    @property
    def status(self) -> str:
        return "fail" if not self.ok else "warn" if self.warning else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "status": self.status, "detail": self.detail}


def online_checks(settings: Settings, mapping: Mapping) -> list[CheckResult]:
    results = _salesforce(settings, mapping)
    for destination in build_destinations(settings, mapping):
        try:
            samples = _samples(mapping, destination.name)
            outcomes = destination.deliver(samples, validate_only=True)
        except ConnectorError as exc:
            results.append(CheckResult(destination.name, False, str(exc)))
            continue
        finally:
            destination.close()
        names = {s.id: s.target for s in samples}
        for outcome in outcomes:
            ok = outcome.status == Status.DELIVERED
            detail = "accepted by validation" if ok else (outcome.reason or outcome.error or "")
            results.append(
                CheckResult(f"{destination.name} {names[outcome.delivery_id]}", ok, detail)
            )
    results += [
        CheckResult(c.name, c.status != "fail", c.detail, warning=c.status == "warn")
        for c in account_checks(settings.google_ads, expected(mapping))
    ]
    return results


def expected(mapping: Mapping) -> Expected:
    """What the Google Ads account must be ready for, by the mapping."""
    return Expected(
        actions=mapping.google_ads_actions(),
        identifiers=mapping.sends_identifiers(),
        currency=mapping.default_currency,
    )


def _salesforce(settings: Settings, mapping: Mapping) -> list[CheckResult]:
    try:
        client = connect(settings.salesforce)
        described = client.restful("sobjects/Lead/describe")
    except ConnectorError as exc:
        return [CheckResult("salesforce", False, str(exc))]
    except Exception as exc:  # simple-salesforce errors carry URLs and bodies: name the kind
        return [CheckResult("salesforce", False, f"describe Lead failed: {type(exc).__name__}")]
    known = {field["name"] for field in (described or {}).get("fields", [])}
    missing = sorted(set(mapping.lead_fields().values()) - known)
    if missing:
        return [CheckResult("salesforce", False, f"Lead fields not found: {', '.join(missing)}")]
    fields = f"logged in; all {len(mapping.lead_fields())} mapped Lead fields exist"
    return [CheckResult("salesforce", True, fields), *_history_tracking(client, mapping)]


def _history_tracking(client: Any, mapping: Mapping) -> list[CheckResult]:
    """Which read mode works: a history object's Field picklist lists the tracked fields."""
    source = mapping.source
    wanted: list[tuple[str, str, list[str], str]] = [
        ("Lead", source.history_object, [source.status_field], source.mode)
    ]
    if (spec := mapping.opportunity) is not None:
        fields = [spec.stage_field, spec.amount_field]
        wanted.append(("Opportunity", spec.history_object, fields, spec.mode))
    results = []
    for sobject, history, fields, mode in wanted:
        try:
            described = client.restful(f"sobjects/{history}/describe")
        except Exception as exc:  # as above: the kind of failure, never the body
            results.append(CheckResult(f"salesforce {history}", False, type(exc).__name__))
            continue
        fields_ = described.get("fields", [])
        picklist: dict[str, Any] = next((f for f in fields_ if f["name"] == "Field"), {})
        tracked = {v["value"] for v in picklist.get("picklistValues", []) if v.get("active")}
        untracked = [f"{sobject}.{f}" for f in fields if f not in tracked]
        results.append(_mode_advice(sobject, mode, untracked))
    return results


def _mode_advice(sobject: str, mode: str, untracked: list[str]) -> CheckResult:
    name = f"salesforce {sobject} {mode} mode"
    if not untracked:
        return CheckResult(name, True, "field history tracking is on: history mode works")
    missing = ", ".join(untracked)
    if mode == "snapshot":
        return CheckResult(name, True, f"no field history tracking on {missing}: snapshot mode")
    return CheckResult(
        name,
        False,
        f"no field history tracking on {missing}: turn it on in Setup (Object Manager > "
        f"{sobject} > Fields & Relationships > Set History Tracking), or set `mode: snapshot` "
        "for this object in the mapping",
    )


def _samples(mapping: Mapping, destination: str) -> list[Delivery]:
    targets: dict[str, str] = {}
    for rule in mapping.rules():
        if destination == GA4 and rule.ga4:
            targets.setdefault(rule.ga4.event, rule.stage)
        if destination == GOOGLE_ADS and rule.google_ads:
            targets.setdefault(rule.google_ads.conversion_action, rule.stage)
    now = utcnow()
    return [
        Delivery(
            id=index,
            destination=destination,
            target=name,
            value=1.0,
            currency=mapping.default_currency,
            attempts=0,
            change=StageChange(
                lead_id="00Qcheck",
                crm_status="check",
                stage=stage,
                changed_at=now - timedelta(minutes=5),
                source_record_id="check",
                lead_created_at=now - timedelta(days=1),
                attributes={"ga_client_id": "1234567890.1700000000", "gclid": SAMPLE_GCLID},
            ),
        )
        for index, (name, stage) in enumerate(sorted(targets.items()), start=1)
    ]
