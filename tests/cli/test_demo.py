"""`connector demo` leads somewhere: the commands it prints work on its state."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from connector.demo import new_state_dir
from tests.cli.conftest import invoke


def test_the_printed_report_command_reads_the_demo_state(tmp_path: Path) -> None:
    result = invoke("demo", "--leads", "80", "--state-dir", str(tmp_path / "d"), "--json")
    assert result.exit_code == 0, result.stderr
    commands = json.loads(result.stdout)["commands"]
    assert commands["open_report"].endswith(str(tmp_path / "d" / "report.html"))
    words = shlex.split(commands["report"])
    env = dict(w.split("=", 1) for w in words if "=" in w)
    assert words[-2:] == ["connector", "report"]
    assert env["CONNECTOR_STATE_URL"].endswith("/d/connector.db")
    report = invoke("report", "--json", env={**env, "CONNECTOR_LOG_FORMAT": "json"})
    assert report.exit_code == 0, report.stderr
    assert json.loads(report.stdout)
    table = invoke("demo", "--leads", "40", "--state-dir", str(tmp_path / "e"))
    assert "report on this state:" in table.stdout and commands["sandbox"] in table.stdout


def test_the_demo_reads_google_ads_cost_so_the_report_shows_cost_and_roas(
    tmp_path: Path,
) -> None:
    result = invoke("demo", "--leads", "120", "--state-dir", str(tmp_path / "d"), "--json")
    assert result.exit_code == 0, result.stderr
    demo = json.loads(result.stdout)
    costs = demo["google_ads_costs"]
    # Five campaigns, each spending on every day a lead came in, 90 days back at most.
    assert costs["cost"] > 0 and costs["campaign_days"] >= 5
    assert 0 < costs["clicks_found"] <= costs["clicks_looked_up"]
    assert costs["paid_search_roas"] is not None
    words = shlex.split(demo["commands"]["report"])
    env = dict(w.split("=", 1) for w in words if "=" in w)
    report = json.loads(invoke("report", "--json", env=env).stdout)
    campaigns = report["google_ads_costs"]["campaigns"]
    assert sum(1 for c in campaigns if c["cost"] and c["leads"]) >= 2  # clicks joined to leads
    (paid,) = report["google_ads_costs"]["channels"]
    assert paid["cost"] == pytest.approx(costs["cost"], abs=0.01) and paid["roas"] is not None
    page = (tmp_path / "d" / "report.html").read_text()
    assert "Google Ads cost and return" in page and "ROAS" in page
    table = invoke("demo", "--leads", "40", "--state-dir", str(tmp_path / "e"))
    assert "Google Ads cost" in table.stdout and "return on ad spend" in table.stdout


def test_demo_state_lives_under_one_parent_and_old_ones_go(tmp_path: Path) -> None:
    made = [new_state_dir("demo", root=tmp_path) for _ in range(5)]
    new_state_dir("sandbox", root=tmp_path)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert len([k for k in kept if k.startswith("demo-")]) == 3
    assert made[-1].name in kept and len([k for k in kept if k.startswith("sandbox-")]) == 1
