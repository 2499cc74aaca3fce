"""The `connector` command: the Typer app and what every subcommand shares.

Exit codes are `connector.exit_codes` (the table in README); each command's help
lists the ones it can end with.

Help is plain click formatting (`rich_markup_mode=None`): flags show no
`<bool>` placeholder, choices show as `<a|b>`, and nothing is boxed or wrapped
for a terminal that is not there.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TaskID, TextColumn

from connector import logs
from connector.errors import ConnectorError
from connector.summary_view import print_json, print_summary

if TYPE_CHECKING:
    # Each command imports what it needs when it runs: `connector --help` stays fast.
    from connector.mapping.rules import Mapping
    from connector.pipeline import Progress
    from connector.settings import Settings
    from connector.summary import RunSummary

EXIT_PENDING = 4
app = typer.Typer(
    help="Sync Salesforce lead stage changes to Google Ads and GA4, exactly once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)
err = Console(stderr=True)
log = logging.getLogger("connector")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
# The report period, as `report` and `costs` take it.
SinceOption = Annotated[
    str | None, typer.Option(help="First day, YYYY-MM-DD (default: the 90 days up to --until).")
]
UntilOption = Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (default: today).")]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"connector {version('connector')}")
        raise typer.Exit()


@app.callback()
def _main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Sync Salesforce lead stage changes to Google Ads and GA4, exactly once."""


def console() -> Console:
    """Stdout for a person; when it is not a terminal (a pipe, a log file), lines are not
    wrapped at rich's default 80 columns."""
    out = Console()
    return out if out.is_terminal else Console(width=1000, soft_wrap=True)


def load_mapping_of(settings: Settings) -> Mapping:
    from connector.mapping.rules import load_mapping

    return load_mapping(settings.mapping_path)


def load_settings_or_exit(as_json: bool = False) -> Settings:
    from connector.settings import load_settings

    try:
        settings = load_settings()
    except ConnectorError as exc:
        logs.setup("auto", "INFO", [])  # the settings themselves are what failed
        fail(exc, as_json)
    setup_logging(settings)
    from connector.settings import unknown_env_names

    for problem in unknown_env_names():  # `connector check` fails on these; a run goes on
        log.warning("%s", problem)
    return settings


def run_sync(
    settings: Settings,
    dry_run: bool,
    payloads: Path | None,
    wait: float = 0.0,
    as_json: bool = False,
    leads: frozenset[str] = frozenset(),
) -> RunSummary:
    try:
        return sync_once(settings, dry_run, payloads, wait, leads)
    except ConnectorError as exc:
        fail(exc, as_json)


def sync_once(
    settings: Settings,
    dry_run: bool,
    payloads: Path | None,
    wait: float = 0.0,
    leads: frozenset[str] = frozenset(),
) -> RunSummary:
    """One run (`sync`, and each of `run --every`), then the metrics file if one is set."""
    from connector.pipeline import SyncOptions, sync
    from connector.summary import RunSummary

    started = time.monotonic()
    summary = RunSummary(dry_run=dry_run, since="")
    try:
        mapping = load_mapping_of(settings)
        with progress_display() as progress, stop_on_sigterm():
            options = SyncOptions(
                dry_run=dry_run, payloads_path=payloads, progress=progress, wait=wait, leads=leads
            )
            summary = sync(settings, mapping, options)
            return summary
    except ConnectorError as exc:
        summary.error = summary.error or str(exc)
        raise
    finally:
        if settings.metrics_file and not dry_run:
            from connector.metrics import write_metrics

            seconds = time.monotonic() - started
            write_metrics(settings.metrics_file, settings.state_url, summary, seconds)


def finish(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print_json(summary.as_dict())
    else:
        print_summary(summary, console())
    raise typer.Exit(summary.exit_code)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (a pod evicted, a timer stopped): finish and settle the request in flight,
    claim nothing more, release what is left, exit as stopped early. Only in the main
    thread (where signals are delivered); `run --every` installs its own."""
    from connector import stopping

    stopping.reset()  # a request to stop belongs to one run
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        stopping.request()
        if callable(previous):
            previous(signum, frame)  # `run --every` also stops its loop

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fail(exc: ConnectorError, as_json: bool = False) -> NoReturn:
    if as_json:
        print_json({"status": "failed", "error": str(exc)})
    log.error("%s", exc)
    raise typer.Exit(exc.exit_code)


def setup_logging(settings: Settings) -> None:
    logs.setup(settings.log_format, settings.log_level, settings.secrets())


@contextmanager
def progress_display() -> Iterator[Progress | None]:
    """Row counts per phase on stderr, only when stderr is a terminal."""
    if not err.is_terminal:
        yield None
        return
    bar = RichProgress(
        SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True
    )
    tasks: dict[str, TaskID] = {}
    totals: dict[str, int] = {}

    def advance(phase: str, done: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase)
        totals[phase] = totals.get(phase, 0) + done
        bar.update(tasks[phase], description=f"{phase}: {totals[phase]}")

    with bar, logs.route_to(err):
        yield advance
