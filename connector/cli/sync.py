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
    as_json: JsonOption = False,
) -> None:
    """Pull new stage changes from Salesforce, record them, and deliver them.

    Exit codes: 0 done; 2 configuration; 3 a system unavailable or rows still pending (the
    next run goes on); 4 stopped early with work left; 5 a destination needs a fix; 6 another
    run holds the store; 7 done, some rows rejected (`connector failures` lists them).
    """
    settings = load_settings_or_exit()
    summary = run_sync(settings, dry_run, payloads_file if dry_run else None, wait, as_json)
    finish(summary, as_json)
