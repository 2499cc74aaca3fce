"""One sync run: pull -> map -> record (ledger + cursor) -> deliver -> summarise.

A real run records every change (and moves the cursor) before anything is
sent, so an upload failure never loses a change and a rerun never resends a
delivered one. A dry run is the same run, planned the same way, over a
ledger that keeps the run's writes in memory (the store is opened read-only),
with every send switched to the APIs' validate-only modes; it writes the
requests to a payloads file.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from connector import logs, retry, stopping
from connector.core import Mapped, utcnow
from connector.delivery import Claims, DeliveryLoop
from connector.destinations.base import Destination
from connector.dry_run import DryLedger, ValidateOnly
from connector.errors import ConfigError, ConnectorError, SourceError, StateStoreError
from connector.ledger import Ledger
from connector.ledger.database import state_errors
from connector.ledger.locks import RunLock, run_lock, stream_lock
from connector.mapping.once import first_reached
from connector.mapping.rules import Mapping
from connector.mapping.translate import translate
from connector.memory import collect_less, give_back
from connector.settings import Settings
from connector.source.auth import connect
from connector.source.cursor import Cursor
from connector.source.salesforce import SalesforceSource
from connector.source.streams import LEAD_HISTORY, OPPORTUNITY_HISTORY, declared
from connector.summary import RunSummary

STREAM, OPPORTUNITY_STREAM = LEAD_HISTORY.name, OPPORTUNITY_HISTORY.name
RECORD_CHUNK = 1000
RATES_MAX_AGE = timedelta(hours=12)  # how old the stored currency rates may get
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
    wait: float = 0.0  # seconds to wait for another run to release the store (SQLite)
    leads: frozenset[str] = frozenset()  # a dry run's rows shown for these leads only (all: empty)


def build_destinations(settings: Settings, mapping: Mapping) -> list[Destination]:
    """The enabled destinations; each upload path's client is imported only when it is used."""
    destinations: list[Destination] = []
    if settings.google_ads.enabled and settings.google_ads.upload_api == "ads_api":
        from connector.destinations.google_ads.legacy import GoogleAdsApiDestination

        destinations.append(GoogleAdsApiDestination(settings.google_ads))
    elif settings.google_ads.enabled:
        from connector.destinations.google_ads.datamanager import DataManagerDestination

        destinations.append(DataManagerDestination(settings.google_ads))
    if not settings.ga4.enabled:
        return destinations
    from connector.destinations.ga4.events import GA4Extras

    extras = GA4Extras(mapping.ga4.user_data, mapping.ga4.user_id == "lead_id")
    too_old = mapping.ga4_too_old
    if settings.ga4.upload_api == "datamanager":
        from connector.destinations.ga4.datamanager import GA4DataManagerDestination

        destinations.append(GA4DataManagerDestination(settings.ga4, too_old=too_old, extras=extras))
    else:
        from connector.destinations.ga4.measurement_protocol import GA4Destination

        destinations.append(GA4Destination(settings.ga4, too_old=too_old, extras=extras))
    return destinations


def sync(settings: Settings, mapping: Mapping, options: SyncOptions) -> RunSummary:
    settings.require_for_sync()
    with state_errors(settings.state_url):
        ledger = Ledger.open(settings.state_url, readonly=options.dry_run)
        if options.dry_run:
            return _sync(settings, mapping, ledger, options, RunLock(exclusive=False))
        with run_lock(ledger.db, wait=options.wait) as lock:
            return _sync(settings, mapping, ledger, options, lock)


