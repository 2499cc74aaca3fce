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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from connector.errors import ConnectorError
from connector.ledger.store import DELIVERED, SKIPPED, Delivery, Ledger, Outcome, utcnow
from connector.mapping.rules import Mapping
from connector.mapping.translate import GOOGLE_ADS, Mapped, translate
from connector.settings import Settings
from connector.source.auth import connect
from connector.source.salesforce import SalesforceSource
from connector.summary import DestinationTally, RunSummary

STREAM = "salesforce.LeadHistory"
OPPORTUNITY_STREAM = "salesforce.OpportunityFieldHistory"
RECORD_CHUNK = 1000
DELIVER_CHUNK = 2000
# An adjustment whose conversion never reached Google: there is nothing to adjust.
_NOTHING_TO_RETRACT, _NOTHING_TO_RESTATE = "nothing_to_retract", "nothing_to_restate"
log = logging.getLogger("connector.sync")


class Destination(Protocol):
    name: str

    def deliver(
        self, batch: Sequence[Delivery], *, validate_only: bool = False
    ) -> list[Outcome]: ...

    def payloads(self, batch: Sequence[Delivery]) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


Progress = Callable[[str, int], None]  # (phase, rows just done)


@dataclass(frozen=True)
class Stream:
    """One object's changes and their bookmark: `salesforce.LeadHistory`, `salesforce.Lead`, ..."""

    name: str
    object: str  # "Lead" or "Opportunity"
    since: datetime
    backfill: bool  # no bookmark yet: the first run reads from the start date


def streams(mapping: Mapping, ledger: Ledger, settings: Settings, now: datetime) -> list[Stream]:
    """The streams to pull, each per its object's read mode in the mapping."""
    modes = [("Lead", mapping.source.mode)]
    if mapping.opportunity is not None:
        modes.append(("Opportunity", mapping.opportunity.mode))
    found = []
    for sobject, mode in modes:
        history = "LeadHistory" if sobject == "Lead" else "OpportunityFieldHistory"
        name = f"salesforce.{history if mode == 'history' else sobject}"
        cursor = ledger.cursor(name)
        found.append(Stream(name, sobject, start_point(cursor, settings, now), cursor is None))
    return found


@dataclass
class SyncOptions:
    dry_run: bool = False
    payloads_path: Path | None = None
    progress: Progress | None = None


def build_destinations(settings: Settings, mapping: Mapping) -> list[Destination]:
    from connector.destinations.ga4 import GA4Destination
    from connector.destinations.google_ads import GoogleAdsDestination

    destinations: list[Destination] = []
    if settings.google_ads.enabled and settings.google_ads.upload_api == "ads_api":
        from connector.destinations.google_ads_legacy import GoogleAdsApiDestination

        destinations.append(GoogleAdsApiDestination(settings.google_ads))
    elif settings.google_ads.enabled:
        destinations.append(GoogleAdsDestination(settings.google_ads))
    if settings.ga4.enabled:
        destinations.append(GA4Destination(settings.ga4, mapping))
    return destinations


def sync(settings: Settings, mapping: Mapping, options: SyncOptions) -> RunSummary:
    settings.require_for_sync()
    ledger = Ledger.open(settings.state_url, readonly=options.dry_run)
    pulls = streams(mapping, ledger, settings, utcnow())
    summary = RunSummary(dry_run=options.dry_run, since=pulls[0].since.isoformat())
    destinations = build_destinations(settings, mapping)
    try:
        run = _DryRun if options.dry_run else _Run
        run(settings, mapping, ledger, destinations, options, summary).execute(pulls)
    finally:
        for destination in destinations:
            destination.close()
    return summary


def measurability(ledger: Ledger, mapping: Mapping) -> dict[str, Any]:
    """The share of the last 90 days' leads that can be attributed to a channel."""
    from connector.report import Period, build_report, load

    report = build_report(
        load(ledger, Period.parse(None, None)),
        currency=mapping.default_currency,
        precedence=mapping.attribution_precedence,
    )
    share = report.measurability.leads
    return {
        "period": f"{report.period.since}..{report.period.until}",
        "leads": int(share.whole),
        "attributable": int(share.part),
        "rate": round(share.part / share.whole, 4) if share.whole else None,
    }


