"""`connector sync`: one run, or a dry run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from connector.cli.app import (
    JsonOption,
    app,
    finish,
    load_settings_or_exit,
    run_sync,
)


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
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            help="If another run holds the state store (SQLite), wait this long for it.",
        ),
    ] = 0.0,
    leads: Annotated[
        list[str] | None,
        typer.Option(
            "--lead",
            metavar="ID",
            help="Dry run: show the rows of this lead only (repeatable); counts stay the run's.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Pull new stage changes from Salesforce, record them, and deliver them.

    Exit codes: 0 done; 2 configuration; 3 a system unavailable or rows still pending (the
    next run goes on); 4 stopped early with work left; 5 a destination needs a fix; 6 another
    run holds the store; 7 done, some rows rejected (`connector failures` lists them).

    A dry run also shows one row per delivery it planned (lead, stage, target, time, value,
    identifier kinds, result or skip reason), under `rows` in --json.
    """
    if leads and not dry_run:
        raise typer.BadParameter("--lead limits a dry run's rows: use it with --dry-run")
    settings = load_settings_or_exit(as_json)
    payloads = payloads_file if dry_run else None
    summary = run_sync(settings, dry_run, payloads, wait, as_json, frozenset(leads or ()))
    finish(summary, as_json)
