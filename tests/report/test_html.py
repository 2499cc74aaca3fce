"""The HTML page is self-contained and escapes every text from the CRM."""

from __future__ import annotations

import re

from connector.report.html import to_html
from connector.report.load import LedgerData
from connector.report.metrics import build_report
from tests.report.cases import MARCH, lead, sample_data


def test_html_is_self_contained() -> None:
    page = to_html(build_report(sample_data(), currency="EUR"))
    assert page.count("<svg") >= 5
    for needle in ("<script", "<link", "@import", "url(", 'src="', "<img"):
        assert needle not in page
    # The SVG namespace is the only URL, and it is never fetched.
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}


def test_html_escapes_crm_text() -> None:
    hostile = {"lead_source": '<img src=x onerror="alert(1)">'}
    page = to_html(build_report(LedgerData(MARCH, [lead("A", attrs=hostile)]), currency="EUR"))
    assert "<img" not in page and "&lt;img src=x" in page


def test_empty_period_renders_with_a_warning() -> None:
    page = to_html(build_report(LedgerData(MARCH, store_found=False), currency="EUR"))
    assert "state store is empty" in page