def _sync(
    settings: Settings, mapping: Mapping, ledger: Ledger, options: SyncOptions, lock: RunLock
) -> RunSummary:
    pulls = cursors(mapping, ledger, settings, utcnow())  # read under the lock: they are ours
    summary = RunSummary(dry_run=options.dry_run, since=pulls[0].since.isoformat())
    destinations = build_destinations(settings, mapping)
    try:
        run = _DryRun if options.dry_run else _Run
        with retry.budget(settings.retry_budget) as retries:
            try:
                run(settings, mapping, ledger, destinations, options, summary, lock).execute(pulls)
            finally:
                summary.retries = retries.used
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
        lock: RunLock,
    ) -> None:
        self.settings = settings
        self.mapping = mapping
        self.ledger = ledger
        self.destinations = destinations
        self.options = options
        self.summary = summary
        self.lock = lock
        self._salesforce: SalesforceSource | None = None

    def execute(self, pulls: list[Cursor]) -> None:
        from connector.report.measurability import summary_measurability

        self._stopped_before = _stopped_destinations(self.ledger)
        run_id = self.ledger.runs.start()
        self.worker = f"{socket.gethostname()}:{os.getpid()}:run-{run_id}"
        # A dry run records no run: its lines carry no run id.
        bound = None if self.summary.dry_run else logs.bind_run(run_id)
        started = time.monotonic()
        _log_start(pulls, dry_run=self.summary.dry_run)
        try:
            # Google's verdict on earlier uploads first: it may put deliveries back to pending.
            self.summary.request_status = self._check_requests()
            for cursor in pulls:
                self._pull(run_id, cursor)
            # The org's currency rates, for the report only (a dry run writes nothing). They
            # change daily at most: read twice a day, not on every run (two API calls each).
            if not self.summary.stopped and not self.summary.dry_run and self._rates_due():
                from connector.source.currency import refresh_rates

                refresh_rates(self._source().client, self.ledger, utcnow())
            self._deliver_all()
        except StateStoreError as exc:
            # The store is what failed: say so, and do not lean on it again for the summary.
            self.summary.error = str(exc)
            _close_quietly(self.ledger, run_id, self.summary)
            raise
        except ConnectorError as exc:
            self.summary.error = str(exc)
            self._finish(run_id, pulls, summary_measurability)
            raise
        except BaseException:
            self.summary.error = "interrupted"
            _close_quietly(self.ledger, run_id, self.summary)
            raise
        else:
            self._finish(run_id, pulls, summary_measurability)
        finally:
            _log_end(self.summary, time.monotonic() - started)
            if bound is not None:
                logs.unbind(bound)

    def _finish(self, run_id: int, pulls: list[Cursor], measurability: Any) -> None:
        self.summary.cursor = _iso(self.ledger.cursors.get(pulls[0].stream.name))
        self.summary.measurability = measurability(
            self.ledger, precedence=self.mapping.attribution_precedence
        )
        self.ledger.runs.finish(run_id, self.summary.status, self.summary.as_dict())

    def _rates_due(self) -> bool:
        read_at = self.ledger.rates.get().read_at
        return read_at is None or utcnow() - read_at > RATES_MAX_AGE

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
            region, now = self.settings.google_ads.default_phone_region, utcnow()
            for crm in pull:
                self.summary.pulled += 1
                yield translate(crm, self.mapping, region, now=now)
        finally:
            stats = pull.stats
            self.summary.pulled += stats.recorded  # read again, recorded already: not mapped
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
                recorded=self.ledger.changes.recorded_since,
            )
        return self._salesforce

    def _pull(self, run_id: int, cursor: Cursor) -> None:
        if self.summary.stopped:
            return  # the API budget is spent: later streams wait for the next run
        with (
            _timed(self.summary, f"pull {cursor.stream.name}"),
            stream_lock(self.ledger.db, cursor.stream.name) as mine,
        ):
            if not mine:
                log.info(
                    "another worker is pulling %s: this run delivers only",
                    cursor.stream.name,
                    extra={"stream": cursor.stream.name},
                )
                return
            if not self.lock.exclusive:
                # Workers share the store: one may have pulled this stream since this run
                # read its bookmark. Read from where that one left off, not from the old
                # bookmark (or a whole backfill again).
                cursor.initial = self.ledger.cursors.get(cursor.stream.name)
            collect_less()  # the clients and destinations are set up: frozen from here on
            try:
                self._pull_stream(run_id, cursor)
            except SourceError as exc:
                if not stopping.requested():
                    raise
                # Told to stop, a failure is not tried again (`connector.retry`): the stop
                # ended the read, and the bookmark moved only with what was recorded.
                log.warning("%s (told to stop: not tried again)", exc)
                self.summary.stopped = self.summary.stopped or stopping.REASON
            finally:
                give_back()  # the next phase starts from what this one keeps, not its peak

    def _pull_stream(self, run_id: int, cursor: Cursor) -> None:
        name = cursor.stream.name
        for pulled in _chunks(self.changes(cursor), RECORD_CHUNK):
            if stopping.requested():
                self.summary.stopped = self.summary.stopped or stopping.REASON
                return  # the bookmark moved only with what was recorded
            chunk = self._first_reached(pulled)
            # The bookmark moves with the rows it covers, in the transaction that stores them.
            new = self.ledger.changes.record(run_id, chunk, name, cursor.bookmark)
            self.summary.new += len(new)
            self._count(new)
            for mapped in new:
                for target in mapped.targets:
                    if target.skip_reason:
                        self.summary.tally(target.destination).add("skipped", target.skip_reason)
            self._progress("pulled", len(chunk))

        if cursor.position is None and (stopping.requested() or self.summary.stopped):
            # The read ended before its first row (told to stop, or the API budget spent):
            # no bookmark, so a first run stays one and the next may still read through Bulk.
            self.summary.stopped = self.summary.stopped or stopping.REASON
            return
        # Records read but not changed (snapshot mode) move the bookmark too.
        self.ledger.changes.record(run_id, [], name, cursor.bookmark)

    def _first_reached(self, chunk: list[Mapped]) -> list[Mapped]:
        """A stage reached again is recorded but sent nowhere (`connector.mapping.once`)."""
        return first_reached(chunk, self.ledger.changes.reached(m.change.lead_id for m in chunk))

    def _count(self, new: Sequence[Mapped]) -> None:
        for mapped in new:
            change = mapped.change
            if "stage" in change.problems:
                self.summary.unmapped[change.crm_status] += 1
            self.summary.row_problems.update(v for k, v in change.problems.items() if k != "stage")

    def _deliver_all(self) -> None:
        """Each destination's queue in a thread of its own, side by side: they share no rows,
        and each mostly waits on its API, so one's latency hides behind the other's."""
        if len(self.destinations) < 2:
            for destination in self.destinations:
                self._deliver(destination)
            return
        with ThreadPoolExecutor(len(self.destinations), thread_name_prefix="deliver") as pool:
            # A thread starts with an empty context: each gets a copy (the run id of log lines).
            running = [
                pool.submit(contextvars.copy_context().run, self._deliver, destination)
                for destination in self.destinations
            ]
            try:
                stopping.wait_for(running)  # in slices: SIGTERM's handler runs meanwhile
            except BaseException:  # Ctrl-C: the others settle what is in the air, then stop
                stopping.request()
                raise
        for done in running:
            done.result()  # the first destination's failure (the state store, a bug) goes on

    def _deliver(self, destination: Destination) -> None:
        with _timed(self.summary, f"deliver {destination.name}"):
            self._deliver_queue(destination)

    def _deliver_queue(self, destination: Destination) -> None:
        if problem := self._stopped_before.get(destination.name):
            log.warning(
                "%s was stopped in run %s (%s): trying again",
                destination.name,
                problem[0],
                problem[1],
                extra={"destination": destination.name},
            )
        claims = Claims(
            worker=self.worker,
            lease=timedelta(seconds=self.settings.lease_seconds),
            max_attempts=self.settings.max_attempts,
            exclusive=self.lock.exclusive,
            resend_in_flight=self.settings.ga4.resend_in_flight,
        )
        DeliveryLoop(self.ledger, destination, claims, self.summary, self.options.progress).run()

    def _progress(self, phase: str, done: int) -> None:
        if self.options.progress:
            self.options.progress(phase, done)


