"""The GA4 Data API emulator driven by the real BetaAnalyticsDataClient over TLS (REST)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from google.analytics.data_v1beta.types import (
    DateRange,
    Dimension,
    Filter,
    FilterExpression,
    Metric,
    OrderBy,
    Row,
    RunReportRequest,
)

from connector.analytics import GA4Data
from connector.errors import ConfigError
from connector.ledger import Ledger
from connector_sandbox.faults import Fault
from connector_sandbox.ga4 import GA4Emulator
from connector_sandbox.ga4_data import GA4DataEmulator, WebLeadHit
from tests.analytics.conftest import NOW, change, deliver, settings_for

WEEK = DateRange(start_date="7daysAgo", end_date="today")


def report(*dimensions: str, **fields: object) -> RunReportRequest:
    return RunReportRequest(
        dimensions=[Dimension(name=d) for d in dimensions],
        metrics=[Metric(name="eventCount")],
        date_ranges=fields.pop("date_ranges", [WEEK]),
        **fields,
    )


def string_filter(name: str, value: str, **kwargs: object) -> FilterExpression:
    return FilterExpression(
        filter=Filter(field_name=name, string_filter=Filter.StringFilter(value=value, **kwargs))
    )


def seed(emulator: GA4DataEmulator) -> None:
    emulator.seed_web_hits(
        [
            WebLeadHit("00QA", NOW - timedelta(days=1)),
            WebLeadHit("00QB", NOW, "Paid Search", "google", "cpc", "brand"),
            WebLeadHit("00QC", NOW, "Email", "newsletter", "email", "nov"),
            WebLeadHit("00Qc", NOW - timedelta(days=2), "Referral", "partner.example", "referral"),
            WebLeadHit("00QOLD", NOW - timedelta(days=30)),
        ]
    )


def values(rows: Sequence[Row]) -> list[list[str]]:
    return [[v.value for v in row.dimension_values] for row in rows]


def test_accepted_mp_events_are_counted_by_name_and_day_without_a_channel(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    settings = settings_for(mp, data_emulator)
    changes = [change("00Q1", "qualify_lead", 1), change("00Q2", "qualify_lead", 2)]
    deliver(ledger, settings, [*changes, change("00Q3", "working_lead", 1)])
    rows, meta = client.rows(report("eventName", "sessionDefaultChannelGroup"))
    counts = {tuple(values([r])[0]): int(r.metric_values[0].value) for r in rows}
    assert counts == {("qualify_lead", "Unassigned"): 2, ("working_lead", "Unassigned"): 1}
    assert meta.time_zone == "UTC"


def test_filters_ignore_case_unless_asked_and_regexps_work(
    data_emulator: GA4DataEmulator, client: GA4Data
) -> None:
    seed(data_emulator)
    lead = "customEvent:lead_id"
    loose, _ = client.rows(report(lead, dimension_filter=string_filter(lead, "00qc")))
    strict, _ = client.rows(
        report(lead, dimension_filter=string_filter(lead, "00Qc", case_sensitive=True))
    )
    regexp = string_filter(lead, "00Q[AB]", match_type=Filter.StringFilter.MatchType.FULL_REGEXP)
    matched, _ = client.rows(report(lead, order_bys=_by(lead), dimension_filter=regexp))
    assert sorted(values(loose)) == [["00QC"], ["00Qc"]]
    assert values(strict) == [["00Qc"]]
    assert values(matched) == [["00QA"], ["00QB"]]


def test_in_list_filter_date_ranges_and_channel_dimensions(
    data_emulator: GA4DataEmulator, client: GA4Data
) -> None:
    seed(data_emulator)
    in_list = FilterExpression(
        filter=Filter(
            field_name="customEvent:lead_id",
            in_list_filter=Filter.InListFilter(values=["00QB", "00QOLD"], case_sensitive=True),
        )
    )
    dims = ("customEvent:lead_id", "sessionSource", "sessionMedium", "sessionCampaignName")
    recent, _ = client.rows(report(*dims, dimension_filter=in_list))
    assert values(recent) == [["00QB", "google", "cpc", "brand"]]  # 00QOLD is outside the week
    both = [WEEK, DateRange(start_date="60daysAgo", end_date="yesterday", name="earlier")]
    response = client.run_report(
        report("customEvent:lead_id", date_ranges=both, dimension_filter=in_list)
    )
    assert [h.name for h in response.dimension_headers][-1] == "dateRange"
    assert sorted(values(response.rows)) == [["00QB", "date_range_0"], ["00QOLD", "earlier"]]


def test_limit_offset_row_count_and_property_quota(
    data_emulator: GA4DataEmulator, client: GA4Data
) -> None:
    seed(data_emulator)
    lead = "customEvent:lead_id"
    page = client.run_report(
        report(lead, limit=2, offset=1, order_bys=_by(lead), return_property_quota=True)
    )
    assert values(page.rows) == [["00QB"], ["00QC"]]
    assert page.row_count == 4  # 00QOLD is outside the week
    assert page.property_quota.tokens_per_day.consumed >= 1
    assert page.property_quota.tokens_per_hour.remaining > 0
    rows, _ = client.rows(report(lead))  # pages until rowCount
    assert len(rows) == 4 and data_emulator.requests == 2


def test_unknown_fields_wrong_property_and_faults_fail_like_google(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, client: GA4Data
) -> None:
    with pytest.raises(ConfigError, match="customEvent:email is not a valid dimension"):
        client.run_report(report("customEvent:email"))
    with pytest.raises(ConfigError, match="sessions is not a valid metric"):
        client.run_report(RunReportRequest(metrics=[Metric(name="sessions")], date_ranges=[WEEK]))
    with pytest.raises(ConfigError, match="date range"):
        client.run_report(report("eventName", date_ranges=[]))
    other = GA4Data(settings_for(mp, data_emulator, property_id="1"))
    with other, pytest.raises(ConfigError, match=r"403.*sufficient permissions"):
        other.run_report(report("eventName"))


def test_a_transient_failure_is_retried(data_emulator: GA4DataEmulator, client: GA4Data) -> None:
    data_emulator.faults.push(Fault(status=503, path_contains=":runReport"))
    assert client.run_report(report("eventName")).row_count == 0
    assert data_emulator.requests == 2


def _by(dimension: str) -> list[OrderBy]:
    return [OrderBy(dimension=OrderBy.DimensionOrderBy(dimension_name=dimension))]
