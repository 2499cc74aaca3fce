"""The `connector` command (entry point `connector.cli:main`); one module per command group."""

from __future__ import annotations

import logging
import sys

from connector import exit_codes
from connector.cli import (
    analytics,
    check,
    costs,
    demo,
    failures,
    init,
    replay,
    report,
    run,
    runs,
    sandbox,
    sync,
)
from connector.cli.app import app

__all__ = [
    "analytics",
    "app",
    "check",
    "costs",
    "demo",
    "failures",
    "init",
    "main",
    "replay",
    "report",
    "run",
    "runs",
    "sandbox",
    "sync",
]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line, the traceback only at DEBUG
        log = logging.getLogger("connector")
        log.debug("unexpected error", exc_info=True)
        log.error(
            "unexpected error (%s: %s): rerun with CONNECTOR_LOG_LEVEL=DEBUG for the traceback",
            type(exc).__name__,
            exc,
        )
        sys.exit(exit_codes.INTERNAL)
