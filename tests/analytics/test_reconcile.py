"""`reconcile`: the ledger's delivered GA4 events against GA4's counts per name and day."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from connector.analytics import Difference, GA4Data, reconcile, window
from connector.ledger import Ledger
from connector_sandbox.ga4 import GA4Emulator
from connector_sandbox.ga4_data import GA4DataEmulator, WebLeadHit
from tests.analytics.conftest import NOW, SINCE, UNTIL, change, deliver, settings_for


def day(hours_ago: float) -> date:
    return (NOW - timedelta(hours=hours_ago)).date()


def test_everything_delivered_is_counted_so_there_is_no_difference(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    changes = [change(f"00Q{i}", "qualify_lead", 1 + i, client_id=f"{i}.1") for i in range(5)]
    deliver(ledger, settings_for(mp, data_emulator), changes)
    result = reconcile(ledger, client, SINCE, UNTIL)
    assert result.differences == []
    assert sum(result.delivered.values()) == sum(result.reported.values()) == 5


def test_a_planted_gap_is_found(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    deliver(ledger, settings_for(mp, data_emulator), [change("00QA", "working_lead", 5)])
    # A wrong api_secret: /mp/collect still answers 2xx, so the ledger says delivered,
    # but GA4 drops both events. Only reconciliation can notice.
    lost = [change("00QB", "working_lead", 30), change("00QC", "close_convert_lead", 30)]
    deliver(ledger, settings_for(mp, data_emulator, api_secret="stale-secret"), lost)
    assert mp.wrong_secret == 1 and ledger.queue.counts()["ga4"] == {"delivered": 3}
    result = reconcile(ledger, client, SINCE, UNTIL)
    assert result.differences == [
        Difference("close_convert_lead", day(30), delivered=1, reported=0),
        Difference("working_lead", day(30), delivered=1, reported=0),
    ]
    assert {d.kind for d in result.differences} == {"missing_in_ga4"}
    assert result.as_dict()["status"] == "differences"


def test_a_change_too_old_to_backdate_is_reconciled_on_the_day_it_was_sent(
    mp: GA4Emulator, data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    old = change("00QOLD", "qualify_lead", 80)  # beyond the 72 h window: sent "now"
    deliver(ledger, settings_for(mp, data_emulator), [old], too_old="send_now")
    assert "timestamp_micros" not in mp.received_bodies[0]
    result = reconcile(ledger, client, day(80), UNTIL)
    assert result.differences == []
    assert result.reported == {("qualify_lead", NOW.date()): 1}


def test_events_sent_by_others_show_as_extra(
    data_emulator: GA4DataEmulator, client: GA4Data, ledger: Ledger
) -> None:
    data_emulator.seed_web_hits([WebLeadHit("00QW", NOW - timedelta(hours=2))])
    result = reconcile(ledger, client, SINCE, UNTIL, events=["generate_lead", "qualify_lead"])
    (extra,) = result.differences
    assert (extra.event_name, extra.delivered, extra.reported) == ("generate_lead", 0, 1)
    assert extra.kind == "extra_in_ga4"


def test_window_defaults_to_the_seven_days_before_today() -> None:
    first, last = window(None, None)
    assert (last - first).days == 6 and last < date.today() + timedelta(days=1)
    assert window("2026-11-01", "2026-11-03") == (date(2026, 11, 1), date(2026, 11, 3))
    with pytest.raises(ValueError, match="--since"):
        window("2026-11-04", "2026-11-03")
    with pytest.raises(ValueError, match="--until must be a date"):
        window(None, "yesterday")
