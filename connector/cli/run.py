"""`connector run --every 15m`: sync on a schedule, for hosts without cron or a CronJob.

Each run is the same code as `connector sync`. Runs start an interval apart
(spread by a little jitter, so several workers drift apart); after a failed run
the wait doubles, up to 4 intervals, until a run succeeds. A configuration
error stops the loop (exit 2): waiting will not fix it. SIGTERM (a container or
systemd stop) lets the current run finish and exits 0; a second SIGTERM stops at
once. Ctrl-C stops at once (exit 130).
"""

from __future__ import annotations

import logging
import random
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from connector import stopping
from connector.cli.app import app, load_settings_or_exit, sync_once
from connector.errors import ConnectorError

if TYPE_CHECKING:
    from connector.settings import Settings

log = logging.getLogger("connector.run")
EXIT_CONFIG = 2
MAX_BACKOFF = 4  # intervals, after consecutive failures
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_interval(text: str) -> timedelta:
    """`15m`, `1h30m`, `90s`, `1d`, or a number of seconds."""
    text = text.strip().lower()
    if text.isdigit():
        seconds = int(text)
    elif (match := _DURATION.fullmatch(text)) and any(match.groups()):
        days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    else:
        raise typer.BadParameter("use a duration like 15m, 1h, 90s or 1h30m", param_hint="--every")
    if seconds < 1:
        raise typer.BadParameter("must be at least 1s", param_hint="--every")
    return timedelta(seconds=seconds)


def next_wait(interval: float, failures: int, jitter: float, rng: random.Random) -> float:
    """Seconds from one run's start to the next: backed off after failures, jittered."""
    base = interval * min(1 << min(failures, 8), MAX_BACKOFF)
    return base * (1 + rng.uniform(-jitter, jitter))


@app.command("run")
def run_command(
    every: Annotated[
        str,
        typer.Option(
            metavar="<duration>",
            help="Time from one run's start to the next: 15m, 1h, 90s, 1h30m.",
        ),
    ] = "15m",
    jitter: Annotated[
        float,
        typer.Option(min=0.0, max=0.5, help="Random spread of each wait, a share of it."),
    ] = 0.1,
) -> None:
    """Sync now, then again every interval, until SIGTERM (exit 0) or a configuration error (2)."""
    interval = parse_interval(every).total_seconds()
    settings = load_settings_or_exit()
    stop = _StopSignal()
    with stop.installed():
        _loop(settings, interval, jitter, stop)
    log.info("stopped", extra={"reason": "SIGTERM"})


def _loop(settings: Settings, interval: float, jitter: float, stop: _StopSignal) -> None:
    rng, failures = random.Random(), 0
    while not stop.is_set():
        started = time.monotonic()
        failures = 0 if _one_run(settings) else failures + 1
        wait = next_wait(interval, failures, jitter, rng)
        remaining = max(wait - (time.monotonic() - started), 0.0)
        log.info(
            "next run in %.0fs",
            remaining,
            extra={
                "wait_s": round(remaining, 3),
                "interval_s": round(wait, 3),  # from this run's start: backed off, jittered
                "consecutive_failures": failures,
            },
        )
        stop.wait(remaining)


def _one_run(settings: Settings) -> bool:
    """One sync; whether it succeeded (pending deliveries are no failure: they wait)."""
    try:
        sync_once(settings, dry_run=False, payloads=None)
    except ConnectorError as exc:
        log.error("%s", exc, extra={"exit_code": exc.exit_code})
        if exc.exit_code == EXIT_CONFIG:
            raise typer.Exit(EXIT_CONFIG) from None
        return False
    except Exception:
        # Logged with its traceback; the loop goes on, as cron would run the next time.
        log.exception("unexpected error in a run")
        return False
    return True


class _StopSignal:
    """SIGTERM: stop after the current run (at once while waiting); a second one: now."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> None:
        stopping.sleep_unless(self._event, seconds)  # in slices, so the handler runs at once

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._event.is_set():
            raise SystemExit(128 + signum)
        log.info("SIGTERM: stopping after the current run")
        self._event.set()

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = signal.signal(signal.SIGTERM, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
