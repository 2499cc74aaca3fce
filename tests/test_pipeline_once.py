"""Each outcome counts once (issue 11): the real clients against the emulators, on both
Google Ads upload paths, asserting on what the emulators received and on the ledger.

- a stage reached again is recorded as `stage_already_reached` and sent nowhere;
- GA4 gets one event per stage reached, never a restatement;
- an Amount edited while the deal was open is the value its win carries;
- a restatement of the value the won conversion carries is skipped `value_unchanged`;
- legacy adjustments carry the CRM change time, in the account's zone;
- GA client ids go in the recommended form; one that is none is never sent or stored;
- a Bulk backfill's rows, which come in no order, are decided in time order all the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from connector.destinations.google_ads.legacy import conversion_date_time
from connector.ledger import Ledger
from connector.ledger.schema import deliveries, stage_changes
from connector.mapping.rules import load_mapping
from connector.pipeline import SyncOptions, sync
from connector.summary import RunSummary
from connector_sandbox.dataset import sf_datetime
from connector_sandbox.stack import ACCOUNT_TIME_ZONE, Sandbox
from tests.conftest import MAPPING

NOW = datetime.now(UTC).replace(microsecond=0)
LEAD, OPP = "00Q000000000011AAA", "006000000000011AAA"
MQL_ACTION, WON_ACTION = "700000001", "700000004"
WON_ORDER = f"{LEAD}:won:{OPP}"
CLIENT = "123456789.1700000000"


def lead(**fields: Any) -> dict[str, Any]:
    return {
        "Id": LEAD,
        "CreatedDate": sf_datetime(NOW - timedelta(days=5)),
        "Status": "Closed - Converted",
        "IsConverted": True,
        "ConvertedOpportunityId": OPP,
        "GCLID__c": "Cj0KCQiA-countedOnce_1234567890",
        "GA_Client_ID__c": CLIENT,
        "Consent_Ad_User_Data__c": "Granted",
        "CurrencyIsoCode": "EUR",
        **fields,
    }


class Crm:
    """A sandbox with one lead and its deal, and a clock of CRM change times."""

    def __init__(self, box: Sandbox, state_url: str, upload_api: str) -> None:
        self.box = box
        self.state_url = state_url
        self.settings = box.settings(state_url, MAPPING, upload_api=upload_api)
        self._clock = iter(NOW - timedelta(hours=5) + timedelta(minutes=m) for m in range(200))

    def tick(self) -> datetime:
        return next(self._clock)

    def status(self, old: str, new: str) -> datetime:
        at = self.tick()
        row = {"LeadId": LEAD, "Field": "Status", "OldValue": old, "NewValue": new}
        self.box.salesforce.insert("LeadHistory", row | {"CreatedDate": sf_datetime(at)})
        return at

    def opportunity(self, field: str, old: Any, new: Any, **now: Any) -> datetime:
        at = self.tick()
        row = {"OpportunityId": OPP, "Field": field, "OldValue": old, "NewValue": new}
        self.box.salesforce.insert(
            "OpportunityFieldHistory", row | {"CreatedDate": sf_datetime(at)}
        )
        if now:
            self.box.salesforce.update("Opportunity", OPP, now)
        return at

    def sync(self, **options: Any) -> RunSummary:
        return sync(self.settings, load_mapping(MAPPING), SyncOptions(**options))

    def rows(self) -> list[tuple[str, str, str, str | None]]:
        return delivery_rows(self.state_url)

    def ga4_events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.box.ga4.accepted if e["name"] == name]

    def orders(self) -> list[str]:
        """Order ids of every click conversion the legacy emulator was sent, in order."""
        requests = self.box.google_ads_api.upload_requests
        return [c.order_id for request in requests for c in request.conversions]

    def adjustments(self) -> list[Any]:
        requests = self.box.google_ads_api.adjustment_requests
        return [a for request in requests for a in request.conversion_adjustments]


def delivery_rows(state_url: str) -> list[tuple[str, str, str, str | None]]:
    """(stage, destination, status, reason) of the lead's deliveries, in time order."""
    d, sc = deliveries.c, stage_changes.c
    query = (
        select(sc.stage, d.destination, d.status, d.reason)
        .join_from(deliveries, stage_changes, d.change_id == sc.id)
        .where(sc.lead_id == LEAD)
        .order_by(sc.changed_at, d.destination)
    )
    with Ledger.open(state_url).db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


@pytest.fixture(params=["datamanager", "ads_api"])
def crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Crm]:
    opp = {"Id": OPP, "StageName": "Negotiation", "Amount": 1000.0, "CurrencyIsoCode": "EUR"}
    with Sandbox({"Lead": [lead(Status="Open")], "Opportunity": [opp]}) as box:
        yield Crm(box, f"sqlite:///{tmp_path / 'state.db'}", request.param)


