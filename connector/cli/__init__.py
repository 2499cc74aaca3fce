"""The `connector` command (entry point `connector.cli:main`); one module per command group."""

from __future__ import annotations

import logging
import os
import sys

# gRPC's C core writes INFO lines of its own to stderr (a failed TLS handshake, say), which
# would break a container's one-JSON-object-per-line logs; what matters comes back as the
# call's error, reported by the connector. Read when gRPC loads: set before any command runs.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

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
