"""What a dry run plans with: the ledger as it is, plus what the run would write, in memory.

A dry run is a real run (`connector.pipeline._Run`: the same pull, record, waves,
plans, batches, order ids, adjustments and retraction counts) over `DryLedger`,
which reads the state store read-only and keeps every write of the run in memory:
its new changes and their delivery rows, and how each delivery was settled. Its
destinations (`ValidateOnly`) send each batch to the API's validate-only mode and
keep the requests for the payloads file. Nothing is written to the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from connector.core import Delivery, Mapped, Outcome, StageChange, Status
from connector.destinations.base import Destination, Plan, Settle
from connector.ledger import Ledger, SentBefore
from connector.ledger.changes import Changes, Key, Reached, change_key, claim_key
from connector.ledger.database import Database
from connector.ledger.queue import DeliveryQueue, Keyset
from connector.ledger.requests import UploadRequests
from connector.ledger.runs import Runs


@dataclass
class _Memory:
    """What the run would have written: its delivery rows, and the fate of every delivery."""

    changes: list[Mapped] = field(default_factory=list)
    keys: set[Key] = field(default_factory=set)
    rows: list[Delivery] = field(default_factory=list)  # new rows, ids -1, -2, ...
    status: dict[int, Status] = field(default_factory=dict)  # by delivery id: new or stored
    claimed: set[int] = field(default_factory=set)  # handed out this run: each row once
    reason: dict[int, str | None] = field(default_factory=dict)  # by delivery id, as settled
    stored: dict[int, Delivery] = field(default_factory=dict)  # stored rows this run handled

    def add(self, mapped: Mapped) -> None:
        self.changes.append(mapped)
        for target in mapped.targets:
            delivery = Delivery(
                id=-(len(self.rows) + 1),  # never a stored id
                destination=target.destination,
                target=target.name,
                value=target.value,
                currency=target.currency,
                attempts=0,
                change=mapped.change,
                claim_key=claim_key(target.group, mapped.change.changed_at),
            )
            self.rows.append(delivery)
            self.status[delivery.id] = Status.SKIPPED if target.skip_reason else Status.PENDING
            self.reason[delivery.id] = target.skip_reason

    def outcomes(self, leads: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """One row per delivery the run decided (and per change sent nowhere), in time order:
        what `sync --dry-run` shows. Identifiers by kind only, never their values."""
        rows = [_row(d, self.status[d.id], self.reason.get(d.id)) for d in self.stored.values()]
        rows += [_row(d, self.status[d.id], self.reason.get(d.id)) for d in self.rows]
        rows += [_nowhere(m.change) for m in self.changes if not m.targets]
        wanted = [r for r in rows if not leads or r["lead_id"] in leads]
        return sorted(wanted, key=lambda r: (r["time"], r["lead_id"], r["destination"] or ""))


class _Changes(Changes):
    def __init__(self, db: Database, memory: _Memory) -> None:
        super().__init__(db)
        self._memory = memory

    def record(
        self, run_id: int, batch: Sequence[Mapped], stream: str, cursor_value: datetime
    ) -> list[Mapped]:
        """The changes a real run would store as new (the cursor stays where it is)."""
        keys = [change_key(m.change) for m in batch]
        known = self.known(keys) | self._memory.keys
        new = []
        for mapped, key in zip(batch, keys, strict=True):
            if key not in known:
                known.add(key)
                new.append(mapped)
                self._memory.add(mapped)
        self._memory.keys.update(known)
        return new

    def reached(self, lead_ids: Iterable[str]) -> list[Reached]:
        ids = set(lead_ids)
        mine = [m.change for m in self._memory.changes if m.change.lead_id in ids]
        return super().reached(ids) + [
            Reached(c.conversion_id, c.changed_at, c.retracts) for c in mine if not c.restatement
        ]


class _Queue(DeliveryQueue):
    def __init__(self, db: Database, memory: _Memory) -> None:
        super().__init__(db)
        self._memory = memory

    def pending(self, destination: str) -> list[Delivery]:
        """Stored and new deliveries still pending, in claim order (new ones after stored
        ones of the same group and time, as their ids would be higher)."""
        stored = super().pending(destination) if self._db.exists() else []
        status = self._memory.status
        due = [(d.claim_key, 0, d.id, d) for d in stored if d.id not in status]
        due += [
            (d.claim_key, 1, -d.id, d)
            for d in self._memory.rows
            if d.destination == destination and status[d.id] == Status.PENDING
        ]
        return [d for *_, d in sorted(due, key=lambda row: row[:3])]

    def claim(
        self,
        destination: str,
        worker: str,
        *,
        lease: timedelta,
        limit: int,
        after: Keyset | None = None,
        any_in_flight: bool = False,
    ) -> list[Delivery]:
        """The next due rows, as a real claim would hand them out, claimed in memory only."""
        due = [d for d in self.pending(destination) if d.id not in self._memory.claimed]
        page = due[:limit]
        self._memory.claimed.update(d.id for d in page)
        self._memory.stored.update((d.id, d) for d in page if d.id > 0)
        return page

    def release(self, ids: Iterable[int], worker: str, *, error: str | None = None) -> int:
        return 0  # still pending, and (like a real keyset) not handed out again this run

    def settle(self, outcomes: Sequence[Outcome], *, worker: str | None = None) -> set[int]:
        self._memory.status.update((o.delivery_id, o.status) for o in outcomes)
        self._memory.reason.update((o.delivery_id, o.reason or o.error) for o in outcomes)
        return {o.delivery_id for o in outcomes}

    def renew(self, ids: Iterable[int], worker: str, *, lease: timedelta) -> set[int]:
        return set(ids)  # claimed in memory: no other worker can take them

    def sent_before(self, lead_ids: Iterable[str]) -> dict[str, list[SentBefore]]:
        ids = set(lead_ids)
        found = super().sent_before(ids) if self._db.exists() else {lead: [] for lead in ids}
        status = self._memory.status
        for lead, rows in found.items():
            found[lead] = [_with_status(row, status.get(row.id)) for row in rows]
        for d in self._memory.rows:
            if d.change.lead_id in ids:
                found[d.change.lead_id].append(_sent_before(d, status[d.id]))
        return found


class _Runs(Runs):
    def start(self) -> int:
        return 0  # no run row: nothing is written

    def finish(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        return None


class _Requests(UploadRequests):
    def save(
        self, destination: str, events: Mapping[str, int], sent_at: datetime | None = None
    ) -> None:
        return None  # validate-only requests are never processed: nothing to check later


class DryLedger(Ledger):
    """The store read as it is, with the run's own writes kept in memory."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        memory = _Memory()
        self.outcomes = memory.outcomes
        self.changes = _Changes(db, memory)
        self.queue = _Queue(db, memory)
        self.runs = _Runs(db)
        self.requests = _Requests(db)


