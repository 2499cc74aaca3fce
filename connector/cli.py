"""The `connector` command.

Exit codes: 0 done (rows the data made unusable are recorded, not failures);
1 unexpected error; 2 configuration or mapping error; 3 Salesforce could not
be read; 4 some deliveries are still pending after retries (a later run
sends them).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TaskID, TextColumn

from connector import logs
from connector.errors import ConnectorError
from connector.mapping.rules import load_mapping
from connector.pipeline import Progress, SyncOptions, sync
from connector.render import print_json, print_summary
from connector.settings import Settings, load_settings
from connector.summary import RunSummary

EXIT_PENDING = 4
app = typer.Typer(
    help="Sync Salesforce lead stage changes to Google Ads and GA4, exactly once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
log = logging.getLogger("connector")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


@app.command("sync")
def sync_command(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Pull, map and validate (validate-only APIs), write payloads; change no state.",
        ),
    ] = False,
    payloads_file: Annotated[
        Path, typer.Option(help="Where a dry run writes the payloads it would send.")
    ] = Path("dry-run-payloads.json"),
    as_json: JsonOption = False,
) -> None:
    """Pull new stage changes from Salesforce, record them, and deliver them."""
    settings = _settings()
    summary = _run(settings, dry_run, payloads_file if dry_run else None)
    _finish(summary, as_json)


@app.command("demo")
def demo_command(
    leads: Annotated[int, typer.Option(min=10, max=200_000, help="Leads to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the generated dataset.")] = 7,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the demo's SQLite state here (default: a fresh temp dir)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run a full sync against local emulators with a generated dataset: no credentials."""
    from connector.demo import run_demo

    _setup_logging(Settings(log_format="auto"))
    try:
        with _progress() as progress:
            result = run_demo(leads=leads, seed=seed, state_dir=state_dir, progress=progress)
    except ConnectorError as exc:
        _fail(exc)
    if as_json:
        print_json(result.as_dict())
    else:
        out = Console()
        print_summary(result.first, out, title="Demo sync")
        print_summary(result.second, out, title="Second sync right after")
        out.print(f"State store: {result.state_url}")
    raise typer.Exit(EXIT_PENDING if result.first.status == "partial" else 0)


@app.command("check")
def check_command(as_json: JsonOption = False) -> None:
    """Validate the configuration and the mapping without contacting any API."""
    settings = _settings()
    try:
        mapping = load_mapping(settings.mapping_path)
        settings.require_for_sync()
    except ConnectorError as exc:
        _fail(exc, as_json)
    result = {
        "status": "ok",
        "mapping": str(settings.mapping_path),
        "stages": sorted(mapping.stages),
        "destinations": [
            name
            for name, on in (
                ("google_ads", settings.google_ads.enabled),
                ("ga4", settings.ga4.enabled),
            )
            if on
        ],
        "state_url": _safe_url(settings.state_url),
    }
    if as_json:
        print_json(result)
    else:
        Console().print(
            f"configuration ok: mapping {result['mapping']} with {len(mapping.stages)} statuses, "
            f"destinations {', '.join(result['destinations'])}"
        )


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ConnectorError as exc:
        _setup_logging(Settings())
        _fail(exc)
    _setup_logging(settings)
    return settings


def _run(settings: Settings, dry_run: bool, payloads: Path | None) -> RunSummary:
    try:
        mapping = load_mapping(settings.mapping_path)
        with _progress() as progress:
            options = SyncOptions(dry_run=dry_run, payloads_path=payloads, progress=progress)
            return sync(settings, mapping, options)
    except ConnectorError as exc:
        _fail(exc)


def _finish(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print_json(summary.as_dict())
    else:
        print_summary(summary, Console())
    raise typer.Exit(EXIT_PENDING if summary.status == "partial" else 0)


def _fail(exc: ConnectorError, as_json: bool = False) -> NoReturn:
    if as_json:
        print_json({"status": "failed", "error": str(exc)})
    log.error("%s", exc)
    raise typer.Exit(exc.exit_code)


def _setup_logging(settings: Settings) -> None:
    logs.setup(settings.log_format, settings.log_level, settings.secrets())


@contextmanager
def _progress() -> Iterator[Progress | None]:
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

    with bar:
        yield advance


def _safe_url(url: str) -> str:
    # A PostgreSQL URL may carry a password: show the shape, not the secret.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