# A lead's first MQL and SQL, each delivered to both destinations.
MQL_AND_SQL_SENT = [
    ("mql", "ga4", "delivered", None),
    ("mql", "google_ads", "delivered", None),
    ("sql", "ga4", "delivered", None),
    ("sql", "google_ads", "delivered", None),
]


def test_a_stage_reached_again_is_recorded_and_sent_nowhere(crm: Crm) -> None:
    crm.status("Open", "MQL")
    crm.status("MQL", "SQL")
    crm.status("SQL", "MQL")  # back in one pull: decided within the batch
    first = crm.sync()
    crm.status("MQL", "SQL")  # and again in the next run: decided from the ledger
    crm.sync()

    assert crm.rows() == [
        *MQL_AND_SQL_SENT,
        ("mql", "ga4", "skipped", "stage_already_reached"),
        ("mql", "google_ads", "skipped", "stage_already_reached"),
        ("sql", "ga4", "skipped", "stage_already_reached"),
        ("sql", "google_ads", "skipped", "stage_already_reached"),
    ]
    assert first.destinations["ga4"].skipped["stage_already_reached"] == 1
    assert len(crm.ga4_events("qualify_lead")) == len(crm.ga4_events("working_lead")) == 1
    if crm.settings.google_ads.upload_api == "ads_api":
        assert crm.orders() == [f"{LEAD}:mql", f"{LEAD}:sql"]  # no ORDER_ID_ALREADY_IN_USE
    else:
        sent = [e["transaction_id"] for e in crm.box.datamanager.accepted]
        assert sent == [f"{LEAD}:mql", f"{LEAD}:sql"]


def test_an_amount_edited_while_open_is_the_wins_value_and_ga4_counts_the_win_once(
    crm: Crm,
) -> None:
    # Edited while the deal was open, then won: one won conversion worth the new amount.
    crm.opportunity("Amount", 1000.0, 2000.0, Amount=2000.0)
    crm.opportunity("StageName", "Negotiation", "Closed Won", StageName="Closed Won", IsWon=True)
    crm.sync()
    # Restated after the win, in the next run: an adjustment in Google Ads only.
    restated_at = crm.opportunity("Amount", 2000.0, 3000.0, Amount=3000.0)
    crm.sync()

    assert [r for r in crm.rows() if r[0] == "won"] == [
        ("won", "ga4", "delivered", None),
        ("won", "google_ads", "delivered", None),
        ("won", "google_ads", "delivered", None),  # the restatement: no GA4 row at all
    ]
    (won,) = crm.ga4_events("close_convert_lead")
    assert won["params"]["value"] == 2000.0
    if crm.settings.google_ads.upload_api == "datamanager":
        conversion = crm.box.datamanager.conversions[(WON_ACTION, WON_ORDER)]
        assert (conversion["original_value"], conversion["conversion_value"]) == (2000.0, 3000.0)
        return
    stored = crm.box.google_ads_api.conversion(WON_ORDER)
    assert stored is not None and stored.adjustments == ["RESTATEMENT"] and stored.value == 3000.0
    (adjustment,) = crm.adjustments()
    zone = ZoneInfo(ACCOUNT_TIME_ZONE)
    # The CRM change time in the account's zone, not the time of the run.
    assert adjustment.adjustment_date_time == conversion_date_time(restated_at, zone)
    assert adjustment.adjustment_date_time > stored.conversion_date_time


def test_a_restatement_of_the_value_the_win_carries_is_not_sent(crm: Crm) -> None:
    # Won, then the amount changed before the run read the deal: the win carries it already.
    crm.opportunity("StageName", "Negotiation", "Closed Won", StageName="Closed Won", IsWon=True)
    crm.opportunity("Amount", 1000.0, 2500.0, Amount=2500.0)
    summary = crm.sync()

    assert [r for r in crm.rows() if r[0] == "won"] == [
        ("won", "ga4", "delivered", None),
        ("won", "google_ads", "delivered", None),
        ("won", "google_ads", "skipped", "value_unchanged"),
    ]
    assert summary.destinations["google_ads"].skipped["value_unchanged"] == 1
    assert len(crm.ga4_events("close_convert_lead")) == 1
    if crm.settings.google_ads.upload_api == "datamanager":
        assert crm.box.datamanager.adjustments == 0
        conversion = crm.box.datamanager.conversions[(WON_ACTION, WON_ORDER)]
        assert conversion["conversion_value"] == 2500.0
    else:
        assert crm.adjustments() == []
        stored = crm.box.google_ads_api.conversion(WON_ORDER)
        assert stored is not None and stored.value == 2500.0


