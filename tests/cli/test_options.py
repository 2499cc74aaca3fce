"""Options a command must refuse or honour instead of passing over in silence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import invoke


@pytest.mark.parametrize("command", [["failures"], ["retry", "1"]], ids=" ".join)
def test_an_unknown_destination_is_refused(command: list[str], tmp_path: Path) -> None:
    env = {"CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'connector.db'}"}
    result = invoke(*command, "--destination", "google-ads", env=env)
    assert result.exit_code == 2
    assert "google_ads" in result.stderr  # the choices are named


def test_the_report_table_goes_to_the_output_file_when_one_is_named(tmp_path: Path) -> None:
    env = {"CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'connector.db'}"}
    out = tmp_path / "report.txt"
    result = invoke("report", "--output", str(out), env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert out.read_text(encoding="utf-8").strip()
    assert f"report written to {out}" in result.stdout
