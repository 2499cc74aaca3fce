"""`connector reconcile` and `connector channels`: reads from GA4's Data API."""

from __future__ import annotations

from typing import Annotated

import typer

from connector.cli.app import (
    EXIT_PENDING,
    JsonOption,
    app,
    console,
    fail,
    load_mapping_of,
    load_settings_or_exit,
)
from connector.errors import ConnectorError
from connector.summary_view import print_json

EXIT_DIFFERENCES = EXIT_PENDING  # 4: the same "something is left to look at" code


@app.command("reconcile")
def reconcile_command(
    since: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: 6 days before --until).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day, YYYY-MM-DD (default: yesterday).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare delivered GA4 events (ledger) with GA4's own counts per event and day.

    Exit codes: 0 GA4 counted every event sent (counting more is no failure: the website's
    own hits count too); 2 configuration; 3 GA4's Data API or the state store did not
    answer; 4 GA4 counted fewer events than were sent, on some event and day.
    """
    # Imported here: the Data API client is only needed by the GA4 commands.
    from connector.analytics import GA4Data, event_names, print_reconciliation, reconcile, window
    from connector.ledger import Ledger

    try:
        first, last = window(since, until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since / --until") from None
    settings = load_settings_or_exit(as_json)
    try:
        events = event_names(load_mapping_of(settings))
        ledger = Ledger.open(settings.state_url, readonly=True)
        with GA4Data(settings.ga4) as client:
            result = reconcile(ledger, client, first, last, events=events)
    except ConnectorError as exc:
        fail(exc, as_json)
    if as_json:
        print_json(result.as_dict())
    else:
        print_reconciliation(result, console())
    # Only events GA4 lacks fail the check: the website's own generate_lead hits (and other
    # sources of the same events) legitimately make GA4 count more than the connector sent.
    missing = [d for d in result.differences if d.gap > 0]
    raise typer.Exit(EXIT_DIFFERENCES if missing else 0)


@app.command("channels")
def channels_command(
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Look up every lead again, not only new ones.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Look up each lead's channel in GA4 (its website generate_lead hit) and store it.

    Exit codes: 0 looked up; 2 configuration; 3 GA4's Data API or the state store did not
    answer.
    """
    from collections import Counter

    from connector.analytics import GA4Data, leads_to_look_up, lookup_channels
    from connector.ledger import Ledger

    settings = load_settings_or_exit(as_json)
    try:
        ledger = Ledger.open(settings.state_url)
        wanted = leads_to_look_up(ledger, refresh=refresh)
        with GA4Data(settings.ga4) as client:
            found = lookup_channels(client, wanted, ledger=ledger)
    except ConnectorError as exc:
        fail(exc, as_json)
    groups = Counter(channel.channel_group for channel in found.values())
    result = {"looked_up": len(wanted), "found": len(found), "channels": dict(groups)}
    if as_json:
        print_json(result)
    else:
        console().print(
            f"looked up {len(wanted)} leads, found {len(found)}: "
            + (", ".join(f"{name} {count}" for name, count in groups.most_common()) or "none")
        )