def start_point(cursor: datetime | None, settings: Settings, now: datetime) -> datetime:
    """Where to read from: the cursor minus the overlap window, or the backfill start."""
    sf = settings.salesforce
    if cursor is None and sf.start_date is not None:
        return datetime.combine(sf.start_date, time(), tzinfo=UTC)
    if cursor is None:
        return now - timedelta(days=sf.backfill_days)
    return cursor - timedelta(seconds=sf.overlap_seconds)


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
        self.started = utcnow()
        self._salesforce: SalesforceSource | None = None

    def execute(self, pulls: list[Stream]) -> None:
        from connector.destinations import request_status

        run_id = self.ledger.start_run()
        try:
            # Google's verdict on earlier uploads first: it may put deliveries back to pending.
            checked = request_status.check_all(self.ledger, self.destinations)
            self.summary.request_status = checked
            for stream in pulls:
                self._pull(run_id, stream)
            for destination in self.destinations:
                self._deliver(destination)
        except ConnectorError as exc:
            self.summary.error = str(exc)
            raise
        finally:
            self.summary.cursor = _iso(self.ledger.cursor(pulls[0].name))
            self.summary.measurability = measurability(self.ledger, self.mapping)
            self.ledger.finish_run(run_id, self.summary.status, self.summary.as_dict())

    def changes(self, stream: Stream) -> Iterator[Mapped]:
        source = self._source()
        pull = source.lead_changes if stream.object == "Lead" else source.opportunity_changes
        try:
            region = self.settings.google_ads.default_phone_region
            for crm in pull(stream.since, backfill=stream.backfill):
                self.summary.pulled += 1
                yield translate(crm, self.mapping, region)
        finally:
            self.summary.source_calls += source.calls
            source.calls = 0
            usage = source.api_usage
            self.summary.api_usage = f"{usage[0]}/{usage[1]}" if usage else None
            self.summary.stopped = source.stopped

    def _source(self) -> SalesforceSource:
        if self._salesforce is None:
            sf = self.settings.salesforce
            self._salesforce = SalesforceSource(
                connect(sf),
                self.mapping,
                reconnect=lambda: connect(sf),
                max_api_share=sf.max_api_share,
                bulk_threshold=sf.bulk_threshold,
                states=self.ledger.last_states,
            )
        return self._salesforce

    def _pull(self, run_id: int, stream: Stream) -> None:
        if self.summary.stopped:
            return  # the API budget is spent: later streams wait for the next run
        for chunk in _chunks(self.changes(stream), RECORD_CHUNK):
            new = self.ledger.record(run_id, chunk, stream.name, self._bookmark(stream))
            self.summary.new += len(new)
            self._count(new)
            for mapped in new:
                for target in mapped.targets:
                    if target.skip_reason:
                        self.summary.tally(target.destination).add("skipped", target.skip_reason)
            self._progress("pulled", len(chunk))

        # Records read but not changed (snapshot mode) move the bookmark too.
        self.ledger.record(run_id, [], stream.name, self._bookmark(stream))

    def _bookmark(self, stream: Stream) -> datetime:
        """How far the source has safely read, never past the run's start (read again next time)."""
        position = self._source().position or stream.since
        return min(position, self.started)

    def _count(self, new: Sequence[Mapped]) -> None:
        for mapped in new:
            change = mapped.change
            if "stage" in change.problems:
                self.summary.unmapped[change.crm_status] += 1
            self.summary.row_problems.update(v for k, v in change.problems.items() if k != "stage")

    def _deliver(self, destination: Destination) -> None:
        from connector.destinations import request_status

        tally = self.summary.tally(destination.name)
        # In waves holding one delivery per conversion, in time order: an adjustment
        # (a retraction, a restatement, a deal won again) goes after what it adjusts.
        for wave in self._waves(self.ledger.pending(destination.name)):
            ready = self._adjustable(wave, tally)
            for start in range(0, len(ready), DELIVER_CHUNK):
                chunk = ready[start : start + DELIVER_CHUNK]
                outcomes = destination.deliver(chunk)
                self.ledger.settle(outcomes)
                request_status.record(self.ledger, destination, outcomes)
                tally.add_outcomes(outcomes)
                self._progress(f"sent to {destination.name}", len(chunk))

    @staticmethod
    def _waves(pending: Sequence[Delivery]) -> list[list[Delivery]]:
        """Split so that no wave holds two deliveries of one conversion (target + transaction)."""
        waves: list[list[Delivery]] = []
        seen: Counter[tuple[str, str]] = Counter()
        for d in pending:  # in time order
            key = (d.target, d.change.transaction_id)
            if seen[key] == len(waves):
                waves.append([])
            waves[seen[key]].append(d)
            seen[key] += 1
        return waves

    def _adjustable(self, wave: list[Delivery], tally: DestinationTally) -> list[Delivery]:
        """The wave less the adjustments Google could not apply yet (or ever: skipped),
        each conversion with how often it was retracted before (a new life each).

        Shared by both Google Ads upload paths: a retraction or restatement only
        goes once the conversion it adjusts was delivered.
        """
        deals = [d for d in wave if d.destination == GOOGLE_ADS and _is_deal(d)]
        history = self.ledger.conversion_history(deals)
        adjustments = [d for d in deals if d.change.retraction or d.change.restatement]
        nothing = [
            Outcome(
                d.id,
                SKIPPED,
                reason=_NOTHING_TO_RETRACT if d.change.retraction else _NOTHING_TO_RESTATE,
            )
            for d in adjustments
            if history[d.id].adjusted is None
        ]
        self.ledger.settle(nothing)
        tally.add_outcomes(nothing)
        held = {d.id for d in adjustments if history[d.id].adjusted != DELIVERED}
        return [
            replace(d, retracted_before=history[d.id].retractions) if d.id in history else d
            for d in wave
            if d.id not in held
        ]

    def _progress(self, phase: str, done: int) -> None:
        if self.options.progress:
            self.options.progress(phase, done)


class _DryRun(_Run):
    """Pull, map and validate with the APIs' validate-only modes; write nothing to state."""

    def execute(self, pulls: list[Stream]) -> None:
        mapped = [m for stream in pulls for m in self.changes(stream)]
        known = self.ledger.known(
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
        self.summary.cursor = _iso(self.ledger.cursor(pulls[0].name))
        if self.options.payloads_path:
            _write_json(self.options.payloads_path, payloads)
            self.summary.payloads_file = str(self.options.payloads_path)


def _is_deal(d: Delivery) -> bool:
    change = d.change
    return bool(change.attributes.get("opportunity_id") or change.retraction or change.restatement)


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
