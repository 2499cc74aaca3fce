"""CONNECTOR_METRICS_FILE: Prometheus textfile metrics after each run, through `sync`."""

from __future__ import annotations

import re
from pathlib import Path

from connector_sandbox.stack import Sandbox
from tests.cli.conftest import env_for, invoke

# The text exposition format: `name{label="value",...} number`.
SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? -?[0-9.e+]+$')


def samples(path: Path) -> dict[str, float]:
    found = {}
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        assert SAMPLE.match(line), line
        name, value = line.rsplit(" ", 1)
        found[name] = float(value)
    return found


def test_a_run_writes_the_metrics_file_atomically(sandbox: Sandbox, tmp_path: Path) -> None:
    metrics = tmp_path / "textfile" / "connector.prom"
    env = env_for(sandbox, tmp_path, CONNECTOR_METRICS_FILE=str(metrics))
    assert invoke("sync", env=env).exit_code == 0
    assert invoke("sync", env=env).exit_code == 0
    found = samples(metrics)
    assert found['connector_runs_total{status="ok"}'] == 2
    assert found['connector_deliveries{destination="google_ads",status="delivered"}'] > 0
    assert found['connector_oldest_pending_delivery_age_seconds{destination="google_ads"}'] == 0
    assert 'connector_delivery_retries_total{destination="ga4"}' in found
    assert found["connector_last_run_success"] == 1
    assert found["connector_last_run_duration_seconds"] > 0
    api = 'connector_salesforce_api_calls{{kind="{}"}}'
    assert 0 < found[api.format("used")] <= found[api.format("limit")]
    assert [p.name for p in metrics.parent.iterdir()] == ["connector.prom"]  # no temp file left


def test_a_failed_run_is_counted_and_a_dry_run_writes_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    metrics = tmp_path / "connector.prom"
    env = env_for(
        sandbox,
        tmp_path,
        CONNECTOR_METRICS_FILE=str(metrics),
        CONNECTOR_SALESFORCE__PASSWORD="wrong-password",
    )
    assert invoke("sync", "--dry-run", env=env).exit_code == 2 and not metrics.exists()
    assert invoke("sync", env=env).exit_code == 2  # a refused login: a setting to fix
    found = samples(metrics)
    assert found["connector_last_run_success"] == 0
    assert found['connector_runs_total{status="failed"}'] == 1
