"""`connector demo`: the whole job against local emulators, with a generated dataset."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from connector.ledger import Ledger
from connector.mapping.rules import load_mapping
from connector.pipeline import Progress, SyncOptions, sync
from connector.report import Period, build_report, load, to_html
from connector.summary import RunSummary
from connector_sandbox.dataset import generate
from connector_sandbox.stack import Sandbox

# The repo's mapping when run from a checkout; the working directory's in a container.
_MAPPINGS = (
    Path(__file__).resolve().parent.parent / "mappings" / "salesforce.yaml",
    Path.cwd() / "mappings" / "salesforce.yaml",
)


@dataclass
class DemoResult:
    first: RunSummary
    second: RunSummary
    state_url: str
    emulators: dict[str, Any]
    report_file: Path

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_sync": self.first.as_dict(),
            "second_sync": self.second.as_dict(),
            "state_url": self.state_url,
            "emulators": self.emulators,
            "report_file": str(self.report_file),
        }


def run_demo(
    *,
    leads: int,
    seed: int,
    state_dir: Path | None,
    progress: Progress | None,
    upload_api: Literal["datamanager", "ads_api"] = "datamanager",
) -> DemoResult:
    directory = state_dir or Path(tempfile.mkdtemp(prefix="connector-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    state_url = f"sqlite:///{directory / 'connector.db'}"
    data = generate(n_leads=leads, seed=seed)
    with Sandbox(data.tables()) as sandbox:
        mapping_path = next((p for p in _MAPPINGS if p.exists()), _MAPPINGS[0])
        settings = sandbox.settings(state_url, mapping_path, upload_api=upload_api)
        mapping = load_mapping(settings.mapping_path)
        first = sync(settings, mapping, SyncOptions(progress=progress))
        # Shows exactly-once: the same window again finds everything already recorded.
        second = sync(settings, mapping, SyncOptions(progress=progress))
        emulators = _emulator_counts(sandbox, upload_api)
    report_file = directory / "report.html"
    report = build_report(
        load(Ledger.open(state_url, readonly=True), Period.parse(None, None)),
        currency=mapping.default_currency,
        precedence=mapping.attribution_precedence,
    )
    report_file.write_text(to_html(report), encoding="utf-8")
    return DemoResult(first, second, state_url, emulators, report_file)


def _emulator_counts(sandbox: Sandbox, upload_api: str) -> dict[str, Any]:
    """What the emulators received; the legacy path also counts its adjustments."""
    counts: dict[str, Any] = {
        "google_ads_conversions": len(sandbox.datamanager.conversions),
        "ga4_events_accepted": len(sandbox.ga4.accepted),
        "ga4_requests": sandbox.ga4.requests,
    }
    if upload_api == "ads_api":
        conversions = sandbox.google_ads_api.conversions
        counts["google_ads_conversions"] = len(conversions)
        counts["google_ads_adjustments"] = sum(len(c.adjustments) for c in conversions)
    return counts
