"""`connector report`: how much of the funnel can be credited to a channel, and what it earns.

    load.load(ledger, period)        the ledger's leads, deliveries and runs for a period
    metrics.build_report(data, ...)  every figure, as pure functions of that data
    render.*                         terminal table, JSON, CSV, self-contained HTML

Attribution precedence and channel rules are documented in `attribution`.
"""

from __future__ import annotations

from connector.report.attribution import (
    DEFAULT_PRECEDENCE,
    SIGNALS,
    UNATTRIBUTED,
    Attribution,
    attribute,
    utm_channel,
)
from connector.report.load import LedgerData, Period, load
from connector.report.metrics import Report, build_report, pipeline_velocity
from connector.report.render import print_table, to_csv, to_html, to_json

__all__ = [
    "DEFAULT_PRECEDENCE",
    "SIGNALS",
    "UNATTRIBUTED",
    "Attribution",
    "LedgerData",
    "Period",
    "Report",
    "attribute",
    "build_report",
    "load",
    "pipeline_velocity",
    "print_table",
    "to_csv",
    "to_html",
    "to_json",
    "utm_channel",
]
