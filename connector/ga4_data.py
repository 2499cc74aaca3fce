"""GA4 Data API: did GA4 count what the connector sent, and which channel brought each lead.

- `reconcile`: per event name and day, the GA4 events the ledger says were
  delivered against GA4's own `eventCount` (API-NOTES §4). GA4 has no dedup and
  `/mp/collect` answers 2xx even when it drops an event (§3), so this report is
  the only end-to-end proof that events arrived.
- `lookup_channels`: the connector's events carry no session, so GA4 cannot
  give them a channel (§3). The website's own `generate_lead` hit can: it
  carries the lead id as the custom dimension `customEvent:lead_id`, and its
  session has the channel, source, medium and campaign. Looked up in batches
  (one inListFilter per chunk of lead ids), stored in the ledger's
  `lead_channels` table for the attribution report.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from google.analytics.data_v1beta import BetaAnalyticsDataClient
from google.analytics.data_v1beta.types import (
    DateRange,
    Dimension,
    Filter,
    FilterExpression,
    FilterExpressionList,
    Metric,
    ResponseMetaData,
    Row,
    RunReportRequest,
    RunReportResponse,
)
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials, Credentials
from rich.console import Console
from rich.table import Table
from sqlalchemy import exists, or_, select

from connector.destinations.ga4 import BACKDATE_SAFE
from connector.destinations.retry import (
    GOOGLE_REST_TRANSIENT,
    RetryableError,
    call_with_retries,
)
from connector.errors import ConfigError, ConnectorError
from connector.http import pin_ca
from connector.ledger.schema import deliveries, lead_channels, stage_changes
from connector.ledger.store import DELIVERED, LeadChannel, Ledger, utcnow
from connector.mapping.rules import Mapping
from connector.settings import GA4Settings, env_name

SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
LEAD_ID = "customEvent:lead_id"
LEAD_EVENT = "generate_lead"
CHANNEL_DIMENSIONS = (
    "sessionDefaultChannelGroup",
    "sessionSource",
    "sessionMedium",
    "sessionCampaignName",
)
# 100 lead ids per report keeps a request small and its rows far below one page.
LOOKUP_CHUNK = 100
PAGE_SIZE = 10_000  # the API's default page; at most 250,000
LOOKUP_DAYS = 400  # how far back a lead's generate_lead hit is looked for
_TRANSIENT = GOOGLE_REST_TRANSIENT


class DataApiError(ConnectorError):
    """The GA4 Data API kept failing (after retries) or refused the request."""


# --------------------------------------------------------------------------- client


def google_credentials(
    *, anonymous: bool, credentials_file: Path | None, scope: str, group: str
) -> Credentials:
    """Credentials for a Google API client: anonymous, a service-account file, or ADC.

    `group` is the settings group (e.g. "ga4"), so errors name the variable to set.
    """
    if anonymous:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]  # emulators, proxies
    setting = env_name(group, "credentials_file")
    try:
        if credentials_file is not None:
            from google.oauth2 import service_account

            creds: Credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(credentials_file), scopes=[scope]
            )
            return creds
        import google.auth

        creds, _ = google.auth.default(scopes=[scope])
        return creds
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"Google credentials unusable: set {setting} to a service-account key file, "
            f"or configure Application Default Credentials ({type(exc).__name__})"
        ) from None
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError
        raise ConfigError(
            f"no Google credentials found: set {setting} or Application Default Credentials "
            f"({type(exc).__name__})"
        ) from None


class GA4Data:
    """The GA4 Data API for the configured property, over REST with the CA bundle pinned."""

    def __init__(self, settings: GA4Settings) -> None:
        if not settings.property_id.isdigit():
            raise ConfigError(
                f"{env_name('ga4', 'property_id')} must be the GA4 property id (digits) "
                "for reconciliation and channel lookup"
            )
        self.property = f"properties/{settings.property_id}"
        self._timeout = settings.timeout_seconds
        credentials = google_credentials(
            anonymous=settings.anonymous_credentials,
            credentials_file=settings.credentials_file,
            scope=SCOPE,
            group="ga4",
        )
        self._client = BetaAnalyticsDataClient(
            credentials=credentials,
            transport="rest",
            client_options={"api_endpoint": settings.data_api_endpoint},
        )
        # The REST transport is a requests session: pin the CA bundle setting on it.
        pin_ca(self._client.transport._session, settings.data_api_ca_bundle)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._client.transport.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> GA4Data:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run_report(self, request: RunReportRequest) -> RunReportResponse:
        """One runReport call for this property; 429 / 5xx / timeouts retried with backoff."""
        request.property = self.property
        try:
            return call_with_retries(lambda: self._call(request))
        except RetryableError as exc:
            raise DataApiError(f"GA4 Data API unavailable after retries: {exc}") from None

    def rows(self, request: RunReportRequest) -> tuple[list[Row], ResponseMetaData]:
        """Every row of a report, paging with offset / limit; and the report's metadata."""
        request.limit = PAGE_SIZE
        request.offset = 0
        response = self.run_report(request)
        rows = list(response.rows)
        while response.rows and len(rows) < response.row_count:
            request.offset = len(rows)
            response = self.run_report(request)
            rows.extend(response.rows)
        return rows, response.metadata

    def _call(self, request: RunReportRequest) -> RunReportResponse:
        try:
            return self._client.run_report(request=request, retry=None, timeout=self._timeout)
        except requests.exceptions.SSLError:
            # A ConnectionError too, but retrying cannot fix trust: name the setting instead.
            raise ConfigError(
                "TLS verification of the GA4 Data API failed: check "
                f"{env_name('ga4', 'data_api_endpoint')} and "
                f"{env_name('ga4', 'data_api_ca_bundle')}"
            ) from None
        except _TRANSIENT as exc:
            raise RetryableError(f"GA4 Data API transient failure: {type(exc).__name__}") from None
        except gexc.GoogleAPICallError as exc:
            # Wrong property, no access, an unregistered custom dimension: settings to fix.
            raise ConfigError(
                f"GA4 Data API refused the report ({exc.code}): {exc.message}"
            ) from None


