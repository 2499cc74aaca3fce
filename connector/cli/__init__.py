"""The `connector` command (entry point `connector.cli:main`); one module per command group."""

from __future__ import annotations

import sys

from connector.cli import analytics, check, costs, demo, report, sync
from connector.cli.app import app

__all__ = ["analytics", "app", "check", "costs", "demo", "main", "report", "sync"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
