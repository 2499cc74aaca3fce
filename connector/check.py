"""`connector check --online`: ask each API whether this configuration will work.

Nothing is written or ingested: Salesforce is only described, GA4 answers on
its debug endpoint and Data Manager validates with `validate_only`, each for
one sample event per mapped event name or conversion action.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connector.errors import ConnectorError
from connector.ledger.store import DELIVERED, Delivery, utcnow
from connector.mapping.rules import Mapping
from connector.mapping.translate import GA4, GOOGLE_ADS, StageChange
from connector.pipeline import build_destinations
from connector.settings import Settings
from connector.source.auth import connect

SAMPLE_GCLID = "Cj0KCQiA-connectorCheckSample_0123456789"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


def online_checks(settings: Settings, mapping: Mapping) -> list[CheckResult]:
    results = [_salesforce(settings, mapping)]
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
            ok = outcome.status == DELIVERED
            detail = "accepted by validation" if ok else (outcome.reason or outcome.error or "")
            results.append(
                CheckResult(f"{destination.name} {names[outcome.delivery_id]}", ok, detail)
            )
    return results


def _salesforce(settings: Settings, mapping: Mapping) -> CheckResult:
    try:
        client = connect(settings.salesforce)
        described = client.restful("sobjects/Lead/describe")
    except ConnectorError as exc:
        return CheckResult("salesforce", False, str(exc))
    except Exception as exc:  # simple-salesforce errors carry URLs and bodies: name the kind
        return CheckResult("salesforce", False, f"describe Lead failed: {type(exc).__name__}")
    known = {field["name"] for field in (described or {}).get("fields", [])}
    missing = sorted(set(mapping.lead_fields().values()) - known)
    if missing:
        return CheckResult("salesforce", False, f"Lead fields not found: {', '.join(missing)}")
    return CheckResult(
        "salesforce", True, f"logged in; all {len(mapping.lead_fields())} mapped Lead fields exist"
    )


def _samples(mapping: Mapping, destination: str) -> list[Delivery]:
    rules = list(mapping.stages.values())
    if mapping.opportunity:
        rules += list(mapping.opportunity.stages.values())
    targets: dict[str, str] = {}
    for rule in rules:
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
