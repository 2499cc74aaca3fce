"""`connector costs`: Google Ads cost per campaign and day, and each lead's click campaign."""

from __future__ import annotations

import typer

from connector.cli.app import (
    JsonOption,
    SinceOption,
    UntilOption,
    app,
    console,
    fail,
    load_settings_or_exit,
)
from connector.errors import ConfigError, ConnectorError
from connector.summary_view import print_json


@app.command("costs")
def costs_command(
    since: SinceOption = None,
    until: UntilOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read Google Ads cost per campaign and day, and the campaign of each lead's gclid
    (click_view, last 90 days), into the ledger for `connector report`. OAuth only.

    Exit codes: 0 read; 2 a setting to fix (the account id, the credentials); 3 Google Ads
    or the state store did not answer (try again).
    """
    # Imported here: the Google Ads client is only needed by this command.
    from google.ads.googleads.errors import GoogleAdsException
    from google.api_core import exceptions as gexc

    from connector.analytics.google_ads_costs import fetch_costs
    from connector.destinations.google_ads.ads_api import describe
    from connector.ledger import Ledger
    from connector.report import Period

    try:
        period = Period.parse(since, until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since / --until") from None
    settings = load_settings_or_exit(as_json)
    if not settings.google_ads.enabled:
        fail(ConfigError("set CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID to read costs"), as_json)
    try:
        ledger = Ledger.open(settings.state_url)
        stored = fetch_costs(settings.google_ads, ledger, period.since, period.until)
    except ConnectorError as exc:
        fail(exc, as_json)
    except (GoogleAdsException, gexc.GoogleAPICallError) as exc:
        # Refused (transient failures were retried, and end as exit 3): settings to fix.
        what = f"{describe(exc)}: check CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID"
        fail(ConfigError(f"{what}, __LOGIN_ACCOUNT_ID and the credentials"), as_json)
    if as_json:
        print_json(stored)
        return
    console().print(
        f"Google Ads {stored['since']} to {stored['until']}: {stored['campaign_days']} campaign "
        f"days, cost {stored['cost']:,.2f} {stored['currency']}; {stored['clicks_found']} of "
        f"{stored['clicks_looked_up']} lead clicks placed in a campaign "
        f"({stored['click_days_queried']} click_view queries)",
        highlight=False,
    )
