"""The HTML report in headless Chromium: it renders, screenshots, and logs no console error.

Needs Debian's chromium (`apt-get install chromium`); skipped where it is absent.
"""

from __future__ import annotations

import json
import struct
import subprocess
from html import escape, unescape
from pathlib import Path
from typing import Any

import pytest

from connector.report.html import to_html
from connector.report.metrics import build_report
from tests.report.cases import sample_data

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 2000
# Quiet, offline, throwaway: no first-run UI, no background fetches, no sandbox in containers.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def console_problems(stderr: str) -> list[str]:
    # The page has no script: any console message at all (a failed load, a CSP
    # complaint, an exception) means something is wrong.
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(to_html(build_report(sample_data(), currency="EUR")), encoding="utf-8")
    shot = tmp_path / "report.png"

    taken = chromium(
        tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", page.as_uri()
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert console_problems(taken.stderr) == []
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (WIDTH, HEIGHT)
    assert len(png) > 50_000  # charts and text, not a blank page

    dumped = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert console_problems(dumped.stderr) == []
    assert "Funnel by channel" in dumped.stdout and dumped.stdout.count("<svg") >= 5
    # The cost section, its chart and its pipeline column render too.
    assert "Google Ads cost and return" in dumped.stdout
    assert 'aria-label="Google Ads cost, won revenue and pipeline"' in dumped.stdout


# The widths marketers read it at: a phone, and a wide desktop.
@pytest.mark.parametrize("width", [360, 1400])
def test_the_page_never_scrolls_sideways(tmp_path: Path, width: int) -> None:
    report = to_html(build_report(sample_data(), currency="EUR"))
    # Headless windows are at least 500 px wide: the page goes in a frame of `width`; a
    # srcdoc frame is same-origin, so the host's probe can measure it (the report has
    # no script of its own).
    host = (
        f'<!doctype html><body style="margin:0"><iframe id="f" style="width:{width}px;'
        f'height:900px;border:0" srcdoc="{escape(report, quote=True)}"></iframe><script>'
        "f.onload = () => { const d = f.contentDocument.documentElement;"
        " document.title = 'W' + d.scrollWidth + 'x' + d.clientWidth + 'W'; };"
        "</script></body>"
    )
    page = tmp_path / "host.html"
    page.write_text(host, encoding="utf-8")
    dumped = chromium(tmp_path, "--window-size=1600,1000", "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    scroll, client = dumped.stdout.split("<title>W", 1)[1].split("W</title>", 1)[0].split("x")
    assert width - 20 <= int(client) <= width  # less a vertical scrollbar
    assert int(scroll) <= int(client), f"{scroll} px of content in a {client} px wide page"


# Each chart shown (display not none), as drawn: its width in px, its viewBox's width, and
# its smallest text's font size in viewBox units (SVG text is sized before the viewBox
# scales it). Sparklines without text (the delivery bars in their table) are left out.
_MEASURE_CHARTS = """
const d = f.contentDocument;
const charts = [...d.querySelectorAll('svg')].filter(s => s.getClientRects().length)
  .filter(s => s.querySelector('text')).map(s => ({
    label: s.getAttribute('aria-label'),
    width: s.getBoundingClientRect().width,
    view: s.viewBox.baseVal.width,
    font: Math.min(...[...s.querySelectorAll('text, tspan')]
      .map(t => parseFloat(d.defaultView.getComputedStyle(t).fontSize))),
  }));
document.title = 'J' + JSON.stringify(charts) + 'J';
"""


def shown_charts(tmp_path: Path, width: int) -> list[dict[str, Any]]:
    report = to_html(build_report(sample_data(), currency="EUR"))
    host = (
        f'<!doctype html><body style="margin:0"><iframe id="f" style="width:{width}px;'
        f'height:900px;border:0" srcdoc="{escape(report, quote=True)}"></iframe><script>'
        f"f.onload = () => {{ {_MEASURE_CHARTS} }};</script></body>"
    )
    page = tmp_path / "host.html"
    page.write_text(host, encoding="utf-8")
    dumped = chromium(tmp_path, "--window-size=1600,1000", "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    found = dumped.stdout.split("<title>J", 1)[1].split("J</title>", 1)[0]
    charts: list[dict[str, Any]] = json.loads(unescape(found))
    return charts


@pytest.mark.parametrize("width", [360, 800, 1400])
def test_every_chart_is_wide_enough_and_its_text_readable(tmp_path: Path, width: int) -> None:
    charts = shown_charts(tmp_path, width)
    labels = [c["label"] for c in charts]
    # One layout of each chart is shown, wide or phone, never both.
    for wanted in ("Measurability per stage", "Measurability trend", "Leads by channel",
                   "Leads by campaign", "Funnel per channel", "Won revenue per channel",
                   "Google Ads cost, won revenue and pipeline"):  # fmt: skip
        assert labels.count(wanted) == 1, (wanted, labels)
    for chart in charts:
        scale = chart["width"] / chart["view"]
        # 300 px: nearly all of what a 360 px phone leaves a chart (314 px); wider pages
        # may draw a narrow chart at its own size, still at least 300 px.
        assert chart["width"] >= 300, chart
        assert chart["font"] * scale >= 9, f"{chart['label']}: text {chart['font'] * scale:.1f} px"
