"""A first sync and a sync with nothing new, as `connector sync` runs them in production.

    uv run python benchmarks/sync.py [--leads 10000,100000] [--latency-ms 50] [--seed 7]

For each size, a second process (this script with `--serve`) generates the demo
dataset of that many leads, serves it on the Salesforce, Data Manager and GA4
emulators with `--latency-ms` added to every request, and writes the settings
that point the connector at them. Then the real `connector sync --json` runs as
a subprocess twice on a fresh SQLite ledger: the first sync, and one right after
with nothing new. The emulators' CPU is not the connector's: they run apart.

Printed per sync: the calls each API received against the minimum (LEGEND says
how each minimum is counted), the changes recorded per second of wall and of the
sync process's CPU, wall against the latency-bound ideal, and the sync process's
peak RSS (`wait4` rusage of that one process).
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from connector.source.soql import LOOKUP_IDS

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "mappings" / "salesforce.yaml"
SOQL_PAGE = 2000  # REST query page
BULK_PAGE = 50_000  # connector.source.bulk.bulk_pages' default maxRecords
GA4_EVENTS = 25  # Measurement Protocol events per request
DM_EVENTS = 2000  # Data Manager events per IngestEvents request
DM_CONCURRENCY = 4  # settings.GoogleAdsSettings.max_concurrency's default
BACKFILL_DAYS = 90
LEGEND = """\
min Salesforce, per history object: ceil(rows / 2,000) REST pages, or for more rows than
  BULK_THRESHOLD (20,000) a Bulk API 2.0 job: create + one status poll + ceil(rows / 50,000)
  result pages; plus Lead lookups: ceil(distinct opportunities / 2,000), each one Composite
  call (its 2,000-id SOQL is too long for a URL). A Bulk read also costs the first REST
  page, whose totalSize chose Bulk: the one call over the minimum the target allows.
  A run with nothing new: one query per object (2). The OAuth login is not counted: it is
  no API call (the daily limit counts REST and Bulk requests).
min Data Manager: ceil(events / 2,000) IngestEvents requests (conversion actions share them).
min GA4: the sum over client ids of ceil(that client's events / 25).
ideal wall: latency x (Salesforce min + ceil(Data Manager min / its concurrency)
  + ceil(GA4 min / GA4 concurrency)): Salesforce pages one after another, Data Manager
  requests `google_ads.max_concurrency` (4) and GA4 requests `ga4.max_concurrency` (8) at a
  time (Data Manager's 240 a minute never binds at these sizes); the connector's CPU is not
  in it.
CPU: user + system time of the sync process; per change: CPU / changes recorded.
peak RSS: the sync process's ru_maxrss."""


# --------------------------------------------------------------------------- the serving side


def serve(leads: int, seed: int, latency_ms: float, env_file: Path) -> None:
    """Serve the emulators (until stdin closes) and answer `counts` lines with JSON."""
    from connector_sandbox.dataset import generate
    from connector_sandbox.stack import Sandbox

    now = datetime.now(UTC)
    start = (now - timedelta(days=BACKFILL_DAYS)).date()
    tables = generate(n_leads=leads, seed=seed, now=now).tables()
    expected = _source_minimum(tables, datetime.combine(start, datetime.min.time(), UTC))
    with Sandbox(tables) as box:
        del tables  # the emulator keeps its own copy
        for emulator in (box.salesforce, box.datamanager, box.ga4):
            emulator.latency = latency_ms / 1000
        settings = box.settings("sqlite:///unused", MAPPING)
        env = _environment(settings.model_dump(exclude_defaults=True))
        env["CONNECTOR_SALESFORCE__START_DATE"] = start.isoformat()
        env_file.write_text(json.dumps({"env": env, "source": expected}), encoding="utf-8")
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "counts":
                print(json.dumps(_counts(box)), flush=True)


def _source_minimum(tables: dict[str, list[dict[str, Any]]], start: datetime) -> dict[str, int]:
    """Rows each history query reads (from `start`), and the opportunities they name."""
    from connector.source.salesforce import parse_sf_datetime

    def since(row: dict[str, Any]) -> bool:
        return parse_sf_datetime(str(row["CreatedDate"])) >= start

    leads = [r for r in tables.get("LeadHistory", []) if r["Field"] == "Status" and since(r)]
    opportunity = [
        r
        for r in tables.get("OpportunityFieldHistory", [])
        if r["Field"] in ("StageName", "Amount") and since(r)
    ]
    return {
        "LeadHistory": len(leads),
        "OpportunityFieldHistory": len(opportunity),
        "opportunities": len({r["OpportunityId"] for r in opportunity}),
    }


def _environment(values: dict[str, Any], prefix: str = "CONNECTOR_") -> dict[str, str]:
    """`CONNECTOR_GROUP__FIELD` variables for a dump of Settings (secrets in clear: local)."""
    env: dict[str, str] = {}
    for name, value in values.items():
        key = f"{prefix}{name.upper()}"
        if isinstance(value, dict):
            env |= _environment(value, f"{key}__")
        elif value is not None:
            secret = getattr(value, "get_secret_value", None)
            text = secret() if secret else value
            env[key] = str(text).lower() if isinstance(text, bool) else str(text)
    return env


def _counts(box: Any) -> dict[str, Any]:
    events = box.ga4.accepted + box.ga4.dropped
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu": own.ru_utime + own.ru_stime,
        "salesforce_query": box.salesforce.query_calls,
        "salesforce_bulk": box.salesforce.bulk_calls,
        "datamanager_requests": box.datamanager.requests,
        "datamanager_events": len(box.datamanager.accepted),
        "ga4_requests": box.ga4.requests,
        "ga4_events_by_client": Counter(str(e.get("client_id")) for e in events),
    }


# --------------------------------------------------------------------------- the measuring side


@dataclass
class SyncRun:
    wall: float
    cpu: float
    peak_rss_mib: float
    summary: dict[str, Any]


@dataclass
class Calls:
    """What the emulators received during one sync (the difference of two counts)."""

    salesforce: dict[str, int]
    emulator_cpu: float
    datamanager: int
    datamanager_events: int
    ga4: int
    ga4_minimum: int

    @classmethod
    def between(cls, before: dict[str, Any], after: dict[str, Any]) -> Calls:
        salesforce = _difference(after["salesforce_query"], before["salesforce_query"])
        bulk = _difference(after["salesforce_bulk"], before["salesforce_bulk"])
        for name, count in bulk.items():
            salesforce[f"{name} (bulk)"] = count
        clients = Counter(after["ga4_events_by_client"])
        clients.subtract(before["ga4_events_by_client"])
        return cls(
            salesforce={k: v for k, v in salesforce.items() if v},
            emulator_cpu=after["cpu"] - before["cpu"],
            datamanager=after["datamanager_requests"] - before["datamanager_requests"],
            datamanager_events=after["datamanager_events"] - before["datamanager_events"],
            ga4=after["ga4_requests"] - before["ga4_requests"],
            ga4_minimum=sum(math.ceil(n / GA4_EVENTS) for n in clients.values() if n > 0),
        )


def _difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: count - before.get(name, 0) for name, count in after.items()}


