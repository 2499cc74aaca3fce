"""The leads behind opportunities are looked up once per 2,000 distinct opportunities, not
once per OpportunityFieldHistory page, each lookup one Composite call (real
simple-salesforce, emulated org: it refuses a GET over Salesforce's URI limit)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from connector.errors import SourceError
from connector.mapping.rules import load_mapping
from connector.settings import SalesforceSettings
from connector.source.auth import connect
from connector.source.cursor import Cursor
from connector.source.salesforce import SalesforceSource
from connector.source.soql import LOOKUP_IDS
from connector.source.streams import OPPORTUNITY_HISTORY
from connector_sandbox.dataset import sf_datetime, sf_id
from connector_sandbox.faults import Fault
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=5)
STAGES = ("Prospecting", "Proposal", "Closed Won")
PER_LOOKUP = LOOKUP_IDS


def org(deals: int) -> dict[str, list[dict[str, Any]]]:
    """`deals` converted leads, each with its opportunity and two stage changes; the
    changes of all deals interleave in time, as in a busy org."""
    leads, opportunities, history = [], [], []
    for i in range(deals):
        lead_id, opp_id = sf_id("00Q", 10_000 + i), sf_id("006", 10_000 + i)
        leads.append(
            {"Id": lead_id, "CreatedDate": sf_datetime(START), "IsConverted": True,
             "ConvertedOpportunityId": opp_id, "Status": "Closed - Converted",
             "GA_Client_ID__c": f"{i}.1"}
        )  # fmt: skip
        opportunities.append(
            {"Id": opp_id, "Name": f"Deal {i}", "StageName": "Closed Won", "IsWon": True,
             "IsClosed": True, "Amount": 1000.0, "CreatedDate": sf_datetime(START)}
        )  # fmt: skip
    for step in range(2):
        for i in range(deals):
            at = START + timedelta(seconds=10 * (step * deals + i))
            history.append(
                {"Id": sf_id("017", 500_000 + step * deals + i), "Field": "StageName",
                 "OpportunityId": sf_id("006", 10_000 + i), "OldValue": STAGES[step],
                 "NewValue": STAGES[step + 1], "CreatedDate": sf_datetime(at)}
            )  # fmt: skip
    return {"Lead": leads, "Opportunity": opportunities, "OpportunityFieldHistory": history}


def pull_all(box: Sandbox) -> tuple[list[datetime], Cursor, int]:
    settings = box.settings("sqlite://", MAPPING).salesforce
    reader = SalesforceSource(connect(settings), load_mapping(MAPPING))
    cursor = Cursor.resume(OPPORTUNITY_HISTORY, None, SalesforceSettings(), NOW)
    pull = reader.pull(cursor)
    changes = list(pull)
    # Every change under the lead converted into its deal, whichever group brought it.
    lead_of = {r["ConvertedOpportunityId"]: r["Id"] for r in box.salesforce.records("Lead")}
    assert all(c.lead_id == lead_of[c.opportunity_id] for c in changes)
    return [c.changed_at for c in changes], cursor, pull.stats.calls


def test_opportunity_pages_share_one_lead_lookup_per_id_list() -> None:
    with Sandbox(org(190)) as box:
        box.salesforce.page_size = 200  # 380 history rows: two pages; 190 leads: one
        times, cursor, calls = pull_all(box)
        lookups = box.salesforce.query_calls["Lead"]
        history_pages = box.salesforce.query_calls["OpportunityFieldHistory"]
    assert history_pages == 2 and lookups == 1 and calls == 3
    assert len(times) == 380 and times == sorted(times)  # still in time order
    assert cursor.bookmark == max(times)


def test_more_opportunities_than_one_list_holds_take_one_lookup_per_list() -> None:
    deals = PER_LOOKUP + 100
    with Sandbox(org(deals)) as box:
        times, _, _ = pull_all(box)
        lookups = box.salesforce.query_calls["Lead"]
    # The first PER_LOOKUP deals, then the other 100 with the second changes of all: the
    # leads of the first group are still held, so each lead is looked up once.
    assert len(times) == 2 * deals and lookups == math.ceil(deals / PER_LOOKUP) == 2


def test_a_deal_met_again_far_down_the_stream_is_not_looked_up_again() -> None:
    deals = PER_LOOKUP * 2 + 100
    with Sandbox(org(deals)) as box:
        times, _, _ = pull_all(box)
        lookups = box.salesforce.query_calls["Lead"]
    # Each deal's second change comes `deals` rows after its first, three groups later:
    # its lead is still held, so the lookups are those of the first changes alone.
    assert len(times) == 2 * deals and lookups == math.ceil(deals / PER_LOOKUP) == 3


def test_a_failed_lookup_is_retried_and_a_refused_one_names_the_error() -> None:
    with Sandbox(org(10)) as box:
        box.salesforce.faults.push(Fault(503, path_contains="/composite"))
        times, _, _ = pull_all(box)  # retried: every change still under its lead
        assert len(times) == 20
        assert box.salesforce.query_calls["Lead"] == 1  # the 503 reached no query
    with Sandbox(org(10)) as box:
        box.salesforce.set_api_usage(box.salesforce.api_limit - 1)  # the history page only
        with pytest.raises(SourceError, match="REQUEST_LIMIT_EXCEEDED"):
            pull_all(box)


def test_a_few_deals_with_long_histories_come_in_groups_of_bounded_size() -> None:
    from connector.source.salesforce import GROUP_ROWS, _by_opportunities

    # Three deals, 25,000 rows: one group by the lookup bound alone. The rows of one save
    # (one time) at the cut stay together.
    rows = [
        {"OpportunityId": f"006{i % 3}", "CreatedDate": f"t{(i + 1) // 2:06d}"}
        for i in range(25_000)
    ]
    groups = list(_by_opportunities(iter([rows]), known=set()))
    assert [len(g) for g in groups] == [GROUP_ROWS + 1, GROUP_ROWS, 4_999]
    assert [r for g in groups for r in g] == rows
    assert all(g[0]["CreatedDate"] != before[-1]["CreatedDate"] for before, g in pairwise(groups))
