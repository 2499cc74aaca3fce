"""The report's headline figure for a run summary: how many recent leads a channel can claim.

It is worked out lead by lead from a stream of the period's changes (memory stays flat
whatever the ledger's size), and a run that recorded nothing since the last one, on the
same day, takes the last run's figure instead of reading the period again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby
from typing import Any

from connector.ledger import Ledger
from connector.report.attribution import attribute, check_precedence
from connector.report.load import Lead, Period, group_leads
from connector.report.metrics import reached


def summary_measurability(ledger: Ledger, *, precedence: Sequence[str]) -> dict[str, Any]:
    """The share of the last 90 days' leads that can be attributed to a channel."""
    period = Period.parse(None, None)
    order = check_precedence(precedence)
    # What the figure depends on: the period, the precedence, and the changes recorded.
    basis = f"{period.since}..{period.until}|{','.join(order)}|{ledger.reporting.last_change()}"
    if (last := _last_figure(ledger)) is not None and last.get("basis") == basis:
        return last
    leads = attributable = 0
    for lead in _leads(ledger.reporting.stream_changes(period.start, period.end)):
        if reached(lead, "lead"):
            leads += 1
            attributable += attribute(
                lead.lead_id, lead.attributes, problems=lead.problems, precedence=order
            ).attributed
    return {
        "period": f"{period.since}..{period.until}",
        "leads": leads,
        "attributable": attributable,
        "rate": round(attributable / leads, 4) if leads else None,
        "basis": basis,
    }


def _leads(rows: Iterable[Any]) -> Iterator[Lead]:
    """Leads from change rows ordered by lead id, one lead's rows in memory at a time."""
    for _, one_lead in groupby(rows, key=lambda row: row["lead_id"]):
        yield from group_leads(one_lead)


def _last_figure(ledger: Ledger) -> dict[str, Any] | None:
    for run in ledger.runs.recent(3):  # the newest finished run's, if it has one
        if run.finished_at is not None:
            figure = (run.summary or {}).get("measurability")
            return figure if isinstance(figure, dict) else None
    return None