class ValidateOnly:
    """A destination whose every send only validates, keeping the requests it would send."""

    def __init__(self, destination: Destination) -> None:
        self._destination = destination
        self.name = destination.name
        self.capabilities = destination.capabilities
        self.sent: list[dict[str, Any]] = []  # the requests, for the payloads file

    def plan(self, ledger: Ledger, wave: Sequence[Delivery]) -> Plan:
        return self._destination.plan(ledger, wave)

    def deliver(
        self,
        batch: Sequence[Delivery],
        *,
        validate_only: bool = False,
        settle: Settle | None = None,
    ) -> list[Outcome]:
        self.sent.extend(self._destination.payloads(batch))
        return self._destination.deliver(batch, validate_only=True, settle=settle)

    def payloads(self, batch: Sequence[Delivery]) -> list[dict[str, Any]]:
        return self._destination.payloads(batch)

    def check_requests(self, ledger: Ledger) -> dict[str, Any] | None:
        return None  # checking Google's verdict on earlier requests writes it down

    def close(self) -> None:
        return None  # the run closes the destination it wraps


def _with_status(row: SentBefore, status: Status | None) -> SentBefore:
    return row if status is None else replace(row, status=str(status))


def _sent_before(d: Delivery, status: Status) -> SentBefore:
    return SentBefore(
        id=d.id,
        status=str(status),
        destination=d.destination,
        target=d.target,
        changed_at=d.change.changed_at,
        conversion_id=d.change.conversion_id,
        retracts=d.change.retracts,
        value=d.value,
    )


# The identifier kinds a row may carry, by the attribute that holds them (hashed or not).
_IDENTIFIER_KINDS = (
    ("gclid", "gclid"),
    ("gbraid", "gbraid"),
    ("wbraid", "wbraid"),
    ("ga_client_id", "ga_client_id"),
    ("email_sha256", "email"),
    ("phone_sha256", "phone"),
)


def identifier_kinds(attributes: Mapping[str, Any]) -> list[str]:
    """Which identifiers a change carries: their kinds, never their values."""
    return [kind for key, kind in _IDENTIFIER_KINDS if attributes.get(key)]


def _row(d: Delivery, status: Status, reason: str | None) -> dict[str, Any]:
    change = d.change
    return {
        "lead_id": change.lead_id,
        "stage": change.stage,
        "destination": d.destination,
        "target": d.target,
        "time": change.changed_at.isoformat(),
        "value": d.value,
        "currency": d.currency,
        "identifiers": identifier_kinds(change.attributes),
        # A dry run's `delivered` means valid: it would be sent.
        "result": "valid" if status == Status.DELIVERED else str(status),
        "reason": reason,
    }


def _nowhere(change: StageChange) -> dict[str, Any]:
    """A change the mapping sends nowhere (an unknown status): a row, so the table says why."""
    return {
        "lead_id": change.lead_id,
        "stage": change.stage,
        "destination": None,
        "target": None,
        "time": change.changed_at.isoformat(),
        "value": None,
        "currency": None,
        "identifiers": identifier_kinds(change.attributes),
        "result": "skipped",
        "reason": change.problems.get("stage") or change.problems.get("lead") or "no_target",
    }
