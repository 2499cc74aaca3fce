"""Prometheus textfile metrics, written after each run (`CONNECTOR_METRICS_FILE`).

node-exporter's textfile collector reads every `*.prom` file of a directory at
each scrape, so the file is written beside itself and renamed over the old one:
a scrape never sees half a file. Counts come from the ledger (all runs, every
worker), the last run's figures from its summary.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from connector.core import utcnow
from connector.ledger.stats import LedgerStats
from connector.summary import RunSummary

log = logging.getLogger("connector.metrics")
Sample = tuple[dict[str, str], float]


def render(stats: LedgerStats, summary: RunSummary, seconds: float, now: datetime) -> str:
    """The textfile: one HELP and TYPE line per metric, then its samples."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"))
        lines.extend(f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples)

    metric(
        "connector_runs_total",
        "counter",
        "Sync runs recorded in the ledger, by how they ended.",
        (({"status": s}, n) for s, n in sorted(stats.runs.items())),
    )
    metric(
        "connector_deliveries",
        "gauge",
        "Delivery rows in the ledger, by destination and status.",
        (({"destination": d, "status": s}, n) for (d, s), n in sorted(stats.deliveries.items())),
    )
    metric(
        "connector_oldest_pending_delivery_age_seconds",
        "gauge",
        "How long the oldest pending delivery has waited (0: nothing pending).",
        _ages(stats, now),
    )
    metric(
        "connector_delivery_retries_total",
        "counter",
        "Upload attempts after the first, summed over delivery rows.",
        (({"destination": d}, n) for d, n in sorted(stats.retries.items())),
    )
    last_run = (
        (
            "timestamp_seconds",
            "When the last run of this process ended (unix time).",
            now.timestamp(),
        ),
        ("duration_seconds", "How long the last run took.", seconds),
        (
            "success",
            "1 if the last run did not fail (ok or partial), else 0.",
            float(summary.status != "failed"),
        ),
    )
    for suffix, help_text, value in last_run:
        metric(f"connector_last_run_{suffix}", "gauge", help_text, [({}, value)])
    lines.extend(_api_usage(summary))
    return "\n".join(lines) + "\n"


def _ages(stats: LedgerStats, now: datetime) -> list[Sample]:
    destinations = sorted({d for d, _ in stats.deliveries} | set(stats.oldest_pending))
    ages = []
    for destination in destinations:
        oldest = stats.oldest_pending.get(destination)
        age = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
        ages.append(({"destination": destination}, age))
    return ages


def _api_usage(summary: RunSummary) -> list[str]:
    """Salesforce's `Sforce-Limit-Info` (`used/max` daily API calls) as the last run saw it."""
    if not summary.api_usage:
        return []
    used, limit = (float(part) for part in summary.api_usage.split("/", 1))
    return [
        "# HELP connector_salesforce_api_calls Salesforce daily API calls, as of the last run.",
        "# TYPE connector_salesforce_api_calls gauge",
        f'connector_salesforce_api_calls{{kind="used"}} {_number(used)}',
        f'connector_salesforce_api_calls{{kind="limit"}} {_number(limit)}',
    ]


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    # The exposition format's three escapes in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def write_textfile(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a temp file in the same directory, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # node-exporter usually runs as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metrics(path: Path, state_url: str, summary: RunSummary, seconds: float) -> None:
    """Read the ledger's counts and write the file; a failure is logged, never fatal."""
    from connector.errors import ConnectorError
    from connector.ledger import Ledger
    from connector.ledger.stats import ledger_stats

    try:
        db = Ledger.open(state_url, readonly=True).db
        try:
            stats = ledger_stats(db)
        finally:
            db.engine.dispose()  # `run --every` opens it once per run: no pool left behind
    except ConnectorError as exc:
        log.warning("metrics: cannot read the ledger: %s", exc, extra={"metrics_file": str(path)})
        stats = LedgerStats()
    try:
        write_textfile(path, render(stats, summary, seconds, utcnow()))
    except OSError as exc:
        log.warning(
            "metrics: cannot write the metrics file: %s",
            exc.strerror,
            extra={"metrics_file": str(path)},
        )
