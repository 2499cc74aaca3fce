"""`connector failures` and `connector retry`: the rows that will not go by themselves."""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from connector.cli.app import JsonOption, app, console, fail, load_settings_or_exit
from connector.errors import ConfigError, ConnectorError
from connector.summary_view import print_json

if TYPE_CHECKING:
    from connector.ledger.queue import Failure

DestinationOption = Annotated[
    Literal["google_ads", "ga4"] | None, typer.Option(help="Only this destination.")
]
_COLUMNS = ("id", "destination", "status", "reason", "lead_id", "stage", "updated_at")
ReasonOption = Annotated[str | None, typer.Option(help="Only rows with this reason.")]


@app.command("failures")
def failures_command(
    destination: DestinationOption = None,
    reason: ReasonOption = None,
    since: Annotated[
        str | None, typer.Option(help="Only rows settled since this day, YYYY-MM-DD.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 200,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List rejected rows, dead letters (attempts ran out) and rows of unknown fate.

    Exit codes: 0 listed (none too); 2 configuration or an option; 3 the state store is
    unavailable.
    """
    from connector.ledger import Ledger

    settings = load_settings_or_exit(as_json)
    try:
        first = _day(since)
        ledger = Ledger.open(settings.state_url, readonly=True)
        rows = ledger.queue.failures(
            destination=destination, reason=reason, since=first, limit=limit
        )
    except ConnectorError as exc:
        fail(exc, as_json)
    records = [_record(r) for r in rows]
    if as_json:
        print_json({"failures": records, "count": len(records)})
    elif as_csv:
        _print_csv(records)
    else:
        _print_table(records)


@app.command("retry")
def retry_command(
    ids: Annotated[list[int] | None, typer.Argument(help="Delivery ids to re-queue.")] = None,
    destination: DestinationOption = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-queue failed rows (by id, reason or destination) after a fix: the next sync sends them.

    Exit codes: 0 re-queued (none matching too); 2 configuration or an option; 3 the state
    store is unavailable.
    """
    from connector.ledger import Ledger

    if not (ids or destination or reason):
        raise typer.BadParameter("name ids, --destination or --reason", param_hint="IDS")
    settings = load_settings_or_exit(as_json)
    try:
        ledger = Ledger.open(settings.state_url)
        count = ledger.queue.requeue(ids=ids or (), destination=destination, reason=reason)
    except ConnectorError as exc:
        fail(exc, as_json)
    if as_json:
        print_json({"requeued": count})
    else:
        console().print(f"re-queued {count} rows: the next sync sends them")


def _day(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(f"--since must be a day like 2026-11-20, not {text!r}") from None


def _record(r: Failure) -> dict[str, object]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(r).items()}


def _print_csv(records: list[dict[str, object]]) -> None:
    out = io.StringIO()
    if records:
        writer = csv.DictWriter(out, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    sys.stdout.write(out.getvalue())


def _print_table(records: list[dict[str, object]]) -> None:
    out = console()
    if not records:
        out.print("no rejected, dead or unknown rows")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "destination", "status", "reason", "lead_id", "stage", "updated_at"):
        table.add_column(column)
    for r in records:
        table.add_row(
            *(
                str(r[c] or "")
                for c in ("id", "destination", "status", "reason", "lead_id", "stage", "updated_at")
            )
        )
    out.print(table)
    out.print(f"{len(records)} rows; `connector retry ID ...` re-queues chosen ones")
