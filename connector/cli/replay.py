"""`connector replay`: recorded changes through a (changed) mapping, against what was done."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from connector.cli.app import app, console, fail, load_mapping_of, load_settings_or_exit
from connector.errors import ConfigError, ConnectorError

if TYPE_CHECKING:
    from connector.replay import ReplayResult

_COLUMNS = (
    "destination",
    "change",
    "lead_id",
    "crm_status",
    "time",
    "stage",
    "target",
    "value",
    "before",
    "queued",
    "note",
)


@app.command("replay")
def replay_command(
    since: Annotated[
        str,
        typer.Option(
            metavar="DATE", help="Changes recorded at or after this date (ISO; UTC if no zone)."
        ),
    ],
    mapping_file: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            metavar="FILE",
            help="The mapping to replay with (default: the configured one).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; queue nothing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line per row, then a summary line.")
    ] = False,
) -> None:
    """Re-evaluate recorded changes through a mapping and show, per destination, what would
    change against what was done: rows newly sent, no longer sent, value changes.

    Without --dry-run, queue (as pending) the rows the mapping now sends and none was made
    for; the next `connector sync` sends them. Nothing already delivered is touched.

    Exit codes: 0 done; 2 configuration, mapping or --since; 3 the state store is
    unavailable; 6 another run holds the store.
    """
    settings = load_settings_or_exit(as_json)
    try:
        result = _replay(
            settings.state_url, _since(since), _mapping(settings, mapping_file), dry_run
        )
    except ConnectorError as exc:
        fail(exc, as_json)
    if as_json:
        for row in result.rows:
            print(json.dumps(row, default=str))
        print(json.dumps({"summary": result.as_dict()}))
        return
    _print(result, console())


def _replay(url: str, since: datetime, mapping: Any, dry_run: bool) -> ReplayResult:
    from connector.ledger import Ledger
    from connector.ledger.database import state_errors
    from connector.ledger.locks import run_lock
    from connector.replay import replay

    with state_errors(url):
        ledger = Ledger.open(url, readonly=dry_run)
        if dry_run:
            return replay(ledger, mapping, since, dry_run=True)
        with run_lock(ledger.db):  # a sync must not claim while rows are added
            return replay(ledger, mapping, since, dry_run=False)


def _mapping(settings: Any, path: Path | None) -> Any:
    from connector.mapping.rules import load_mapping

    return load_mapping(path) if path else load_mapping_of(settings)


def _since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is not a date: use e.g. 2026-11-01 or 2026-11-01T08:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _print(result: ReplayResult, out: Console) -> None:
    data = result.as_dict()
    mode = " (dry run: nothing queued)" if result.dry_run else f": {result.queued} rows queued"
    out.print(f"Replay of {result.changes} changes recorded since {data['since']}{mode}")
    counts = Table(show_edge=False, pad_edge=False)
    from connector.replay import KINDS as kinds

    counts.add_column("destination")
    for kind in kinds:
        counts.add_column(kind, justify="right")
    for name, by_kind in data["destinations"].items():
        counts.add_row(name, *(str(by_kind[kind]) for kind in kinds))
    out.print(counts)
    if result.rows:
        out.print(_rows(result.rows))


def _rows(rows: list[dict[str, Any]]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for name in _COLUMNS:
        table.add_column(name)
    for row in rows:
        before = f"{row['status_before'] or 'no row'} {_value(row['value_before'])}".strip()
        table.add_row(
            row["destination"],
            row["change"],
            row["lead_id"],
            row["crm_status"],
            row["time"][:19].replace("T", " "),
            row["stage_now"],
            row["target_now"] or "",
            _value(row["value_now"]),
            before,
            "yes" if row["queued"] else "",
            row["note"] or row["reason_now"] or "",
        )
    return table


def _value(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
