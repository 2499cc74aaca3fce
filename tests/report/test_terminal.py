"""The terminal tables name every section and format money."""

from __future__ import annotations

from rich.console import Console

from connector.report.metrics import Report, build_report
from connector.report.terminal import print_table
from tests.report.cases import sample_data, worked_report


def test_terminal_table_names_the_sections() -> None:
    console = Console(record=True, width=100)
    print_table(build_report(sample_data(), currency="EUR"), console)
    text = console.export_text()
    for heading in ("Measurability", "Funnel by channel", "Revenue by channel", "Delivery health"):
        assert heading in text
    assert "€8,333" in _table_text(worked_report())


def _table_text(report: Report) -> str:
    console = Console(record=True, width=120)
    print_table(report, console)
    return console.export_text()
