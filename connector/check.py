"""`connector check --online`: ask each API whether this configuration will work.

Nothing is written or ingested: Salesforce is only described, GA4 answers on
its debug endpoint (Measurement Protocol) or Data Manager's `validate_only`,
and Google Ads on `validate_only`, each for one sample event per mapped event
name or conversion action. The Google Ads account and its mapped conversion
actions are read with the OAuth credentials alone: no developer token is
needed (destinations/google_ads/account.py). On the Measurement Protocol, the
GA4 events are also validated through Data Manager when the credentials
allow it, and that path is then recommended: Google validates every event
there, where `/mp/collect` answers 2xx to anything, a wrong api_secret too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connector import exit_codes
from connector.core import GA4, GOOGLE_ADS, Delivery, StageChange, Status, utcnow
from connector.destinations.google_ads.account import Expected, account_checks
from connector.errors import ConnectorError
from connector.mapping.rules import Mapping
from connector.pipeline import build_destinations
from connector.settings import Settings, env_name
from connector.source.auth import connect

SAMPLE_GCLID = "Cj0KCQiA-connectorCheckSample_0123456789"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # ok, but worth a look (detail says what to do)
    # A failure's exit code: a setting to fix (2), a destination's fix (5), or a system
    # that did not answer (3: nothing to fix, try again).
    exit_code: int = exit_codes.CONFIG

    @property
    def status(self) -> str:
        return "fail" if not self.ok else "warn" if self.warning else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "status": self.status, "detail": self.detail}


def exit_code(results: list[CheckResult]) -> int:
    """The exit code of `check --online`: what most needs a person first."""
    failed = {r.exit_code for r in results if not r.ok}
    order = (exit_codes.CONFIG, exit_codes.DESTINATION_NEEDS_FIX, exit_codes.UNAVAILABLE)
    return next((code for code in order if code in failed), exit_codes.OK)


def online_checks(settings: Settings, mapping: Mapping) -> list[CheckResult]:
    results = _salesforce(settings, mapping)
    for destination in build_destinations(settings, mapping):
        try:
            samples = _samples(mapping, destination.name)
            outcomes = destination.deliver(samples, validate_only=True)
        except ConnectorError as exc:
            results.append(CheckResult(destination.name, False, str(exc), exit_code=exc.exit_code))
            continue
        finally:
            destination.close()
        names = {s.id: s.target for s in samples}
        for outcome in outcomes:
            ok = outcome.status == Status.DELIVERED
            detail = "accepted by validation" if ok else (outcome.reason or outcome.error or "")
            code = exit_codes.UNAVAILABLE if outcome.status == Status.PENDING else exit_codes.CONFIG
            name = f"{destination.name} {names[outcome.delivery_id]}"
            results.append(CheckResult(name, ok, detail, exit_code=code))
    results += _ga4_datamanager_advice(settings, mapping)
    results += [
        CheckResult(c.name, c.status != "fail", c.detail, warning=c.status == "warn")
        for c in account_checks(settings.google_ads, expected(mapping))
    ]
    return results


def _ga4_datamanager_advice(settings: Settings, mapping: Mapping) -> list[CheckResult]:
    """On the Measurement Protocol: whether the Data Manager path is open to these credentials."""
    ga4 = settings.ga4
    if not ga4.enabled or ga4.upload_api == "datamanager":
        return []
    name, setting = "ga4 upload path", env_name("ga4", "upload_api")
    if not ga4.property_id:
        detail = f"measurement_protocol; set {env_name('ga4', 'property_id')} to check {setting}"
        return [CheckResult(name, True, detail + "=datamanager (OAuth, validated by Google)")]
    from connector.destinations.ga4.datamanager import GA4DataManagerDestination

    try:
        probe = GA4DataManagerDestination(ga4.model_copy(update={"upload_api": "datamanager"}))
    except ConnectorError:
        return []  # no usable Google credentials: nothing to recommend
    try:
        outcomes = probe.deliver(_samples(mapping, GA4), validate_only=True)
    finally:
        probe.close()
    if not outcomes or any(o.status != Status.DELIVERED for o in outcomes):
        return []
    return [
        CheckResult(
            name,
            True,
            "these credentials can send the GA4 events through the Data Manager API (sample "
            f"validated): set {setting}=datamanager, where Google validates every event and no "
            "api_secret is needed (/mp/collect accepts anything, a wrong secret too)",
            warning=True,
        )
    ]


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
        return [CheckResult("salesforce", False, str(exc), exit_code=exc.exit_code)]
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
