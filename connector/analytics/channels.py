"""Which channel brought each lead, from the website's own generate_lead hit in GA4.

The connector's events carry no session, so GA4 cannot give them a channel
(API-NOTES §3). The website's own `generate_lead` hit can: it carries the lead
id as the custom dimension `customEvent:lead_id`, and its session has the
channel, source, medium and campaign. Looked up in batches (one inListFilter
per chunk of lead ids), stored in the ledger's channel cache for the
attribution report.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from google.analytics.data_v1beta.types import (
    DateRange,
    Dimension,
    FilterExpression,
    FilterExpressionList,
    Metric,
    RunReportRequest,
)

from connector.analytics.client import GA4Data, in_list
from connector.core import utcnow
from connector.ledger import LeadChannel, Ledger

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
LOOKUP_DAYS = 400  # how far back a lead's generate_lead hit is looked for


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
    retroactively). With `ledger`, what was found is stored in its channel cache.
    """
    ids = sorted({lead_id for lead_id in lead_ids if lead_id})
    first = since or (datetime.now(UTC).date() - timedelta(days=LOOKUP_DAYS))
    found: dict[str, LeadChannel] = {}
    for start in range(0, len(ids), chunk):
        found.update(_lookup_chunk(client, ids[start : start + chunk], first))
    if ledger is not None and found:
        ledger.channels.save(found.values())
    return found


def leads_to_look_up(ledger: Ledger, *, refresh: bool = False) -> list[str]:
    """Lead ids in the ledger without a stored channel (all of them with `refresh`)."""
    return ledger.channels.leads_to_look_up(refresh=refresh)


def _lookup_chunk(client: GA4Data, lead_ids: list[str], since: date) -> dict[str, LeadChannel]:
    request = RunReportRequest(
        dimensions=[Dimension(name=name) for name in (LEAD_ID, "date", *CHANNEL_DIMENSIONS)],
        metrics=[Metric(name="eventCount")],
        date_ranges=[DateRange(start_date=since.isoformat(), end_date="today")],
        dimension_filter=FilterExpression(
            and_group=FilterExpressionList(
                expressions=[in_list("eventName", [LEAD_EVENT]), in_list(LEAD_ID, lead_ids)]
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
