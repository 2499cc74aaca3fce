"""One sync run: pull -> map -> record (ledger + cursor) -> deliver -> summarise.

A real run records every change (and moves the cursor) before anything is
sent, so an upload failure never loses a change and a rerun never resends a
delivered one. A dry run does the same pull, mapping and validation against
the APIs' validate-only modes, writes the payloads to a file, and opens the
state store read-only.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from connector.core import Delivery, Mapped, Outcome, Status, utcnow
from connector.destinations.base import Destination
from connector.errors import ConnectorError
from connector.ledger import Ledger
from connector.mapping.rules import Mapping
from connector.mapping.translate import translate
from connector.settings import Settings
from connector.source.auth import connect
from connector.source.cursor import Cursor
from connector.source.salesforce import SalesforceSource
from connector.source.streams import LEAD_HISTORY, OPPORTUNITY_HISTORY, declared
from connector.summary import RunSummary

STREAM, OPPORTUNITY_STREAM = LEAD_HISTORY.name, OPPORTUNITY_HISTORY.name
RECORD_CHUNK = 1000
DELIVER_CHUNK = 2000
log = logging.getLogger("connector.sync")


Progress = Callable[[str, int], None]  # (phase, rows just done)


def cursors(mapping: Mapping, ledger: Ledger, settings: Settings, now: datetime) -> list[Cursor]:
    """One cursor per stream the mapping declares, resumed from its stored bookmark and
    capped at `now`, the run's start."""
    return [
        Cursor.resume(stream, ledger.cursors.get(stream.name), settings.salesforce, now)
        for stream in declared(mapping)
    ]


@dataclass
class SyncOptions:
    dry_run: bool = False
    payloads_path: Path | None = None
    progress: Progress | None = None


def build_destinations(settings: Settings, mapping: Mapping) -> list[Destination]:
    """The enabled destinations; each upload path's client is imported only when it is used."""
    destinations: list[Destination] = []
    if settings.google_ads.enabled and settings.google_ads.upload_api == "ads_api":
        from connector.destinations.google_ads.legacy import GoogleAdsApiDestination

        destinations.append(GoogleAdsApiDestination(settings.google_ads))
    elif settings.google_ads.enabled:
        from connector.destinations.google_ads.datamanager import DataManagerDestination

        destinations.append(DataManagerDestination(settings.google_ads))
    if settings.ga4.enabled:
        from connector.destinations.ga4 import GA4Destination

        destinations.append(GA4Destination(settings.ga4, too_old=mapping.ga4_too_old))
    return destinations


def sync(settings: Settings, mapping: Mapping, options: SyncOptions) -> RunSummary:
    settings.require_for_sync()
    ledger = Ledger.open(settings.state_url, readonly=options.dry_run)
    pulls = cursors(mapping, ledger, settings, utcnow())
    summary = RunSummary(dry_run=options.dry_run, since=pulls[0].since.isoformat())
    destinations = build_destinations(settings, mapping)
    try:
        run = _DryRun if options.dry_run else _Run
        run(settings, mapping, ledger, destinations, options, summary).execute(pulls)
    finally:
        for destination in destinations:
            destination.close()
    return summary