class Emulators:
    """The `--serve` process: started, asked for counts, stopped."""

    def __init__(self, leads: int, seed: int, latency_ms: float, workdir: Path) -> None:
        env_file = workdir / "emulators.json"
        command = [sys.executable, __file__, "--serve", "--leads", str(leads), "--seed", str(seed)]
        command += ["--latency-ms", str(latency_ms), "--env-file", str(env_file)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=workdir
        )
        self._stdin: IO[str] = _stream(self._process.stdin)
        self._stdout: IO[str] = _stream(self._process.stdout)
        if self._stdout.readline().strip() != "ready":
            raise RuntimeError("the emulator process did not start")
        written = json.loads(env_file.read_text(encoding="utf-8"))
        self.env: dict[str, str] = written["env"]
        self.source: dict[str, int] = written["source"]

    def counts(self) -> dict[str, Any]:
        self._stdin.write("counts\n")
        self._stdin.flush()
        return dict(json.loads(self._stdout.readline()))

    def stop(self) -> None:
        self._stdin.close()
        self._process.wait(timeout=60)


def _stream(pipe: IO[str] | None) -> IO[str]:
    assert pipe is not None
    return pipe


def run_sync(env: dict[str, str], workdir: Path, profile: Path | None = None) -> SyncRun:
    """`connector sync --json` as its own process: wall, its CPU and peak RSS, its summary."""
    out = workdir / "summary.json"
    started = time.perf_counter()
    # py-spy samples the sync (collapsed stacks): its figures are then py-spy's, not RESULTS.md's.
    spy = ["py-spy", "record", "--format", "raw", "-r", "200", "--gil", "-o", str(profile), "--"]
    with out.open("w", encoding="utf-8") as stdout:
        process = subprocess.Popen(
            [*(spy if profile else []), sys.executable, "-m", "connector", "sync", "--json"],
            # The image's and the deploy files' MALLOC_ARENA_MAX: the sync as production runs it.
            env={**os.environ, "MALLOC_ARENA_MAX": "2", **env},
            cwd=workdir,  # no .env file here: only these settings count
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)  # this one process's rusage
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    # 0 done, 3 rows still pending, 7 done with some rows rejected (README "Exit codes").
    if process.returncode not in (0, 3, 7):
        raise RuntimeError(f"connector sync exited {process.returncode}")
    text = out.read_text(encoding="utf-8")  # py-spy, when profiling, writes its own lines too
    summary, _ = json.JSONDecoder().raw_decode(text[text.index("{") :])
    return SyncRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, summary)