def test_an_amount_edited_while_won_restates_even_if_the_deal_was_reopened_since(
    crm: Crm,
) -> None:
    """The stage at the time of the edit decides, not the stage now."""
    crm.opportunity("StageName", "Negotiation", "Closed Won", StageName="Closed Won", IsWon=True)
    crm.sync()
    crm.opportunity("Amount", 1000.0, 1800.0, Amount=1800.0)
    reopen = {"StageName": "Negotiation", "IsWon": False}
    crm.opportunity("StageName", "Closed Won", "Negotiation", **reopen)
    crm.sync()

    google = [r[2:] for r in crm.rows() if r[1] == "google_ads"]
    assert google == [("delivered", None)] * 3  # won, restated, retracted
    if crm.settings.google_ads.upload_api == "ads_api":
        assert [a.adjustment_type.name for a in crm.adjustments()] == ["RESTATEMENT", "RETRACTION"]
    else:
        adjusted = crm.box.datamanager.conversions[(WON_ACTION, WON_ORDER)]["adjustments"]
        assert [a["conversion_value"] for a in adjusted] == [1800.0, 0.0]


def test_ga_client_ids_go_in_the_recommended_form_and_a_bad_one_never_leaves(
    tmp_path: Path,
) -> None:
    cookie = lead(Id="00Q000000000021AAA", GA_Client_ID__c=f"GA1.1.{CLIENT}", Status="Open")
    email = lead(Id="00Q000000000022AAA", GA_Client_ID__c="jane.roe@example.com", Status="Open")
    with Sandbox({"Lead": [cookie, email]}) as box:
        state_url = f"sqlite:///{tmp_path / 'state.db'}"
        for n, row in enumerate((cookie, email)):
            at = sf_datetime(NOW - timedelta(hours=2, minutes=n))
            history = {"LeadId": row["Id"], "Field": "Status", "OldValue": "Open"}
            box.salesforce.insert("LeadHistory", history | {"NewValue": "MQL", "CreatedDate": at})
        summary = sync(box.settings(state_url, MAPPING), load_mapping(MAPPING), SyncOptions())
        accepted = box.ga4.accepted
        bodies = "\n".join(box.ga4.received_bodies)

    assert [(e["client_id"], e.get("warnings")) for e in accepted] == [(CLIENT, None)]
    assert "jane.roe" not in bodies and "GA1.1." not in bodies
    assert "jane.roe" not in (tmp_path / "state.db").read_bytes().decode("latin-1")
    d, sc = deliveries.c, stage_changes.c
    query = select(sc.lead_id, d.status, d.reason).join_from(
        deliveries, stage_changes, d.change_id == sc.id
    )
    with Ledger.open(state_url).db.engine.connect() as conn:
        ga4 = {
            r.lead_id: (r.status, r.reason)
            for r in conn.execute(query.where(d.destination == "ga4"))
        }
    # An email where the client id belongs is personal data first: redacted (issue 17).
    assert ga4 == {
        cookie["Id"]: ("delivered", None),
        email["Id"]: ("skipped", "pii_redacted"),
    }
    assert summary.row_problems["pii_redacted"] == 1


def test_a_bulk_backfill_whose_rows_come_out_of_time_order_counts_a_stage_once(
    tmp_path: Path,
) -> None:
    # Bulk API 2.0 promises no order: here the lead's second MQL comes first and its first
    # MQL last, more than a record chunk (1,000 rows) of other leads' changes apart.
    others = [
        lead(Id=f"00Q1{i:011d}AAA", GA_Client_ID__c=f"{i + 1}.1700000000", Status="MQL")
        for i in range(1100)
    ]
    at = NOW - timedelta(hours=5)
    history = [
        (LEAD, "SQL", "MQL", at + timedelta(minutes=30)),
        *[(other["Id"], "Open", "MQL", at + timedelta(minutes=10)) for other in others],
        (LEAD, "MQL", "SQL", at + timedelta(minutes=20)),
        (LEAD, "Open", "MQL", at),
    ]
    rows = [
        {
            "LeadId": i,
            "Field": "Status",
            "OldValue": o,
            "NewValue": n,
            "CreatedDate": sf_datetime(t),
        }
        for i, o, n, t in history
    ]
    with Sandbox({"Lead": [lead(Status="MQL"), *others], "LeadHistory": rows}) as box:
        state_url = f"sqlite:///{tmp_path / 'state.db'}"
        settings = box.settings(state_url, MAPPING, salesforce={"bulk_threshold": 2})
        sync(settings, load_mapping(MAPPING), SyncOptions())
        assert box.salesforce.bulk_calls["LeadHistory"] >= 3  # create, poll, results
        sent = [e["transaction_id"] for e in box.datamanager.accepted]
        ga4 = [e["name"] for e in box.ga4.accepted if e["client_id"] == CLIENT]
    assert [t for t in sent if t.startswith(LEAD)] == [f"{LEAD}:mql", f"{LEAD}:sql"]
    assert ga4 == ["qualify_lead", "working_lead"]
    assert delivery_rows(state_url) == [
        *MQL_AND_SQL_SENT,
        ("mql", "ga4", "skipped", "stage_already_reached"),
        ("mql", "google_ads", "skipped", "stage_already_reached"),
    ]
