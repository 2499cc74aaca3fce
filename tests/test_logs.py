"""Log lines: the run id on each, structured fields in text too, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from rich.console import Console

from connector import logs

log = logging.getLogger("connector.test")


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    yield capsys
    logging.getLogger().handlers.clear()


def test_text_lines_show_the_fields_and_the_run_id(stderr: pytest.CaptureFixture[str]) -> None:
    logs.setup("text", "INFO", ["s3cr3t-value"])
    token = logs.bind_run(42)
    log.warning(
        "transient failure, retrying",
        extra={"destination": "ga4", "error": "503 from s3cr3t-value", "attempt": 2},
    )
    logs.unbind(token)
    log.info("after the run")
    first, second = stderr.readouterr().err.splitlines()
    assert first.startswith("WARNING connector.test: transient failure, retrying  ")
    assert 'destination=ga4 error="503 from [redacted]" attempt=2 run_id=42' in first
    assert second == "INFO connector.test: after the run"


def test_json_lines_carry_nested_fields(stderr: pytest.CaptureFixture[str]) -> None:
    logs.setup("json", "INFO", [])
    token = logs.bind_run(7)
    log.info("run finished", extra={"delivered": {"ga4": 3}, "duration_s": 1.5})
    logs.unbind(token)
    entry = json.loads(stderr.readouterr().err)
    assert entry["run_id"] == 7 and entry["delivered"] == {"ga4": 3}
    assert entry["level"] == "info" and entry["message"] == "run finished"


def test_lines_go_through_the_progress_console_while_it_is_shown(
    stderr: pytest.CaptureFixture[str],
) -> None:
    logs.setup("text", "INFO", [])
    screen = io.StringIO()
    with logs.route_to(Console(file=screen, width=40)):
        log.warning("a warning longer than the forty columns of this console", extra={"n": 1})
    log.warning("back on stderr")
    # One line, not wrapped: rich keeps it above the progress display.
    assert screen.getvalue() == (
        "WARNING connector.test: a warning longer than the forty columns of this console  n=1\n"
    )
    assert stderr.readouterr().err == "WARNING connector.test: back on stderr\n"
