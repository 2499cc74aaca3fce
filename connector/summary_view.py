"""Print a run summary for a person (rich) or a script (JSON on stdout)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from connector.summary import RunSummary


def print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_summary(summary: RunSummary, console: Console, title: str = "Sync") -> None:
    data = summary.as_dict()
    mode = (
        " (dry run: nothing sent, state unchanged; delivered = valid, would be sent)"
        if summary.dry_run
        else ""
    )
    console.print(f"[bold]{title}[/bold]{mode}: status [bold]{data['status']}[/bold]")
    console.print(
        f"  pulled {data['pulled']} stage changes since {data['since']}: "
        f"{data['new']} new, {data['already_recorded']} already recorded"
    )
    if data["unmapped_statuses"]:
        unmapped = _pairs(data["unmapped_statuses"])
        console.print(f"  unmapped statuses (the mapping doesn't know them): {unmapped}")
    if data["row_problems"]:
        console.print(f"  row problems: {_pairs(data['row_problems'])}")
    console.print(_destinations_table(data["destinations"]))
    for name, tally in data["destinations"].items():
        if tally.get("field_warnings"):
            console.print(
                f"  {name} field warnings (accepted, but Google flagged a field): "
                f"{_pairs(tally['field_warnings'])}"
            )
    m = data.get("measurability")
    if m and m["leads"]:
        console.print(
            f"  measurability: {m['rate']:.0%} of {m['leads']} leads ({m['period']}) "
            "can be attributed to a channel"
        )
    for name, status in (data.get("request_status") or {}).items():
        if status["checked"]:
            console.print(
                f"  {name} earlier uploads: {status['finished']} of {status['checked']} requests "
                f"processed by Google, {status['matched']} of {status['processed']} records matched"
            )
    for name, problem in data["destination_errors"].items():
        console.print(f"  [red]{name} stopped for this run[/red]: {problem}")
    for name, count in data["may_be_duplicated"].items():
        console.print(
            f"  [yellow]{count} {name} events may be duplicated[/yellow]: they were in flight "
            "when a run stopped, or their request timed out after sending (GA4 has no dedup)"
        )
    for name, count in data["resent_after_stop"].items():
        console.print(f"  {count} {name} rows resent after a run stopped (deduplicated by Google)")
    for name, tally in data["destinations"].items():
        if tally["dead"] or tally["unknown"]:
            console.print(
                f"  {name}: {tally['dead']} ran out of attempts, {tally['unknown']} unknown "
                "(connector failures lists them; connector retry re-queues them)"
            )
    extras = [
        ("retries", data["retries"] or None),
        ("cursor", data["cursor"]),
        ("Salesforce API usage", data["salesforce_api_usage"]),
        ("Salesforce query calls", data["salesforce_query_calls"]),
        ("payloads file", data["payloads_file"]),
        ("stopped", data["stopped"]),
        ("error", data["error"]),
    ]
    for label, value in extras:
        if value not in (None, ""):
            console.print(f"  {label}: {value}")
    if data.get("rows") is not None:
        _print_rows(data["rows"], console)


ROW_COLUMNS = (
    "lead_id",
    "stage",
    "destination",
    "target",
    "time",
    "value",
    "identifiers",
    "result",
    "reason",
)


def _print_rows(rows: list[dict[str, Any]], console: Console) -> None:
    """A dry run's rows, in the JSON's words (`rows`): what each row would do, and why."""
    if not rows:
        console.print("  no rows (none planned, or none for the leads asked for)")
        return
    table = Table(show_edge=False, pad_edge=False)
    for name in ROW_COLUMNS:
        table.add_column(name, justify="right" if name == "value" else "left")
    for row in rows:
        value = "" if row["value"] is None else f"{row['value']:g} {row['currency'] or ''}"
        table.add_row(
            row["lead_id"],
            row["stage"],
            row["destination"] or "",
            row["target"] or "",
            row["time"][:19].replace("T", " "),
            value.strip(),
            ",".join(row["identifiers"]),
            row["result"],
            row["reason"] or "",
        )
    console.print(table)


def _destinations_table(destinations: dict[str, Any]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("destination")
    table.add_column("delivered", justify="right")  # the JSON's word, in a dry run too
    table.add_column("pending", justify="right")
    table.add_column("skipped (reason)")
    table.add_column("rejected (reason)")
    for name, tally in destinations.items():
        table.add_row(
            name,
            str(tally["delivered"]),
            str(tally["pending"]),
            _pairs(tally["skipped"]) or "0",
            _pairs(tally["rejected"]) or "0",
        )
    return table


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.items())
