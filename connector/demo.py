"""`connector demo`: the whole job against local emulators, with a generated dataset.

After its two syncs it reads Google Ads cost as `connector costs` does (the
Google Ads API emulator knows the dataset's campaigns and the click behind each
gclid), so the report shows cost per SQL, return on ad spend and CAC.
`connector sandbox` serves the same emulators, loaded the same way (`demo_sandbox`).

Every demo (and `connector sandbox`) keeps its state in a directory of its own
under one parent, `<temp dir>/connector-demo/`; only the newest few are kept.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from connector.analytics.google_ads_costs import fetch_costs
from connector.errors import ConfigError
from connector.ledger import Ledger
from connector.mapping.rules import load_mapping
from connector.pipeline import Progress, SyncOptions, sync
from connector.report import Period, Report, build_report, load, to_html
from connector.summary import RunSummary
from connector_sandbox.dataset import AdAccount, generate, google_ads_account
from connector_sandbox.google_ads_reporting import AdsReporting, EmulatedCampaign
from connector_sandbox.stack import Sandbox

# The repo's mapping when run from a checkout; the working directory's in a container.
_MAPPINGS = (
    Path(__file__).resolve().parent.parent / "mappings" / "salesforce.yaml",
    Path.cwd() / "mappings" / "salesforce.yaml",
)
DEMO_ROOT = Path(tempfile.gettempdir()) / "connector-demo"
KEEP = 3  # state directories kept per kind (demo, sandbox)


@dataclass
class DemoResult:
    first: RunSummary
    second: RunSummary
    state_url: str
    emulators: dict[str, Any]
    report_file: Path
    mapping_path: Path
    costs: dict[str, Any]  # what `connector costs` stored, and paid search's ROAS and CAC

    def commands(self) -> dict[str, str]:
        """What to type next: open the report, and run commands on the demo's state."""
        env = f"CONNECTOR_STATE_URL={shlex.quote(self.state_url)} " + (
            f"CONNECTOR_MAPPING_PATH={shlex.quote(str(self.mapping_path))}"
        )
        program = command_name()
        return {
            "open_report": f"{_opener()} {shlex.quote(str(self.report_file))}",
            "report": f"{env} {program} report",
            "runs": f"{env} {program} runs",
            "sandbox": f"{program} sandbox",
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_sync": self.first.as_dict(),
            "second_sync": self.second.as_dict(),
            "state_url": self.state_url,
            "emulators": self.emulators,
            "report_file": str(self.report_file),
            "google_ads_costs": self.costs,
            "commands": self.commands(),
        }


def demo_mapping() -> Path:
    return next((p for p in _MAPPINGS if p.exists()), _MAPPINGS[0])


def new_state_dir(kind: str, root: Path = DEMO_ROOT) -> Path:
    """A fresh `<root>/<kind>-<time>` directory; older ones of that kind beyond KEEP go."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    directory = Path(tempfile.mkdtemp(prefix=f"{kind}-{stamp}-", dir=root))
    # Names sort by time; the one just made is the newest.
    for old in sorted(root.glob(f"{kind}-*"))[:-KEEP]:
        if old.is_dir() and old != directory:
            shutil.rmtree(old, ignore_errors=True)
    return directory


def command_name() -> str:
    """How the user started us: `uv run connector` from a checkout, else `connector`."""
    return "uv run connector" if os.environ.get("UV_RUN_RECURSION_DEPTH") else "connector"


def _opener() -> str:
    if sys.platform == "darwin":
        return "open"
    return "start" if os.name == "nt" else "xdg-open"


def run_demo(
    *,
    leads: int,
    seed: int,
    state_dir: Path | None,
    progress: Progress | None,
    upload_api: Literal["datamanager", "ads_api"] = "datamanager",
) -> DemoResult:
    directory = state_dir or new_state_dir("demo")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--state-dir {directory} cannot be made ({exc.strerror or type(exc).__name__}): "
            "name a directory you can write to"
        ) from None
    directory = directory.resolve()  # the printed commands work from any directory
    state_url = f"sqlite:///{directory / 'connector.db'}"
    period = Period.parse(None, None)
    with demo_sandbox(leads, seed) as sandbox:
        mapping_path = demo_mapping()
        settings = sandbox.settings(state_url, mapping_path, upload_api=upload_api)
        mapping = load_mapping(settings.mapping_path)
        first = sync(settings, mapping, SyncOptions(progress=progress))
        # Shows exactly-once: the same window again finds everything already recorded.
        second = sync(settings, mapping, SyncOptions(progress=progress))
        emulators = _emulator_counts(sandbox, upload_api)
        stored = fetch_costs(
            settings.google_ads, Ledger.open(state_url), period.since, period.until
        )
    report_file = directory / "report.html"
    report = build_report(
        load(Ledger.open(state_url, readonly=True), period),
        currency=mapping.default_currency,
        precedence=mapping.attribution_precedence,
    )
    report_file.write_text(to_html(report), encoding="utf-8")
    costs = stored | _paid_search(report)
    return DemoResult(first, second, state_url, emulators, report_file, mapping_path, costs)


def demo_sandbox(leads: int, seed: int) -> Sandbox:
    """The emulators (not started: enter it) serving a generated dataset of `leads` leads, the
    Google Ads API emulator knowing its campaigns' daily cost and the click behind each gclid."""
    data = generate(n_leads=leads, seed=seed)
    sandbox = Sandbox(data.tables())
    _add_account(sandbox.google_ads_api.reporting, google_ads_account(data, seed))
    return sandbox


def _add_account(reporting: AdsReporting, account: AdAccount) -> None:
    for c in account.campaigns:
        reporting.add_campaign(EmulatedCampaign(c.id, c.name, days=c.days))
    for click in account.clicks:
        reporting.add_click(click.gclid, click.day, click.campaign_id)


def _paid_search(report: Report) -> dict[str, Any]:
    """The paid search channel's cost row: what the report's cost section says of it."""
    if not report.costs.channels:
        return {}
    row = report.costs.channels[0]
    return {
        "report_currency": report.currency,
        "paid_search_won_revenue": round(row.won_revenue, 2),
        "paid_search_roas": round(row.roas, 2) if row.roas is not None else None,
        "paid_search_cac": round(row.cac, 2) if row.cac is not None else None,
        "paid_search_cost_per_sql": round(row.cost_per_sql, 2) if row.cost_per_sql else None,
    }


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
