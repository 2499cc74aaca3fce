"""`connector report`: how much of the funnel can be credited to a channel, and what it earns.

    load.load(ledger, period)        the ledger's leads, deliveries and runs for a period
    metrics.build_report(data, ...)  every figure, as pure functions of that data
    terminal.print_table             rich tables
    tabular.*                        report_dict, JSON, CSV
    html.to_html                     one self-contained page (charts in html_charts)
    measurability                    the run summary's share of attributable leads

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
from connector.report.html import to_html
from connector.report.load import LedgerData, Period, load
from connector.report.measurability import summary_measurability
from connector.report.metrics import Report, build_report, pipeline_velocity
from connector.report.tabular import report_dict, to_csv, to_json
from connector.report.terminal import print_table

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
    "report_dict",
    "summary_measurability",
    "to_csv",
    "to_html",
    "to_json",
    "utm_channel",
]
