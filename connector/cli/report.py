"""`connector report`: the attribution report from the ledger."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console

from connector.cli.app import (
    JsonOption,
    SinceOption,
    UntilOption,
    app,
    console,
    fail,
    load_mapping_of,
    load_settings_or_exit,
)
from connector.errors import ConnectorError

if TYPE_CHECKING:
    from connector.report import Report


@app.command("report")
def report_command(
    since: SinceOption = None,
    until: UntilOption = None,
    group_by: Annotated[
        Literal["month", "week"], typer.Option(help="Trend buckets: month or week.")
    ] = "month",
    fmt: Annotated[
        Literal["table", "json", "csv", "wide-csv", "html"],
        typer.Option(
            "--format", help="table, json, csv (long), wide-csv (a row per channel) or html."
        ),
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option(
            help="File to write (html / csv default to report.html / report.csv); - for stdout."
        ),
    ] = None,
    unattributed: Annotated[
        bool,
        typer.Option(
            "--unattributed", help="List the leads no channel can claim, with every reason."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Attribution and funnel report for the leads first seen in a period, from the ledger.

    Exit codes: 0 written (an empty store too); 2 configuration, the mapping or an option;
    3 the state store is unavailable.
    """
    # Imported here: the report's modules are only needed by this command.
    from connector.ledger import Ledger
    from connector.report import Period, build_report, load

    fmt = "json" if as_json else fmt
    formats = ("table", "json", "csv") if unattributed else FORMATS
    if fmt not in formats:
        raise typer.BadParameter(f"use {', '.join(formats)}", param_hint="--format")
    if group_by not in ("month", "week"):
        raise typer.BadParameter("use month or week", param_hint="--group-by")
    try:
        period = Period.parse(since, until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since / --until") from None
    settings = load_settings_or_exit(as_json)
    try:
        mapping = load_mapping_of(settings)
        ledger = Ledger.open(settings.state_url, readonly=True)
        data = load(ledger, period)
        # Channels `connector channels` looked up in GA4: the third attribution signal.
        ga4_channels = {lead: c.channel_group for lead, c in ledger.channels.get().items()}
    except ConnectorError as exc:
        fail(exc, fmt == "json")
    report = build_report(
        data,
        currency=mapping.default_currency,
        group_by="week" if group_by == "week" else "month",
        precedence=mapping.attribution_precedence,
        ga4_channels=ga4_channels,
    )
    if unattributed:
        _unattributed(report, fmt, output)
    else:
        _report(report, fmt, output)


FORMATS = ("table", "json", "csv", "wide-csv", "html")


def _report(report: Report, fmt: str, output: Path | None) -> None:
    from connector.report import print_table, to_csv, to_html
    from connector.report.tabular import report_dict, to_wide_csv

    if fmt == "json":
        _emit(json.dumps(report_dict(report), indent=2) + "\n", output, "json")
    elif fmt == "table":
        _table(print_table, report, output)
    else:
        render = {"html": to_html, "csv": to_csv, "wide-csv": to_wide_csv}.get(fmt, to_csv)
        default = "html" if fmt == "html" else "csv"
        _emit(render(report), output or Path(f"report.{default}"), default)


def _unattributed(report: Report, fmt: str, output: Path | None) -> None:
    from connector.report.tabular import unattributed_csv, unattributed_dict
    from connector.report.terminal import print_unattributed

    if fmt == "json":
        _emit(json.dumps(unattributed_dict(report), indent=2) + "\n", output, "json")
    elif fmt == "csv":
        _emit(unattributed_csv(report), output or Path("unattributed.csv"), "csv")
    else:
        _table(print_unattributed, report, output)


def _table(draw: Callable[[Report, Console], None], report: Report, output: Path | None) -> None:
    """The table on stdout, or with --output into that file as plain text."""
    if output is None or str(output) == "-":
        draw(report, console())
        return
    text = io.StringIO()
    draw(report, Console(file=text, width=200, no_color=True))
    _emit(text.getvalue(), output, "table")


def _emit(text: str, output: Path | None, kind: str) -> None:
    """`text` to the file, or to standard output for `-` (and for JSON without --output)."""
    from connector.errors import ConfigError

    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, "utf-8")
    except OSError as exc:
        fail(ConfigError(f"cannot write the report to {output}: {exc.strerror}"))
    # Plain print: a path is never wrapped, and JSON's stdout stays JSON.
    print(
        f"report written to {output.resolve()}", file=sys.stderr if kind == "json" else sys.stdout
    )