class _DryRun(_Run):
    """A real run over a ledger that keeps the run's writes in memory, every send only
    validated (`connector.dry_run`): the same plan as a run, nothing written."""

    def _deliver_all(self) -> None:
        # The in-memory ledger is one thread's: destinations are validated one after another.
        for destination in self.destinations:
            self._deliver(destination)

    def execute(self, pulls: list[Cursor]) -> None:
        dry = DryLedger(self.ledger.db)
        self.ledger = dry
        validating = [ValidateOnly(d) for d in self.destinations]
        self.destinations = list(validating)
        try:
            super().execute(pulls)
        finally:  # what was planned before a failure is worth seeing too
            self.summary.rows = dry.outcomes(self.options.leads)
        if self.options.payloads_path:
            _write_json(self.options.payloads_path, {d.name: d.sent for d in validating})
            self.summary.payloads_file = str(self.options.payloads_path)

    def _rates_due(self) -> bool:
        read_at = self.ledger.rates.get().read_at
        return read_at is None or utcnow() - read_at > RATES_MAX_AGE

    def _check_requests(self) -> dict[str, dict[str, Any]]:
        return {}  # Google's verdict on earlier requests would be written down


def _stopped_destinations(ledger: Ledger) -> dict[str, tuple[int, str]]:
    """The destinations the last finished run stopped, with its id and why: said when retried."""
    for run in ledger.runs.recent(5):
        if run.finished_at is not None:
            errors = (run.summary or {}).get("destination_errors") or {}
            return {name: (run.id, str(why)) for name, why in errors.items()}
    return {}