class _Run:
    def __init__(
        self,
        settings: Settings,
        mapping: Mapping,
        ledger: Ledger,
        destinations: list[Destination],
        options: SyncOptions,
        summary: RunSummary,
    ) -> None:
        self.settings = settings
        self.mapping = mapping
        self.ledger = ledger
        self.destinations = destinations
        self.options = options
        self.summary = summary
        self._salesforce: SalesforceSource | None = None

    def execute(self, pulls: list[Cursor]) -> None:
        from connector.report.measurability import summary_measurability

        run_id = self.ledger.runs.start()
        try:
            # Google's verdict on earlier uploads first: it may put deliveries back to pending.
            self.summary.request_status = self._check_requests()
            for cursor in pulls:
                self._pull(run_id, cursor)
            if not self.summary.stopped:  # the org's currency rates, for the report only
                from connector.source.currency import refresh_rates

                refresh_rates(self._source().client, self.ledger, utcnow())
            for destination in self.destinations:
                self._deliver(destination)
        except ConnectorError as exc:
            self.summary.error = str(exc)
            raise
        finally:
            self.summary.cursor = _iso(self.ledger.cursors.get(pulls[0].stream.name))
            self.summary.measurability = summary_measurability(
                self.ledger,
                currency=self.mapping.default_currency,
                precedence=self.mapping.attribution_precedence,
            )
            self.ledger.runs.finish(run_id, self.summary.status, self.summary.as_dict())

    def _check_requests(self) -> dict[str, dict[str, Any]]:
        checked = {}
        for destination in self.destinations:
            totals = destination.check_requests(self.ledger)
            if totals is not None:
                checked[destination.name] = totals
        return checked

    def changes(self, cursor: Cursor) -> Iterator[Mapped]:
        pull = self._source().pull(cursor)
        try:
            region = self.settings.google_ads.default_phone_region
            for crm in pull:
                self.summary.pulled += 1
                yield translate(crm, self.mapping, region)
        finally:
            stats = pull.stats
            self.summary.source_calls += stats.calls
            if (usage := stats.api_usage) is not None:
                self.summary.api_usage = f"{usage[0]}/{usage[1]}"
            self.summary.stopped = self.summary.stopped or stats.stopped

    def _source(self) -> SalesforceSource:
        if self._salesforce is None:
            sf = self.settings.salesforce
            self._salesforce = SalesforceSource(
                connect(sf),
                self.mapping,
                reconnect=lambda: connect(sf),
                max_api_share=sf.max_api_share,
                bulk_threshold=sf.bulk_threshold,
                states=self.ledger.states.last,
            )
        return self._salesforce

    def _pull(self, run_id: int, cursor: Cursor) -> None:
        if self.summary.stopped:
            return  # the API budget is spent: later streams wait for the next run
        name = cursor.stream.name
        for chunk in _chunks(self.changes(cursor), RECORD_CHUNK):
            # The bookmark moves with the rows it covers, in the transaction that stores them.
            new = self.ledger.changes.record(run_id, chunk, name, cursor.bookmark)
            self.summary.new += len(new)
            self._count(new)
            for mapped in new:
                for target in mapped.targets:
                    if target.skip_reason:
                        self.summary.tally(target.destination).add("skipped", target.skip_reason)
            self._progress("pulled", len(chunk))

        # Records read but not changed (snapshot mode) move the bookmark too.
        self.ledger.changes.record(run_id, [], name, cursor.bookmark)

    def _count(self, new: Sequence[Mapped]) -> None:
        for mapped in new:
            change = mapped.change
            if "stage" in change.problems:
                self.summary.unmapped[change.crm_status] += 1
            self.summary.row_problems.update(v for k, v in change.problems.items() if k != "stage")

    def _deliver(self, destination: Destination) -> None:
        tally = self.summary.tally(destination.name)
        size = destination.capabilities.batch_size
        # In waves holding one delivery per conversion, in time order: an adjustment
        # (a retraction, a restatement, a deal won again) goes after what it adjusts.
        for wave in waves(self.ledger.queue.pending(destination.name)):
            plan = destination.plan(self.ledger, wave)
            self.ledger.queue.settle(plan.settled)
            tally.add_outcomes(plan.settled)
            for start in range(0, len(plan.ready), size):
                chunk = plan.ready[start : start + size]
                outcomes = destination.deliver(chunk)
                self.ledger.queue.settle(outcomes)
                if destination.capabilities.request_status:
                    self.ledger.requests.save(destination.name, accepted_requests(outcomes))
                tally.add_outcomes(outcomes)
                self._progress(f"sent to {destination.name}", len(chunk))

    def _progress(self, phase: str, done: int) -> None:
        if self.options.progress:
            self.options.progress(phase, done)


class _DryRun(_Run):
    """Pull, map and validate with the APIs' validate-only modes; write nothing to state."""

    def execute(self, pulls: list[Cursor]) -> None:
        mapped = [m for cursor in pulls for m in self.changes(cursor)]
        known = self.ledger.changes.known(
            (m.change.lead_id, m.change.stage, m.change.changed_at) for m in mapped
        )
        fresh = [
            m
            for m in mapped
            if (m.change.lead_id, m.change.stage, m.change.changed_at) not in known
        ]
        self.summary.new = len(fresh)
        self._count(fresh)
        payloads: dict[str, list[dict[str, Any]]] = {}
        for destination in self.destinations:
            batch = _would_deliver(fresh, destination.name, self.summary)
            outcomes = destination.deliver(batch, validate_only=True)
            self.summary.tally(destination.name).add_outcomes(outcomes)
            payloads[destination.name] = destination.payloads(batch)
        self.summary.cursor = _iso(self.ledger.cursors.get(pulls[0].stream.name))
        if self.options.payloads_path:
            _write_json(self.options.payloads_path, payloads)
            self.summary.payloads_file = str(self.options.payloads_path)


def waves(pending: Sequence[Delivery]) -> list[list[Delivery]]:
    """Split so that no wave holds two deliveries of one conversion (target + transaction)."""
    found: list[list[Delivery]] = []
    seen: Counter[tuple[str, str]] = Counter()
    for d in pending:  # in time order
        key = (d.target, d.change.transaction_id)
        if seen[key] == len(found):
            found.append([])
        found[seen[key]].append(d)
        seen[key] += 1
    return found


def accepted_requests(outcomes: Sequence[Outcome]) -> Counter[str]:
    """Request id -> deliveries in it, of the requests a destination got accepted."""
    return Counter(o.request_id for o in outcomes if o.status == Status.DELIVERED and o.request_id)


def _would_deliver(
    fresh: Sequence[Mapped], destination: str, summary: RunSummary
) -> list[Delivery]:
    tally = summary.tally(destination)
    batch = []
    for index, mapped in enumerate(fresh):
        for target in mapped.targets:
            if target.destination != destination:
                continue
            if target.skip_reason:
                tally.add("skipped", target.skip_reason)
                continue
            batch.append(
                Delivery(
                    id=-(index + 1),  # not in the ledger: a dry run has no delivery rows
                    destination=destination,
                    target=target.name,
                    value=target.value,
                    currency=target.currency,
                    attempts=0,
                    change=mapped.change,
                )
            )
    return batch


def _chunks(items: Iterable[Mapped], size: int) -> Iterator[list[Mapped]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
