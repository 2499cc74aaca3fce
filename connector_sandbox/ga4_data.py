"""A local GA4 Data API: `POST /v1beta/properties/{id}:runReport` over REST (API-NOTES §4).

It answers from two kinds of hits, the way a GA4 property would see them:

- the events a `GA4Emulator` accepted at `/mp/collect` (the connector's own
  lead events; no session, so their channel is `Unassigned` / `(not set)`);
- seeded `WebLeadHit`s: the website's own `generate_lead` hit with the lead id
  as the event-scoped custom dimension `customEvent:lead_id` and the session's
  channel, source, medium and campaign.

The real `BetaAnalyticsDataClient` (REST transport) talks to it unchanged: the
request is parsed with the library's own message types, so enums sent as
integers and int64 sent as strings are read as Google reads them. Supported:
dimensions `eventName`, `date`, the session channel dimensions and registered
`customEvent:*`; metric `eventCount`; dimension filters (and / or / not,
stringFilter, inListFilter, emptyFilter, case-insensitive unless asked);
up to 4 date ranges (`YYYY-MM-DD`, `today`, `yesterday`, `NdaysAgo`);
orderBys; limit / offset with `rowCount`; `propertyQuota`. Anything else is a
400 INVALID_ARGUMENT, like an unknown field at Google.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from google.analytics.data_v1beta.types import (
    DateRange,
    Filter,
    FilterExpression,
    OrderBy,
    RunReportRequest,
)
from google.protobuf import json_format

from connector_sandbox.faults import FaultQueue
from connector_sandbox.ga4 import GA4Emulator
from connector_sandbox.server import EmulatorServer, Request, Response, ServedEmulator

RUN_REPORT_PATH = re.compile(r"^/v1beta/properties/([^/:]+):runReport$")
DEFAULT_LIMIT = 10_000
MAX_LIMIT = 250_000
MAX_DATE_RANGES = 4
NOT_SET = "(not set)"
UNASSIGNED = "Unassigned"  # GA4's channel group for hits without a session
SESSION_DIMENSIONS = (
    "sessionDefaultChannelGroup",
    "sessionSource",
    "sessionMedium",
    "sessionCampaignName",
)
METRICS = frozenset({"eventCount"})
# Standard-property token quotas; each report here costs 1 token + 1 per 1,000 hits read.
TOKENS_PER_DAY = 200_000
TOKENS_PER_HOUR = 40_000
_DAYS_AGO = re.compile(r"^(\d+)daysAgo$")


@dataclass(frozen=True)
class WebLeadHit:
    """The website's own `generate_lead` hit: the lead id it carried and its session's channel."""

    lead_id: str
    occurred_at: datetime
    channel_group: str = "Organic Search"
    source: str = "google"
    medium: str = "organic"
    campaign: str = "(organic)"
    event_name: str = "generate_lead"


@dataclass(frozen=True)
class _Hit:
    event_name: str
    at: datetime
    params: dict[str, Any]
    session: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A request the real API would refuse: becomes `{"error": {...}}` with this status."""

    def __init__(self, message: str, status: int = 400, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class GA4DataEmulator(ServedEmulator):
    """A thread-safe GA4 Data API for one property on https://127.0.0.1:<port>."""

    def __init__(
        self,
        mp: GA4Emulator | None = None,
        *,
        property_id: str = "123456789",
        web_hits: Iterable[WebLeadHit] = (),
        custom_dimensions: Iterable[str] = ("lead_id",),
        time_zone: str = "UTC",
        currency: str = "EUR",
        faults: FaultQueue | None = None,
        clock: Callable[[], datetime] | None = None,
        port: int = 0,
    ) -> None:
        self.mp = mp
        self.property_id = property_id
        self.time_zone = time_zone
        self.currency = currency
        self.faults = faults if faults is not None else FaultQueue()
        self._zone = ZoneInfo(time_zone)
        # GA4 reports a custom dimension only once it is registered in the property.
        self._custom = frozenset(custom_dimensions)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._reset_state()
        self.seed_web_hits(web_hits)
        self._server = EmulatorServer(self._handle, port=port)

    def _reset_state(self) -> None:
        self._requests = 0
        self._bodies: list[dict[str, Any]] = []
        self._web_hits: list[WebLeadHit] = []
        self._tokens_used = 0

    def reset(self) -> None:
        """Forget requests, seeded web hits, used quota and pending faults (not the MP events)."""
        self.faults.clear()
        with self._lock:
            self._reset_state()

    def seed_web_hits(self, hits: Iterable[WebLeadHit]) -> None:
        with self._lock:
            self._web_hits.extend(hits)

    @property
    def requests(self) -> int:
        """runReport calls received, including refused and faulted ones."""
        with self._lock:
            return self._requests

    @property
    def report_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of every runReport call, in arrival order."""
        with self._lock:
            return list(self._bodies)

    # -- HTTP

    def _handle(self, request: Request) -> Response:
        match = RUN_REPORT_PATH.match(request.path)
        if request.method != "POST" or match is None:
            return _error(ApiError(f"{request.method} {request.path} not found", 404, "NOT_FOUND"))
        with self._lock:
            self._requests += 1
            self._bodies.append(_json_or_raw(request))
        injected = self.faults.take(request.path)
        if injected is not None:
            return injected
        try:
            return Response(200, self._run_report(match.group(1), request.body))
        except ApiError as exc:
            return _error(exc)

    def _run_report(self, property_id: str, body: bytes) -> dict[str, Any]:
        if property_id != self.property_id:
            raise ApiError(
                "User does not have sufficient permissions for this property.",
                403,
                "PERMISSION_DENIED",
            )
        try:
            report = RunReportRequest.from_json(body.decode() or "{}")
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise ApiError(f"Invalid JSON payload received. {exc}") from None
        return self._report(report)

    # -- the report

    def _report(self, req: RunReportRequest) -> dict[str, Any]:
        dimensions = [d.name for d in req.dimensions]
        metrics = [m.name for m in req.metrics]
        self._check_fields([*dimensions, *_filter_fields(req.dimension_filter)], metrics)
        ranges = self._date_ranges(req.date_ranges)
        hits = [h for h in self._hits() if _matches(req.dimension_filter, self._reader(h))]
        rows = _order(self._aggregate(hits, dimensions, ranges), req.order_bys, dimensions, metrics)
        if len(ranges) > 1:
            dimensions.append("dateRange")  # added by GA4 itself when several ranges are asked
        offset, limit = _paging(req)
        body: dict[str, Any] = {
            "dimensionHeaders": [{"name": name} for name in dimensions],
            "metricHeaders": [{"name": name, "type": "TYPE_INTEGER"} for name in metrics],
            "rows": [_row(keys, count, metrics) for keys, count in rows[offset : offset + limit]],
            "rowCount": len(rows),
            "metadata": {"currencyCode": self.currency, "timeZone": self.time_zone},
            "kind": "analyticsData#runReport",
        }
        cost = self._charge(len(hits))
        if req.return_property_quota:
            body["propertyQuota"] = self._quota(cost)
        return body

    def _check_fields(self, dimensions: Sequence[str], metrics: Sequence[str]) -> None:
        known = {"eventName", "date", *SESSION_DIMENSIONS} | {
            f"customEvent:{c}" for c in self._custom
        }
        for name in dimensions:
            if name not in known:
                raise ApiError(f"Field {name} is not a valid dimension.")
        for name in metrics:
            if name not in METRICS:
                raise ApiError(f"Field {name} is not a valid metric.")
        if not dimensions and not metrics:
            raise ApiError("A report needs at least one dimension or metric.")

    def _date_ranges(self, ranges: Sequence[DateRange]) -> list[tuple[str, date, date]]:
        if not ranges:
            raise ApiError("dateRanges: at least one date range is required.")
        if len(ranges) > MAX_DATE_RANGES:
            raise ApiError(f"Requests are allowed up to {MAX_DATE_RANGES} date ranges.")
        today = self._clock().astimezone(self._zone).date()
        result = []
        for index, r in enumerate(ranges):
            start, end = _day(r.start_date, today), _day(r.end_date, today)
            if start > end:
                raise ApiError(f"dateRanges[{index}]: startDate is after endDate.")
            result.append((r.name or f"date_range_{index}", start, end))
        return result

    def _hits(self) -> Iterator[_Hit]:
        for event in self.mp.accepted if self.mp is not None else []:
            stamp = event.get("timestamp_micros")
            if isinstance(stamp, int):
                at = datetime.fromtimestamp(stamp / 1_000_000, tz=UTC)
                # No session_id on the connector's events: GA4 cannot give them a channel.
                session = {"sessionDefaultChannelGroup": UNASSIGNED}
                yield _Hit(str(event.get("name")), at, dict(event.get("params") or {}), session)
        with self._lock:
            web = list(self._web_hits)
        for hit in web:
            session = dict(zip(SESSION_DIMENSIONS, _session(hit), strict=True))
            yield _Hit(hit.event_name, hit.occurred_at, {"lead_id": hit.lead_id}, session)

    def _reader(self, hit: _Hit) -> Callable[[str], str]:
        def value(name: str) -> str:
            if name == "eventName":
                return hit.event_name
            if name == "date":
                return hit.at.astimezone(self._zone).strftime("%Y%m%d")
            if name in SESSION_DIMENSIONS:
                return hit.session.get(name, NOT_SET)
            param = hit.params.get(name.removeprefix("customEvent:"))
            return NOT_SET if param in (None, "") else str(param)

        return value

    def _aggregate(
        self, hits: list[_Hit], dimensions: list[str], ranges: list[tuple[str, date, date]]
    ) -> list[tuple[tuple[str, ...], int]]:
        counts: Counter[tuple[str, ...]] = Counter()
        for hit in hits:
            day = hit.at.astimezone(self._zone).date()
            read = self._reader(hit)
            key = tuple(read(name) for name in dimensions)
            for name, start, end in ranges:
                if start <= day <= end:
                    counts[key + ((name,) if len(ranges) > 1 else ())] += 1
        return list(counts.items())

    def _charge(self, hits_read: int) -> int:
        cost = 1 + hits_read // 1000
        with self._lock:
            if self._tokens_used + cost > TOKENS_PER_HOUR:
                raise ApiError("Exhausted property tokens per hour.", 429, "RESOURCE_EXHAUSTED")
            self._tokens_used += cost
        return cost

    def _quota(self, cost: int) -> dict[str, Any]:
        with self._lock:
            used = self._tokens_used

        def status(consumed: int, limit: int) -> dict[str, int]:
            return {"consumed": consumed, "remaining": max(limit - used, 0)}

        return {
            "tokensPerDay": status(cost, TOKENS_PER_DAY),
            "tokensPerHour": status(cost, TOKENS_PER_HOUR),
            "concurrentRequests": {"consumed": 0, "remaining": 10},
            "serverErrorsPerProjectPerHour": {"consumed": 0, "remaining": 10},
            "potentiallyThresholdedRequestsPerHour": {"consumed": 0, "remaining": 120},
            "tokensPerProjectPerHour": status(cost, TOKENS_PER_HOUR * 35 // 100),
        }


# --------------------------------------------------------------------------- helpers


def _session(hit: WebLeadHit) -> tuple[str, str, str, str]:
    return (hit.channel_group, hit.source, hit.medium, hit.campaign)


def _json_or_raw(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        return {"raw": request.body.decode("utf-8", errors="replace")}
    return body if isinstance(body, dict) else {"raw": body}


def _error(exc: ApiError) -> Response:
    return Response(
        exc.status, {"error": {"code": exc.status, "message": str(exc), "status": exc.code}}
    )


def _day(text: str, today: date) -> date:
    if text == "today":
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    if match := _DAYS_AGO.match(text):
        return today - timedelta(days=int(match.group(1)))
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(
            f"Invalid date {text!r}: use YYYY-MM-DD, today, yesterday or NdaysAgo."
        ) from None


def _paging(req: RunReportRequest) -> tuple[int, int]:
    if req.offset < 0 or req.limit < 0:
        raise ApiError("limit and offset must not be negative.")
    return int(req.offset), min(int(req.limit) or DEFAULT_LIMIT, MAX_LIMIT)


def _row(keys: tuple[str, ...], count: int, metrics: list[str]) -> dict[str, Any]:
    return {
        "dimensionValues": [{"value": key} for key in keys],
        "metricValues": [{"value": str(count)} for _ in metrics],
    }


def _which(message: Any, oneof: str) -> str | None:
    kind: str | None = type(message).pb(message).WhichOneof(oneof)
    return kind


def _filter_fields(expr: FilterExpression) -> Iterator[str]:
    kind = _which(expr, "expr")
    if kind in ("and_group", "or_group"):
        for child in getattr(expr, kind).expressions:
            yield from _filter_fields(child)
    elif kind == "not_expression":
        yield from _filter_fields(expr.not_expression)
    elif kind == "filter":
        yield expr.filter.field_name


def _matches(expr: FilterExpression, value: Callable[[str], str]) -> bool:
    kind = _which(expr, "expr")
    if kind is None:
        return True  # no filter
    if kind == "and_group":
        return all(_matches(child, value) for child in expr.and_group.expressions)
    if kind == "or_group":
        return any(_matches(child, value) for child in expr.or_group.expressions)
    if kind == "not_expression":
        return not _matches(expr.not_expression, value)
    return _filter_matches(expr.filter, value(expr.filter.field_name))


def _filter_matches(f: Filter, value: str) -> bool:
    kind = _which(f, "one_filter")
    if kind == "in_list_filter":
        values = list(f.in_list_filter.values)
        if not values:
            raise ApiError("inListFilter.values must be non-empty.")
        if f.in_list_filter.case_sensitive:
            return value in values
        return value.casefold() in {v.casefold() for v in values}
    if kind == "string_filter":
        return _string_matches(f.string_filter, value)
    if kind == "empty_filter":
        return value in ("", NOT_SET)
    raise ApiError(f"Filter on {f.field_name}: {kind} is not supported for string dimensions.")


def _string_matches(sf: Filter.StringFilter, value: str) -> bool:
    wanted = sf.value
    if not sf.case_sensitive:  # GA4 string filters ignore case unless told otherwise
        value, wanted = value.casefold(), wanted.casefold()
    types = Filter.StringFilter.MatchType
    match sf.match_type:
        case types.BEGINS_WITH:
            return value.startswith(wanted)
        case types.ENDS_WITH:
            return value.endswith(wanted)
        case types.CONTAINS:
            return wanted in value
        case types.FULL_REGEXP:
            return re.fullmatch(wanted, value) is not None
        case types.PARTIAL_REGEXP:
            return re.search(wanted, value) is not None
        case _:
            return value == wanted  # EXACT, and the unspecified default


def _order(
    rows: list[tuple[tuple[str, ...], int]],
    order_bys: Sequence[OrderBy],
    dimensions: list[str],
    metrics: list[str],
) -> list[tuple[tuple[str, ...], int]]:
    # Without orderBys: biggest count first, then by dimension values (deterministic).
    rows = sorted(rows, key=lambda r: (-r[1], r[0]))
    for order in reversed(order_bys):  # stable sorts, last key first
        kind = _which(order, "one_order_by")
        if kind == "metric" and order.metric.metric_name in metrics:
            rows.sort(key=lambda r: r[1], reverse=order.desc)
        elif kind == "dimension" and order.dimension.dimension_name in dimensions:
            index = dimensions.index(order.dimension.dimension_name)
            rows.sort(key=lambda r: r[0][index], reverse=order.desc)
        else:
            raise ApiError("orderBys must name a requested dimension or metric.")
    return rows
