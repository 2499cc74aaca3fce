"""`print_reconciliation`: the summary line, then a table only when something differs."""

from __future__ import annotations

from datetime import date

from rich.console import Console

from connector.analytics import Reconciliation, print_reconciliation

DAY = date(2026, 11, 20)


def printed(result: Reconciliation) -> str:
    console = Console(record=True, width=120)
    print_reconciliation(result, console)
    return console.export_text()


def test_no_differences_is_one_line_and_says_so() -> None:
    counts = {("qualify_lead", DAY): 2}
    text = printed(Reconciliation(DAY, DAY, "Europe/Berlin", counts, counts))
    assert text.splitlines() == [
        "GA4 events 2026-11-20 to 2026-11-20 (Europe/Berlin): 2 delivered, 2 in GA4",
        "no differences",
    ]
    assert "no events" in printed(Reconciliation(DAY, DAY, time_zone=""))


def test_each_difference_is_a_row_with_its_signed_gap_and_kind() -> None:
    delivered = {("working_lead", DAY): 3}
    reported = {("working_lead", DAY): 1, ("generate_lead", DAY): 4}
    text = printed(Reconciliation(DAY, DAY, "UTC", delivered, reported))
    cells = [line.replace("│", " ").split() for line in text.splitlines() if "_lead" in line]
    rows = {row[1]: row for row in cells}
    assert rows["working_lead"] == [
        "2026-11-20",
        "working_lead",
        "3",
        "1",
        "+2",
        "missing",
        "in",
        "GA4",
    ]
    assert rows["generate_lead"] == [
        "2026-11-20",
        "generate_lead",
        "0",
        "4",
        "-4",
        "extra",
        "in",
        "GA4",
    ]
