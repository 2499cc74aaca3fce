"""`connector replay`: recorded changes re-evaluated through a mapping, compared with what
was done, and what the mapping now sends but never was queued for the next sync.

A recorded change keeps what a mapping needs: the CRM status, and the normalised
attributes (hashed ids, click ids, GA client id, consent, UTM). Of the CRM fields a value
rule can read, only the deal's amount is recorded (with every opportunity change); where
a rule needs a field that was not, the row says so and keeps the value that was decided.
Deal adjustments (restatements, retractions) depend on the status before, which is not
recorded: they are shown as they were, never re-decided.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from connector.core import DESTINATIONS, GA4, GOOGLE_ADS, UNMAPPED, Mapped, Status, Target
from connector.destinations.google_ads.eligibility import blocked
from connector.ledger import Ledger
from connector.ledger.replay import Done, Queue, Recorded, queue, recorded_since
from connector.mapping.currency import currencies_in_use
from connector.mapping.once import first_reached
from connector.mapping.rules import Mapping, StageRule, Value
from connector.mapping.translate import ga4_block

NEWLY_SENT, NO_LONGER_SENT, VALUE_CHANGED, TARGET_CHANGED = (
    "newly_sent",
    "no_longer_sent",
    "value_changed",
    "target_changed",
)
VALUE_UNKNOWN = "value_unknown"  # the rule reads a CRM field the ledger did not record
KINDS = (NEWLY_SENT, NO_LONGER_SENT, VALUE_CHANGED, TARGET_CHANGED, VALUE_UNKNOWN, "unchanged")
FIELD_NOT_RECORDED = "crm_field_not_recorded"
# The skips a mapping change can cure: a value rule's. The others come from the row's data
# (identifiers, consent, the lead) or from the destination when it was sent (too old, too
# recent): a new mapping does not change them.
VALUE_SKIPS = frozenset({"missing_amount", "invalid_amount", "unknown_currency"})


@dataclass
class _Now:
    """A recorded change as the mapping decides it now."""

    recorded: Recorded
    stage: str
    targets: dict[str, Target]
    notes: dict[str, str] = field(default_factory=dict)  # by destination


@dataclass
class ReplayResult:
    since: datetime
    dry_run: bool
    changes: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # what would change, per row
    counts: dict[str, Counter[str]] = field(default_factory=dict)  # destination -> kind -> n
    queued: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "dry_run": self.dry_run,
            "changes": self.changes,
            "destinations": {
                d: {kind: c[kind] for kind in KINDS} for d, c in sorted(self.counts.items())
            },
            "queued": self.queued,
        }


def replay(ledger: Ledger, mapping: Mapping, since: datetime, *, dry_run: bool) -> ReplayResult:
    """Compare; unless a dry run, queue the rows the mapping now sends and none was made for."""
    recorded = recorded_since(ledger.db, since)
    result = ReplayResult(since=since, dry_run=dry_run, changes=len(recorded))
    decided = _once(ledger, [_decide(r, mapping) for r in recorded])
    to_queue: list[Queue] = []
    for now in decided:
        fresh = _compare(now, result)
        if fresh:
            to_queue.append(Queue(now.recorded.id, now.stage, fresh))
    added = queue(ledger.db, to_queue) if not dry_run and to_queue else set()
    result.queued = len(added)
    for row in result.rows:  # queued: a row was added (a dry run adds none)
        row["queued"] = (row.pop("change_id"), row["destination"]) in added
    return result


def _decide(recorded: Recorded, mapping: Mapping) -> _Now:
    change = recorded.change
    if change.restatement or change.retracts:  # needs the status before: as it was
        kept = {d: Target(d, x.target, x.value, x.currency, _skip(x)) for d, x in _done(recorded)}
        return _Now(recorded, change.stage, kept)
    rule = mapping.rule_for(change.crm_status, opportunity=change.opportunity_id is not None)
    if rule is None:
        return _Now(recorded, UNMAPPED, {})
    problems = {k: v for k, v in change.problems.items() if k != "stage"}
    mapped = replace(change, stage=rule.stage, problems=problems)
    now = _Now(recorded, rule.stage, {})
    for destination, name, spec in _rule_targets(rule):
        value, currency, problem, note = _value(spec, recorded, destination, mapping)
        block = ga4_block(mapped) if destination == GA4 else blocked(mapped)
        reason = problems.get("lead") or problem or block
        now.targets[destination] = Target(destination, name, value, currency, reason)
        if note:
            now.notes[destination] = note
    return now


def _rule_targets(rule: StageRule) -> list[tuple[str, str, Value | None]]:
    found = []
    if rule.ga4 is not None:
        found.append((GA4, rule.ga4.event, rule.ga4.value))
    if rule.google_ads is not None:
        found.append((GOOGLE_ADS, rule.google_ads.conversion_action, rule.google_ads.value))
    return found


def _value(
    spec: Value | None, recorded: Recorded, destination: str, mapping: Mapping
) -> tuple[float | None, str | None, str | None, str | None]:
    """(value, currency, problem, note): a CRM field's value is known only as recorded."""
    if spec is None:
        return None, None, None, None
    change = recorded.change
    if spec.field is None:
        amount = spec.fixed
    elif (deal := _deal_amount(spec.field, recorded, mapping)).recorded:
        if deal.amount is None:
            return None, None, "missing_amount", None  # as a sync would skip it
        amount = deal.amount
    elif (done := recorded.done.get(destination)) is not None:
        note = f"{FIELD_NOT_RECORDED}: {spec.field} (the value decided before is kept)"
        return done.value, done.currency, None, note
    else:
        # Sent without the value the rule asks for would be wrong: it stays unsent.
        return None, None, FIELD_NOT_RECORDED, f"{FIELD_NOT_RECORDED}: {spec.field}"
    currency = spec.currency or change.attributes.get("currency") or mapping.default_currency
    if currency not in currencies_in_use():
        return None, None, "unknown_currency", None
    return amount, currency, None, None


