"""The report's headline figure for a run summary: how many recent leads a channel can claim.

It is worked out lead by lead from a stream of the period's changes (memory stays flat
whatever the ledger's size), and a run that recorded nothing since the last one, on the
same day, takes the last run's figure instead of reading the period again. Every lead of
the period counts (all reached the funnel's first stage) and only its attributes and
problems decide: a lead is folded no further than that (`load.identity`), not into the
report's `Lead` with its deals (a first sync reads every change it recorded here).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

from connector.ledger import Ledger
from connector.report.attribution import attribute, check_precedence
from connector.report.load import Period, identity


def summary_measurability(ledger: Ledger, *, precedence: Sequence[str]) -> dict[str, Any]:
    """The share of the last 90 days' leads that can be attributed to a channel."""
    period = Period.parse(None, None)
    order = check_precedence(precedence)
    # What the figure depends on: the period, the precedence, and the changes recorded.
    basis = f"{period.since}..{period.until}|{','.join(order)}|{ledger.reporting.last_change()}"
    if (last := _last_figure(ledger)) is not None and last.get("basis") == basis:
        return last
    leads = attributable = 0
    rows = ledger.reporting.stream_changes(period.start, period.end)  # by lead, then time
    for lead_id, one_lead in groupby(rows, key=itemgetter("lead_id")):
        attributes, problems = identity(one_lead)
        leads += 1
        attributable += attribute(
            lead_id, attributes, problems=problems, precedence=order
        ).attributed
    return {
        "period": f"{period.since}..{period.until}",
        "leads": leads,
        "attributable": attributable,
        "rate": round(attributable / leads, 4) if leads else None,
        "basis": basis,
    }


def _last_figure(ledger: Ledger) -> dict[str, Any] | None:
    for run in ledger.runs.recent(3):  # the newest finished run's, if it has one
        if run.finished_at is not None:
            figure = (run.summary or {}).get("measurability")
            return figure if isinstance(figure, dict) else None
    return None