def measure(
    leads: int, seed: int, latency_ms: float, concurrency: int, profile: Path | None = None
) -> None:
    with tempfile.TemporaryDirectory(prefix="connector-bench-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        emulators = Emulators(leads, seed, latency_ms, workdir)
        source = ", ".join(f"{name} {count:,}" for name, count in emulators.source.items())
        ready = time.perf_counter() - started
        print(f"\n== {leads:,} leads ({source}): emulators ready in {ready:.0f} s")
        try:
            env = emulators.env | {"CONNECTOR_STATE_URL": f"sqlite:///{workdir / 'state.db'}"}
            env |= {
                "CONNECTOR_LOG_FORMAT": "json",
                "CONNECTOR_GA4__MAX_CONCURRENCY": str(concurrency),
            }
            for label in ("first sync", "nothing new"):
                before = emulators.counts()
                where = profile.with_suffix(f".{leads}.{label[:5]}.txt") if profile else None
                run = run_sync(env, workdir, where)
                calls = Calls.between(before, emulators.counts())
                report(label, run, calls, emulators.source, latency_ms, concurrency)
        finally:
            emulators.stop()


def salesforce_minimum(source: dict[str, int], first: bool, threshold: int = 20_000) -> int:
    if not first:
        return 2  # one query per history object
    pages = 0
    for name in ("LeadHistory", "OpportunityFieldHistory"):
        rows = source[name]
        bulk = rows > threshold
        pages += 2 + math.ceil(rows / BULK_PAGE) if bulk else max(1, math.ceil(rows / SOQL_PAGE))
    return pages + math.ceil(source["opportunities"] / LOOKUP_IDS)


def report(
    label: str,
    run: SyncRun,
    calls: Calls,
    source: dict[str, int],
    latency_ms: float,
    concurrency: int,
) -> None:
    first = label == "first sync"
    new = int(run.summary.get("new", 0))
    sf_min = salesforce_minimum(source, first)
    dm_min = math.ceil(calls.datamanager_events / DM_EVENTS)
    sf_calls = sum(calls.salesforce.values())
    dm_rounds = math.ceil(dm_min / DM_CONCURRENCY)
    ideal = latency_ms / 1000 * (sf_min + dm_rounds + math.ceil(calls.ga4_minimum / concurrency))
    print(
        f"-- {label}: {run.summary.get('pulled', 0):,} pulled, {new:,} new, "
        f"status {run.summary.get('status')}"
    )
    detail = ", ".join(f"{name} {count}" for name, count in sorted(calls.salesforce.items()))
    print(f"   Salesforce calls   {sf_calls:>6,} (min {sf_min:,}): {detail}")
    print(
        f"   Data Manager reqs  {calls.datamanager:>6,} (min {dm_min:,}) "
        f"for {calls.datamanager_events:,} events"
    )
    ratio = f": {calls.ga4 / calls.ga4_minimum:.2f}x" if calls.ga4_minimum else ""
    print(f"   GA4 requests       {calls.ga4:>6,} (min {calls.ga4_minimum:,}){ratio}")
    per_change = f", {run.cpu / new * 1000:.2f} ms CPU per change" if new else ""
    rate = f", {new / run.wall:,.0f} changes/s" if new else ""
    print(f"   wall {run.wall:.1f} s{rate}; CPU {run.cpu:.1f} s{per_change}")
    print(f"   emulators' CPU meanwhile {calls.emulator_cpu:.1f} s; load average {_load()}")
    if ideal > 0:
        print(f"   latency-bound ideal {ideal:.1f} s: wall / ideal {run.wall / ideal:.2f}x")
    print(f"   peak RSS {run.peak_rss_mib:,.0f} MiB")
    phases = ", ".join(
        f"{name} {took:.1f} s" for name, took in run.summary.get("seconds", {}).items()
    )
    print(f"   phases (wall): {phases}")


def _load() -> str:
    """The machine's 1-minute load average: wall figures mean little on a busy machine."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", default="10000,100000", help="comma-separated dataset sizes")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added to every request")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ga4-concurrency", type=int, default=8, help="GA4 max_concurrency")
    parser.add_argument("--profile", type=Path, help="sample with py-spy: stacks next to this path")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--env-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.leads), args.seed, args.latency_ms, args.env_file)
        return
    # Bytecode as the image has it (UV_COMPILE_BYTECODE): compiling sources is not the sync.
    for folder in (ROOT / "connector", Path(sysconfig.get_paths()["purelib"])):
        compileall.compile_dir(folder, quiet=2, workers=0)
    latency = f"latency {args.latency_ms:g} ms per request"
    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {latency}, "
        f"GA4 concurrency {args.ga4_concurrency}"
    )
    for leads in (int(n) for n in args.leads.split(",")):
        measure(leads, args.seed, args.latency_ms, args.ga4_concurrency, args.profile)
    print(LEGEND)


if __name__ == "__main__":
    main()
