"""`connector check`: configuration and mapping, offline or online."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from connector.cli.app import (
    JsonOption,
    app,
    console,
    fail,
    load_mapping_of,
    load_settings_or_exit,
)
from connector.errors import ConfigError, ConnectorError
from connector.state_url import safe_url
from connector.summary_view import print_json

if TYPE_CHECKING:
    from connector.mapping.rules import Mapping
    from connector.settings import Settings


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
    """Validate the configuration and the mapping (offline unless --online).

    Exit codes: 0 ok; 2 a setting or the mapping to fix (a check failed: its line says
    what to do); 3 a system did not answer (nothing to fix: try again); 5 a destination
    needs a fix (credentials, permission, terms).
    """
    settings = load_settings_or_exit(as_json)
    try:
        mapping = load_mapping_of(settings)
        settings.require_for_sync()
        _refuse_copied_values(settings)
    except ConnectorError as exc:
        fail(exc, as_json)
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
        "state_url": safe_url(settings.state_url),
    }
    if as_json:
        print_json(result)
    else:
        console().print(
            f"configuration ok: mapping {result['mapping']} with {len(mapping.stages)} statuses, "
            f"destinations {', '.join(result['destinations'])}"
        )


def _refuse_copied_values(settings: Settings) -> None:
    """Placeholders left from .env.example and misspelled variables: each named, with the fix."""
    from connector.settings import unknown_env_names

    problems = [
        f"{name} still holds the example's placeholder: set the real value"
        for name in settings.placeholders()
    ]
    problems += unknown_env_names()
    if problems:
        raise ConfigError("configuration is not ready:\n  " + "\n  ".join(problems))


def _check_online(settings: Settings, mapping: Mapping, as_json: bool) -> None:
    from connector.check import exit_code, online_checks

    results = online_checks(settings, mapping)
    ok = all(r.ok for r in results)
    if as_json:
        print_json({"status": "ok" if ok else "failed", "checks": [r.as_dict() for r in results]})
    else:
        out = console()
        marks = {
            "ok": "[green]ok[/green]",
            "warn": "[yellow]warn[/yellow]",
            "fail": "[red]FAIL[/red]",
        }
        for r in results:
            out.print(f"{marks[r.status]} {r.name}: {r.detail}")
    if not ok:
        raise typer.Exit(exit_code(results))
