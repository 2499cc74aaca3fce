"""Did GA4 count what the connector sent? Delivered against reported, per event name and day.

The GA4 events the ledger says were delivered, against GA4's own `eventCount`
(API-NOTES §4). GA4 has no dedup and `/mp/collect` answers 2xx even when it
drops an event (§3), so this report is the only end-to-end proof that events
arrived.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.analytics.data_v1beta.types import DateRange, Dimension, Metric, RunReportRequest

from connector.analytics.client import DataApiError, GA4Data, in_list
from connector.destinations.ga4.events import BACKDATE_SAFE
from connector.ledger import Ledger
from connector.mapping.rules import Mapping


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
    # A day longer on each side covers every property time zone; days are cut later.
    low = datetime.combine(since - timedelta(days=1), time(), UTC)
    high = datetime.combine(until + timedelta(days=2), time(), UTC)
    return [
        (name, _ga4_time(changed, sent))
        for name, changed, sent in ledger.queue.delivered_between("ga4", low, high)
    ]


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
        dimension_filter=in_list("eventName", names),
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
