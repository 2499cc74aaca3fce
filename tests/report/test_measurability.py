"""The run summary's measurability: the last 90 days' leads, read from a real ledger."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from connector.core import utcnow
from connector.ledger import Ledger
from connector.report.attribution import attribute
from connector.report.load import Period, group_leads
from connector.report.measurability import summary_measurability
from connector.report.metrics import reached
from tests.report.cases import PAID, change

PRECEDENCE = ("click_id", "utm", "ga4", "lead_source")


def test_share_of_recent_leads(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    now, day = utcnow(), timedelta(days=1)
    batch = [
        change("A", "mql", now - 2 * day, PAID),
        change("B", "mql", now - 3 * day, {}),
        change("C", "mql", now - 200 * day, PAID),  # first seen before the 90 days
    ]
    run = ledger.runs.start()
    ledger.changes.record(run, batch, "salesforce.LeadHistory", now)
    found = summary_measurability(ledger, precedence=PRECEDENCE)
    assert (found["leads"], found["attributable"], found["rate"]) == (2, 1, 0.5)
    since, until = found["period"].split("..")
    assert until == now.date().isoformat()
    assert since == (now.date() - timedelta(days=89)).isoformat()


def test_absent_store_has_no_rate(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'absent.db'}", readonly=True)
    found = summary_measurability(ledger, precedence=PRECEDENCE)
    assert (found["leads"], found["attributable"], found["rate"]) == (0, 0, None)


def test_a_run_with_nothing_new_takes_the_last_runs_figure(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    now, day = utcnow(), timedelta(days=1)
    run = ledger.runs.start()
    ledger.changes.record(run, [change("A", "mql", now - day, PAID)], "s", now)
    first = summary_measurability(ledger, precedence=PRECEDENCE)
    # Marked so that a reuse shows: nothing was recorded since, on the same day.
    ledger.runs.finish(run, "ok", {"measurability": first | {"leads": 99}})
    assert summary_measurability(ledger, precedence=PRECEDENCE)["leads"] == 99
    assert summary_measurability(ledger, precedence=("utm",))["leads"] == 1  # another basis
    ledger.changes.record(ledger.runs.start(), [change("B", "mql", now, {})], "s", now)
    found = summary_measurability(ledger, precedence=PRECEDENCE)
    assert (found["leads"], found["attributable"]) == (2, 1)  # a change recorded: read again


def test_the_figure_is_the_one_the_reports_leads_give(state_url: str) -> None:
    ledger = Ledger.open(state_url)
    now, day = utcnow(), timedelta(days=1)
    utm = {"utm_source": "newsletter", "utm_medium": "email"}
    batch = [
        change("A", "mql", now - 9 * day, {"gclid": None}),
        change("A", "sql", now - 8 * day, PAID),  # a click id added later counts
        change("B", "mql", now - 7 * day, PAID),
        change("B", "won", now - 6 * day, {"gclid": ""}, opportunity="006B"),  # kept
        change("C", "mql", now - 5 * day, {"gclid": None}, problems={"gclid": "malformed"}),
        change("D", "sql", now - 4 * day, utm),
        change("E", "mql", now - 3 * day, {}, created=now - 120 * day),  # older lead
        change("F", "opportunity", now - 2 * day, {}, opportunity="006F"),
    ]
    ledger.changes.record(ledger.runs.start(), batch, "s", now)
    found = summary_measurability(ledger, precedence=PRECEDENCE)
    period = Period.parse(None, None)
    leads = [
        lead
        for lead in group_leads(ledger.reporting.stream_changes(period.start, period.end))
        if reached(lead, "lead")
    ]
    expected = sum(
        attribute(
            lead.lead_id, lead.attributes, problems=lead.problems, precedence=PRECEDENCE
        ).attributed
        for lead in leads
    )
    assert (found["leads"], found["attributable"]) == (len(leads), expected)
    assert (len(leads), expected) == (5, 3)  # E is older; C and F have no channel
