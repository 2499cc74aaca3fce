"""The report's headline figure for a run summary: how many recent leads a channel can claim."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connector.ledger import Ledger
from connector.report.load import Period, load
from connector.report.metrics import build_report


def summary_measurability(
    ledger: Ledger, *, currency: str, precedence: Sequence[str]
) -> dict[str, Any]:
    """The share of the last 90 days' leads that can be attributed to a channel."""
    report = build_report(
        load(ledger, Period.parse(None, None)), currency=currency, precedence=precedence
    )
    share = report.measurability.leads
    return {
        "period": f"{report.period.since}..{report.period.until}",
        "leads": int(share.whole),
        "attributable": int(share.part),
        "rate": round(share.part / share.whole, 4) if share.whole else None,
    }