class _DealAmount(NamedTuple):
    recorded: bool  # False: the ledger does not know it
    amount: float | None  # None, when recorded: the deal had no valid amount


def _deal_amount(name: str, recorded: Recorded, mapping: Mapping) -> _DealAmount:
    """The deal's amount field, the one CRM field the ledger keeps: as read with every
    opportunity change (`deal_amount`), or in an older ledger as it was sent (`amount`)."""
    change, deal = recorded.change, mapping.opportunity
    if change.opportunity_id is None or deal is None or name != deal.amount_field:
        return _DealAmount(False, None)
    attributes = change.attributes
    if "deal_amount" in attributes:
        amount = attributes["deal_amount"]
        return _DealAmount(True, None if amount is None else float(amount))
    sent = attributes.get("amount")
    return _DealAmount(sent is not None, None if sent is None else float(sent))


def _once(ledger: Ledger, decided: list[_Now]) -> list[_Now]:
    """A stage reached before is sent nowhere (`connector.mapping.once`), as in a sync."""
    batch = [
        Mapped(replace(n.recorded.change, stage=n.stage), list(n.targets.values())) for n in decided
    ]
    reached = ledger.changes.reached(n.recorded.change.lead_id for n in decided)
    for now, mapped in zip(decided, first_reached(batch, reached), strict=True):
        if now.stage != now.recorded.change.stage:  # only a new stage can be a re-entry now
            now.targets = {t.destination: t for t in mapped.targets}
    return decided


def _compare(now: _Now, result: ReplayResult) -> list[Target]:
    """Add the rows that change to `result`; return the targets to queue (no row yet)."""
    fresh = []
    for destination in DESTINATIONS:
        was = now.recorded.done.get(destination)
        target = now.targets.get(destination)
        kind = _kind(was, target)
        if kind is None and destination in now.notes:
            kind = VALUE_UNKNOWN  # said per row, though nothing else changes
        counts = result.counts.setdefault(destination, Counter())
        counts[kind or "unchanged"] += 1
        if kind is None:
            continue
        if kind == NEWLY_SENT and was is None and target is not None:
            fresh.append(target)
        result.rows.append(_row(now, destination, kind, was, target))
    return fresh


def _kind(was: Done | None, target: Target | None) -> str | None:
    was_sent = was is not None and was.status != Status.SKIPPED
    if was is not None and not was_sent and was.reason not in VALUE_SKIPS:
        return None  # skipped for a reason no mapping decides: still so
    now_sent = target is not None and target.skip_reason is None
    if now_sent and not was_sent:
        return NEWLY_SENT
    if was_sent and not now_sent:
        return NO_LONGER_SENT
    if was is None or target is None or not now_sent:
        return None
    if was.target != target.name:
        return TARGET_CHANGED
    if (was.value, was.currency) != (target.value, target.currency):
        return VALUE_CHANGED
    return None


def _row(
    now: _Now, destination: str, kind: str, was: Done | None, target: Target | None
) -> dict[str, Any]:
    change = now.recorded.change
    note = now.notes.get(destination)
    if kind == NEWLY_SENT and was is not None:
        note = f"a {was.status} row exists ({was.reason}): left alone"
    elif kind != NEWLY_SENT and was is not None and was.status == Status.DELIVERED:
        note = note or "already delivered: left as it is"
    return {
        "change_id": now.recorded.id,  # internal: which rows `queue` added
        "destination": destination,
        "change": kind,
        "lead_id": change.lead_id,
        "crm_status": change.crm_status,
        "time": change.changed_at.isoformat(),
        "stage_before": change.stage,
        "stage_now": now.stage,
        "target_before": was.target if was else None,
        "target_now": target.name if target else None,
        "value_before": was.value if was else None,
        "value_now": target.value if target else None,
        "currency": (target.currency if target else None) or (was.currency if was else None),
        "status_before": was.status if was else None,
        "reason_now": target.skip_reason
        if target
        else (None if now.stage != UNMAPPED else "unknown_stage"),
        "note": note,
        "queued": False,
    }


def _done(recorded: Recorded) -> Sequence[tuple[str, Done]]:
    return list(recorded.done.items())


def _skip(done: Done) -> str | None:
    return done.reason if done.status == Status.SKIPPED else None
