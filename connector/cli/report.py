"""`connector report`: the attribution report from the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from connector.cli.app import (
    JsonOption,
    app,
    fail,
    load_mapping_of,
    load_settings_or_exit,
)
from connector.errors import ConnectorError
from connector.summary_view import print_json


@app.command("report")
def report_command(
    since: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: the 90 days up to --until).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day, YYYY-MM-DD (default: today).")
    ] = None,
    group_by: Annotated[str, typer.Option(help="Trend buckets: month or week.")] = "month",
    fmt: Annotated[str, typer.Option("--format", help="table, json, csv or html.")] = "table",
    output: Annotated[
        Path | None, typer.Option(help="File for html / csv (default report.html / report.csv).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Attribution and funnel report for the leads first seen in a period, from the ledger."""
    # Imported here: the report's modules are only needed by this command.
    from connector.errors import ConfigError
    from connector.ledger import Ledger
    from connector.report import Period, build_report, load, print_table, to_csv, to_html
    from connector.report.tabular import report_dict

    fmt = "json" if as_json else fmt
    if fmt not in ("table", "json", "csv", "html"):
        raise typer.BadParameter("use table, json, csv or html", param_hint="--format")
    if group_by not in ("month", "week"):
        raise typer.BadParameter("use month or week", param_hint="--group-by")
    try:
        period = Period.parse(since, until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since / --until") from None
    settings = load_settings_or_exit()
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
    if fmt == "json":
        print_json(report_dict(report))
    elif fmt == "table":
        print_table(report, Console())
    else:
        path = output or Path(f"report.{fmt}")
        try:
            path.write_text(to_html(report) if fmt == "html" else to_csv(report), "utf-8")
        except OSError as exc:
            fail(ConfigError(f"cannot write the report to {path}: {exc.strerror}"))
        Console().print(f"report written to {path.resolve()}")
