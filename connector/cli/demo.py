"""`connector demo`: the whole job against local emulators."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from connector import logs
from connector.cli.app import (
    EXIT_PENDING,
    JsonOption,
    app,
    console,
    fail,
    progress_display,
)
from connector.errors import ConnectorError
from connector.summary_view import print_json, print_summary

if TYPE_CHECKING:
    from rich.console import Console


@app.command("demo")
def demo_command(
    leads: Annotated[int, typer.Option(min=10, max=200_000, help="Leads to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the generated dataset.")] = 7,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep the demo's SQLite state here (default: a new directory under "
            "<temp>/connector-demo/, where only the newest few are kept)."
        ),
    ] = None,
    upload_api: Annotated[
        Literal["datamanager", "ads_api"],
        typer.Option(
            help="Google Ads upload path: datamanager, or ads_api (the legacy Google Ads API "
            "path, with restatements and retractions as conversion adjustments)."
        ),
    ] = "datamanager",
    as_json: JsonOption = False,
) -> None:
    """Run a full sync against local emulators with a generated dataset: no credentials.

    Exit codes: 0 done; 2 configuration (--state-dir); 3 the state store could not be used;
    4 the first sync left work for a later run.
    """
    from connector.demo import run_demo

    # The demo reads no settings (its own are fixed), but honours the log level, so that
    # "rerun with CONNECTOR_LOG_LEVEL=DEBUG" shows the traceback here too.
    level = os.environ.get("CONNECTOR_LOG_LEVEL", "INFO").upper()
    logs.setup("auto", level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO", [])
    try:
        with progress_display() as progress:
            result = run_demo(
                leads=leads,
                seed=seed,
                state_dir=state_dir,
                progress=progress,
                upload_api=upload_api,
            )
    except ConnectorError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        print_json(result.as_dict())
    else:
        out = console()
        print_summary(result.first, out, title="First sync")
        print_summary(result.second, out, title="Second sync, right after")
        _print_costs(result.costs, out)
        out.print(f"State store: {result.state_url}")
        out.print(f"Attribution report: {result.report_file}")
        _print_next_steps(result.commands(), out)
    raise typer.Exit(EXIT_PENDING if result.first.status == "partial" else 0)


def _print_costs(costs: dict[str, Any], out: Console) -> None:
    """What `connector costs` read, and what paid search returned for it."""
    out.print(
        f"Google Ads cost {costs['since']} to {costs['until']}: {costs['cost']:,.2f} "
        f"{costs['currency']} over {costs['campaign_days']} campaign days; "
        f"{costs['clicks_found']} of {costs['clicks_looked_up']} lead clicks placed in a campaign",
        highlight=False,
    )
    if "paid_search_roas" not in costs:
        return
    roas, cac = costs["paid_search_roas"], costs["paid_search_cac"]
    out.print(
        f"  paid search: won revenue {costs['paid_search_won_revenue']:,.2f} "
        f"{costs['report_currency']}, return on ad spend "
        f"{'-' if roas is None else f'{roas:.2f}x'}, CAC {'-' if cac is None else f'{cac:,.2f}'}",
        highlight=False,
    )


def _print_next_steps(commands: dict[str, str], out: Console) -> None:
    out.print("\nNext:")
    steps = (
        ("open the report", commands["open_report"]),
        ("report on this state", commands["report"]),
        ("list its runs", commands["runs"]),
        ("try every command by hand against the emulators", commands["sandbox"]),
    )
    for label, command in steps:
        out.print(f"  {label}:\n    {command}", markup=False, highlight=False)