# --------------------------------------------------------------------------- reconcile


@dataclass(frozen=True)
class Difference:
    """One event name on one day where the ledger and GA4 disagree."""

    event_name: str
    day: date
    delivered: int
    reported: int

    @property
    def gap(self) -> int:
        return self.delivered - self.reported

    @property
    def kind(self) -> str:
        # missing: sent but not counted (dropped, or still processing); extra: another
        # sender (the site's own tag) or a double send.
        return "missing_in_ga4" if self.gap > 0 else "extra_in_ga4"

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_name": self.event_name,
            "date": self.day.isoformat(),
            "delivered": self.delivered,
            "reported": self.reported,
            "difference": self.gap,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class Reconciliation:
    since: date
    until: date
    time_zone: str
    delivered: dict[tuple[str, date], int] = field(default_factory=dict)
    reported: dict[tuple[str, date], int] = field(default_factory=dict)

    @property
    def differences(self) -> list[Difference]:
        keys = sorted(set(self.delivered) | set(self.reported), key=lambda k: (k[1], k[0]))
        found = [
            Difference(
                name, day, self.delivered.get((name, day), 0), self.reported.get((name, day), 0)
            )
            for name, day in keys
        ]
        return [d for d in found if d.gap]

    def as_dict(self) -> dict[str, Any]:
        differences = self.differences
        return {
            "status": "differences" if differences else "ok",
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "time_zone": self.time_zone,
            "delivered": sum(self.delivered.values()),
            "reported": sum(self.reported.values()),
            "differences": [d.as_dict() for d in differences],
        }


def window(since: str | None, until: str | None) -> tuple[date, date]:
    """The days to reconcile from YYYY-MM-DD options; ValueError says what is wrong.

    Default: the 7 days up to yesterday, because GA4 needs hours to finish a day.
    """
    last = _day(until, "--until") or (datetime.now(UTC).date() - timedelta(days=1))
    first = _day(since, "--since") or (last - timedelta(days=6))
    if first > last:
        raise ValueError(f"--since {first} is after --until {last}")
    return first, last


