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
from typing import TYPE_CHECKING, Annotated, NoReturn

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
    upload_api: Annotated[
        str,
        typer.Option(
            help="Google Ads upload path: datamanager, or ads_api (the legacy Google Ads API "
            "path, with restatements and retractions as conversion adjustments)."
        ),
    ] = "datamanager",
    as_json: JsonOption = False,
) -> None:
    """Run a full sync against local emulators with a generated dataset: no credentials."""
    from connector.demo import run_demo

    if upload_api not in ("datamanager", "ads_api"):
        raise typer.BadParameter("use datamanager or ads_api", param_hint="--upload-api")
    logs.setup("auto", "INFO", [])
    try:
        with _progress() as progress:
            result = run_demo(
                leads=leads,
                seed=seed,
                state_dir=state_dir,
                progress=progress,
                upload_api="ads_api" if upload_api == "ads_api" else "datamanager",
            )
    except ConnectorError as exc:
        _fail(exc)
    if as_json:
        print_json(result.as_dict())
    else:
        out = Console()
        print_summary(result.first, out, title="Demo sync")
        print_summary(result.second, out, title="Second sync right after")
        out.print(f"State store: {result.state_url}")
        out.print(f"Attribution report: {result.report_file}")
    raise typer.Exit(EXIT_PENDING if result.first.status == "partial" else 0)


@app.command("report")
def report_command(
    since: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: the 90 days up to --until).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day, YYYY-MM-DD (default: today).")
    ] = None,
    group_by: Annotated[str, typer.Option(help="Trend buckets: month or week.")] = "month",
    fmt: Annotated[str, typer.Option("--format", help="table, json, csv or html.")] = "table",
    output: Annotated[
        Path | None, typer.Option(help="File for html / csv (default report.html / report.csv).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Attribution and funnel report for the leads first seen in a period, from the ledger."""
    # Imported here: the report's modules are only needed by this command.
    from connector.errors import ConfigError
    from connector.ledger import Ledger
    from connector.report import Period, build_report, load, print_table, to_csv, to_html
    from connector.report.tabular import report_dict

    fmt = "json" if as_json else fmt
    if fmt not in ("table", "json", "csv", "html"):
        raise typer.BadParameter("use table, json, csv or html", param_hint="--format")
    if group_by not in ("month", "week"):
        raise typer.BadParameter("use month or week", param_hint="--group-by")
    try:
        period = Period.parse(since, until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since / --until") from None
    settings = _settings()
    try:
        mapping = _mapping(settings)
        ledger = Ledger.open(settings.state_url, readonly=True)
        data = load(ledger, period)
        # Channels `connector channels` looked up in GA4: the third attribution signal.
        ga4_channels = {lead: c.channel_group for lead, c in ledger.channels.get().items()}
    except ConnectorError as exc:
        _fail(exc, fmt == "json")
    report = build_report(
        data,
        currency=mapping.default_currency,
        group_by="week" if group_by == "week" else "month",
        precedence=mapping.attribution_precedence,
        ga4_channels=ga4_channels,
    )
    if fmt == "json":
        print_json(report_dict(report))
    elif fmt == "table":
        print_table(report, Console())
    else:
        path = output or Path(f"report.{fmt}")
        try:
            path.write_text(to_html(report) if fmt == "html" else to_csv(report), "utf-8")
        except OSError as exc:
            _fail(ConfigError(f"cannot write the report to {path}: {exc.strerror}"))
        Console().print(f"report written to {path.resolve()}")


EXIT_DIFFERENCES = EXIT_PENDING  # 4: the same "something is left to look at" code


@app.command("reconcile")
def reconcile_command(
    since: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: 6 days before --until).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day, YYYY-MM-DD (default: yesterday).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare delivered GA4 events (ledger) with GA4's own counts per event and day.

    Exits 4 when any differ: events GA4 did not count, or counted beyond what was sent.
    """
    # Imported here: the Data API client is only needed by the GA4 commands.
    from connector.analytics import GA4Data, event_names, print_reconciliation, reconcile, window
    from connector.ledger import Ledger

    try:
        first, last = window(since, until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since / --until") from None
    settings = _settings()
    try:
        events = event_names(_mapping(settings))
        ledger = Ledger.open(settings.state_url, readonly=True)
        with GA4Data(settings.ga4) as client:
            result = reconcile(ledger, client, first, last, events=events)
    except ConnectorError as exc:
        _fail(exc, as_json)
    if as_json:
        print_json(result.as_dict())
    else:
        print_reconciliation(result, Console())
    # Only events GA4 lacks fail the check: the website's own generate_lead hits (and other
    # sources of the same events) legitimately make GA4 count more than the connector sent.
    missing = [d for d in result.differences if d.gap > 0]
    raise typer.Exit(EXIT_DIFFERENCES if missing else 0)


@app.command("channels")
def channels_command(
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Look up every lead again, not only new ones.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Look up each lead's channel in GA4 (its website generate_lead hit) and store it."""
    from collections import Counter

    from connector.analytics import GA4Data, leads_to_look_up, lookup_channels
    from connector.ledger import Ledger

    settings = _settings()
    try:
        ledger = Ledger.open(settings.state_url)
        wanted = leads_to_look_up(ledger, refresh=refresh)
        with GA4Data(settings.ga4) as client:
            found = lookup_channels(client, wanted, ledger=ledger)
    except ConnectorError as exc:
        _fail(exc, as_json)
    groups = Counter(channel.channel_group for channel in found.values())
    result = {"looked_up": len(wanted), "found": len(found), "channels": dict(groups)}
    if as_json:
        print_json(result)
    else:
        Console().print(
            f"looked up {len(wanted)} leads, found {len(found)}: "
            + (", ".join(f"{name} {count}" for name, count in groups.most_common()) or "none")
        )


@app.command("check")
def check_command(
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Also log in to Salesforce, check the Google Ads account and its conversion "
            "actions, and validate a sample event per mapped target (GA4 debug endpoint, "
            "validate_only uploads); nothing is sent for real.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Validate the configuration and the mapping (offline unless --online)."""
    settings = _settings()
    try:
        mapping = _mapping(settings)
        settings.require_for_sync()
    except ConnectorError as exc:
        _fail(exc, as_json)
    if online:
        _check_online(settings, mapping, as_json)
        return
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


def _check_online(settings: Settings, mapping: Mapping, as_json: bool) -> None:
    from connector.check import online_checks

    results = online_checks(settings, mapping)
    ok = all(r.ok for r in results)
    if as_json:
        print_json({"status": "ok" if ok else "failed", "checks": [r.as_dict() for r in results]})
    else:
        console = Console()
        marks = {
            "ok": "[green]ok[/green]",
            "warn": "[yellow]warn[/yellow]",
            "fail": "[red]FAIL[/red]",
        }
        for r in results:
            console.print(f"{marks[r.status]} {r.name}: {r.detail}")
    if not ok:
        raise typer.Exit(2)


def _mapping(settings: Settings) -> Mapping:
    from connector.mapping.rules import load_mapping

    return load_mapping(settings.mapping_path)


def _settings() -> Settings:
    from connector.settings import load_settings

    try:
        settings = load_settings()
    except ConnectorError as exc:
        logs.setup("auto", "INFO", [])  # the settings themselves are what failed
        _fail(exc)
    _setup_logging(settings)
    return settings


def _run(settings: Settings, dry_run: bool, payloads: Path | None) -> RunSummary:
    from connector.pipeline import SyncOptions, sync

    try:
        mapping = _mapping(settings)
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