def _close_quietly(ledger: Ledger, run_id: int, summary: RunSummary) -> None:
    """Close the run record as failed if the store still takes it; never fail over it."""
    try:
        ledger.runs.finish(run_id, summary.status, summary.as_dict())
    except Exception:  # the store is already known to be failing
        log.debug("could not close run %s in the state store", run_id, exc_info=True)


def _log_start(pulls: Sequence[Cursor], dry_run: bool = False) -> None:
    log.info(
        "run started",
        extra={
            "dry_run": dry_run,
            "window_start": pulls[0].since.isoformat(),
            "window_end": pulls[0].end.isoformat(),
            "streams": [cursor.stream.name for cursor in pulls],
        },
    )


def _log_end(summary: RunSummary, seconds: float) -> None:
    """One line per destination, then the run's end: what an on-call engineer looks for."""
    data = summary.as_dict()
    for name, tally in data["destinations"].items():
        log.info("destination %s done", name, extra={"destination": name, **tally})
    level = logging.WARNING if summary.error else logging.INFO  # the CLI logs the error itself
    log.log(
        level,
        "run %s",
        "failed" if summary.error else "finished",
        extra={
            "status": summary.status,
            "dry_run": summary.dry_run,
            "duration_s": round(seconds, 3),
            "pulled": summary.pulled,
            "new": summary.new,
            "delivered": {n: t["delivered"] for n, t in data["destinations"].items()},
            "pending": {n: t["pending"] for n, t in data["destinations"].items()},
            "cursor": summary.cursor,
            "salesforce_api_usage": summary.api_usage,
            "stopped": summary.stopped,
            "seconds": data["seconds"],
            "error": summary.error,
        },
    )


@contextmanager
def _timed(summary: RunSummary, phase: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        summary.seconds[phase] = summary.seconds.get(phase, 0.0) + time.monotonic() - started


def _chunks(items: Iterable[Mapped], size: int) -> Iterator[list[Mapped]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _write_json(path: Path, data: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"--payloads-file {path} cannot be written ({exc.strerror or type(exc).__name__}): "
            "name a file in a writable directory"
        ) from None
