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
    as_json: JsonOption = False,
) -> None:
    """Pull new stage changes from Salesforce, record them, and deliver them."""
    settings = load_settings_or_exit()
    summary = run_sync(settings, dry_run, payloads_file if dry_run else None)
    finish(summary, as_json)
