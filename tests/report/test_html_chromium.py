"""The HTML report in headless Chromium: it renders, screenshots, and logs no console error.

Needs Debian's chromium (`apt-get install chromium`); skipped where it is absent.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

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