def _day(text: str | None, option: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise ValueError(f"{option} must be a date like 2026-11-20, not {text!r}") from None


def event_names(mapping: Mapping) -> set[str]:
    """The GA4 events the mapping sends: counted in GA4 even on days the ledger has none."""
    return {rule.ga4.event for rule in mapping.stages.values() if rule.ga4 is not None}


def reconcile(
    ledger: Ledger,
    client: GA4Data,
    since: date,
    until: date,
    events: Iterable[str] = (),
) -> Reconciliation:
    """Delivered (ledger) against reported (GA4) event counts per event name and day."""
    sent = _delivered_events(ledger, since, until)
    names = sorted(set(events) | {name for name, _ in sent})
    if not names:
        return Reconciliation(since, until, time_zone="")
    reported, zone_name = _reported_counts(client, names, since, until)
    zone = _zone(zone_name)
    delivered = Counter(
        (name, day) for name, at in sent if since <= (day := at.astimezone(zone).date()) <= until
    )
    return Reconciliation(since, until, zone_name, dict(delivered), reported)


def _delivered_events(ledger: Ledger, since: date, until: date) -> list[tuple[str, datetime]]:
    """(event name, time GA4 dates it by) of each delivered GA4 event around the window."""
    if not ledger.counts().get("ga4"):
        return []  # no store yet, or nothing for GA4 in it
    # A day longer on each side covers every property time zone; days are cut later.
    low = datetime.combine(since - timedelta(days=1), time(), UTC)
    high = datetime.combine(until + timedelta(days=2), time(), UTC)
    query = (
        select(deliveries.c.target, stage_changes.c.changed_at, deliveries.c.updated_at)
        .join(stage_changes, deliveries.c.change_id == stage_changes.c.id)
        .where(
            deliveries.c.destination == "ga4",
            deliveries.c.status == DELIVERED,
            or_(
                stage_changes.c.changed_at.between(low, high),
                deliveries.c.updated_at.between(low, high),
            ),
        )
    )
    with ledger.engine.connect() as conn:
        return [(name, _ga4_time(changed, sent)) for name, changed, sent in conn.execute(query)]


def _ga4_time(changed_at: datetime, sent_at: datetime) -> datetime:
    # Too old to backdate (mapping option send_now): GA4 dates the event when it arrived.
    return changed_at if sent_at - changed_at <= BACKDATE_SAFE else sent_at


def _reported_counts(
    client: GA4Data, names: Sequence[str], since: date, until: date
) -> tuple[dict[tuple[str, date], int], str]:
    request = RunReportRequest(
        dimensions=[Dimension(name="eventName"), Dimension(name="date")],
        metrics=[Metric(name="eventCount")],
        date_ranges=[DateRange(start_date=since.isoformat(), end_date=until.isoformat())],
        dimension_filter=_in_list("eventName", names),
    )
    rows, metadata = client.rows(request)
    counts: Counter[tuple[str, date]] = Counter()
    for row in rows:
        name, day = (v.value for v in row.dimension_values)
        counts[name, datetime.strptime(day, "%Y%m%d").date()] += int(row.metric_values[0].value)
    return dict(counts), metadata.time_zone or "UTC"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataApiError(f"GA4 reported an unknown property time zone {name!r}") from None


# --------------------------------------------------------------------------- channels


def lookup_channels(
    client: GA4Data,
    lead_ids: Iterable[str],
    *,
    ledger: Ledger | None = None,
    chunk: int = LOOKUP_CHUNK,
    since: date | None = None,
) -> dict[str, LeadChannel]:
    """lead id -> the channel of its generate_lead hit; one report per `chunk` lead ids.

    Leads GA4 has no hit for are left out (the custom dimension is not filled
    retroactively). With `ledger`, what was found is stored in `lead_channels`.
    """
    ids = sorted({lead_id for lead_id in lead_ids if lead_id})
    first = since or (datetime.now(UTC).date() - timedelta(days=LOOKUP_DAYS))
    found: dict[str, LeadChannel] = {}
    for start in range(0, len(ids), chunk):
        found.update(_lookup_chunk(client, ids[start : start + chunk], first))
    if ledger is not None and found:
        ledger.save_channels(found.values())
    return found


def leads_to_look_up(ledger: Ledger, *, refresh: bool = False) -> list[str]:
    """Lead ids in the ledger without a stored channel (all of them with `refresh`)."""
    query = select(stage_changes.c.lead_id).distinct()
    if not refresh:
        query = query.where(~exists().where(lead_channels.c.lead_id == stage_changes.c.lead_id))
    with ledger.engine.connect() as conn:
        return sorted(conn.execute(query).scalars())


def _lookup_chunk(client: GA4Data, lead_ids: list[str], since: date) -> dict[str, LeadChannel]:
    request = RunReportRequest(
        dimensions=[Dimension(name=name) for name in (LEAD_ID, "date", *CHANNEL_DIMENSIONS)],
        metrics=[Metric(name="eventCount")],
        date_ranges=[DateRange(start_date=since.isoformat(), end_date="today")],
        dimension_filter=FilterExpression(
            and_group=FilterExpressionList(
                expressions=[_in_list("eventName", [LEAD_EVENT]), _in_list(LEAD_ID, lead_ids)]
            )
        ),
    )
    rows, _ = client.rows(request)
    wanted, now = set(lead_ids), utcnow()
    best: dict[str, tuple[str, int, LeadChannel]] = {}
    for row in rows:
        lead_id, day, group, source, medium, campaign = (v.value for v in row.dimension_values)
        if lead_id not in wanted:
            continue
        channel = LeadChannel(lead_id, group, source, medium, campaign, looked_up_at=now)
        rank = (day, -int(row.metric_values[0].value))
        # The earliest day's session is the one where the lead signed up.
        if lead_id not in best or rank < best[lead_id][:2]:
            best[lead_id] = (*rank, channel)
    return {lead_id: channel for lead_id, (_, _, channel) in best.items()}


def _in_list(field_name: str, values: Sequence[str]) -> FilterExpression:
    # Case-sensitive: 15-character Salesforce ids differ only by case.
    return FilterExpression(
        filter=Filter(
            field_name=field_name,
            in_list_filter=Filter.InListFilter(values=list(values), case_sensitive=True),
        )
    )


# --------------------------------------------------------------------------- printing


def print_reconciliation(result: Reconciliation, console: Console) -> None:
    differences = result.differences
    console.print(
        f"GA4 events {result.since} to {result.until} ({result.time_zone or 'no events'}): "
        f"{sum(result.delivered.values())} delivered, {sum(result.reported.values())} in GA4"
    )
    if not differences:
        console.print("no differences")
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("date")
    table.add_column("event")
    for column in ("delivered", "in GA4", "difference"):
        table.add_column(column, justify="right")
    table.add_column("kind")
    for d in differences:
        table.add_row(
            d.day.isoformat(),
            d.event_name,
            str(d.delivered),
            str(d.reported),
            f"{d.gap:+d}",
            d.kind.replace("_", " ").replace("ga4", "GA4"),
        )
    console.print(table)
