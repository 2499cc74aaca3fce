"""`connector runs`: the recent sync runs recorded in the ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from connector.cli.app import JsonOption, app, console, fail, load_settings_or_exit
from connector.errors import ConnectorError
from connector.state_url import safe_url
from connector.summary_view import print_json

if TYPE_CHECKING:
    from connector.ledger.runs import RunRecord

COLUMNS = ("run", "started", "status", "duration", "pulled", "new", "delivered", "pending")


@app.command("runs")
def runs_command(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many runs, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List recent sync runs: status, counts per destination, duration, error.

    Exit codes: 0 listed (none recorded yet too); 2 configuration; 3 the state store is
    unavailable.
    """
    from connector.ledger import Ledger

    settings = load_settings_or_exit(as_json)
    try:
        records = Ledger.open(settings.state_url, readonly=True).runs.recent(limit)
    except ConnectorError as exc:
        fail(exc, as_json)
    rows = [run_row(r) for r in records]
    if as_json:
        print_json({"runs": rows})
        return
    out = console()
    if not rows:
        out.print(f"no runs recorded yet in {safe_url(settings.state_url)}")
        return
    out.print(_table(rows))


def run_row(record: RunRecord) -> dict[str, Any]:
    """One run in the words of the table; numbers stay numbers (seconds for the duration)."""
    summary = record.summary or {}
    destinations: dict[str, dict[str, Any]] = summary.get("destinations") or {}
    ended = record.finished_at
    return {
        "run": record.id,
        "started": record.started_at.isoformat(),
        "status": record.status,
        "duration": round((ended - record.started_at).total_seconds(), 3) if ended else None,
        "pulled": summary.get("pulled"),
        "new": summary.get("new"),
        "delivered": {name: t["delivered"] for name, t in destinations.items()},
        "pending": {name: t["pending"] for name, t in destinations.items()},
        "rejected": {name: sum(t["rejected"].values()) for name, t in destinations.items()},
        "error": summary.get("error"),
    }


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for name in (*COLUMNS, "rejected", "error"):
        table.add_column(name, justify="right" if name in ("run", "pulled", "new") else "left")
    for row in rows:
        duration = "" if row["duration"] is None else f"{row['duration']:.1f}s"
        table.add_row(
            str(row["run"]),
            row["started"][:19].replace("T", " "),
            row["status"],
            duration,
            _text(row["pulled"]),
            _text(row["new"]),
            _per_destination(row["delivered"]),
            _per_destination(row["pending"]),
            _per_destination(row["rejected"]),
            row["error"] or "",
        )
    return table


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def _per_destination(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())
