"""How long the `connector` command takes to start, as a ratio to `python -c pass`.

    uv run python benchmarks/startup.py [--runs 15]

Times `connector --help`, `connector check` (offline, on a configuration that
passes) and `connector report --help` as separate processes, after compiling
the bytecode once (as the container image does), and prints the median wall
time of each and its ratio to starting the interpreter alone. Each command
imports only what it needs: the target is well under a second for --help and
check.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "connector --help": [sys.executable, "-m", "connector", "--help"],
    "connector report --help": [sys.executable, "-m", "connector", "report", "--help"],
    "connector check": [sys.executable, "-m", "connector", "check"],
}


def environment(state_dir: str) -> dict[str, str]:
    """A configuration `connector check` accepts offline (nothing is called)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env |= {
        "CONNECTOR_STATE_URL": f"sqlite:///{state_dir}/state.db",
        "CONNECTOR_MAPPING_PATH": str(ROOT / "mappings" / "salesforce.yaml"),
        "CONNECTOR_SALESFORCE__SESSION_ID": "benchmark",
        "CONNECTOR_SALESFORCE__INSTANCE_URL": "https://example.my.salesforce.com",
        "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID": "1234567890",
        "CONNECTOR_GA4__MEASUREMENT_ID": "G-BENCHMARK1",
        "CONNECTOR_GA4__API_SECRET": "benchmark",
        "CONNECTOR_LOG_FORMAT": "json",
    }
    return env


def median_seconds(command: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[2:])} failed: {done.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    # Bytecode as the image has it (UV_COMPILE_BYTECODE): source compiling is not startup.
    for folder in (ROOT / "connector", Path(sysconfig.get_paths()["purelib"])):
        compileall.compile_dir(folder, quiet=2, workers=0)
    with tempfile.TemporaryDirectory() as state_dir:
        env = environment(state_dir)
        results = {name: median_seconds(cmd, env, args.runs) for name, cmd in COMMANDS.items()}
    base = results["python -c pass"]
    print(f"median of {args.runs} runs each, {sys.platform}, Python {sys.version.split()[0]}")
    for name, seconds in results.items():
        print(f"{name:28} {seconds * 1000:7.0f} ms  {seconds / base:6.1f}x python -c pass")


if __name__ == "__main__":
    main()
