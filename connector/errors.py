"""What can go wrong, grouped by what the caller should do about it.

    ConnectorError
    ├── ConfigError        a setting or the mapping is wrong (a refused Salesforce login too):
    │                      fix it, rerun (exit 2)
    ├── SourceError        Salesforce failed or is unreachable: the run stops, cursor unmoved
    │                      (exit 3)
    ├── StateStoreError    the state store failed: the run stops, nothing half-written (exit 3)
    ├── StoreBusy          another run holds the state store (exit 6)
    └── DestinationError   a destination refused the credentials, permission or account:
                           it stops for this run, its rows wait (exit 5)

Whether an error is worth another try is a property of the error (`retryable`),
not of its kind: `retry.RetryableError` marks transient failures of any remote call.

Per-row problems (a bad gclid, an unknown stage) are not exceptions: they are
recorded in the ledger as a row's reason and the run goes on. Messages never
carry secrets or personal data: only names of settings, fields and codes.
"""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    exit_code = 1


class ConfigError(ConnectorError):
    """A setting or mapping is missing or invalid; the message names it and says what to do."""

    exit_code = 2


class SourceError(ConnectorError):
    """The CRM could not be read; nothing past the last safe cursor was recorded."""

    exit_code = 3

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class DestinationError(ConnectorError):
    """A destination refused the whole request for a reason only a fix can cure; the message
    names the destination and the fix."""

    exit_code = 5

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        # Outcomes of requests of the same batch that did go before the refusal (the halves
        # of a split batch): settled before the destination stops, never put back as untried.
        self.outcomes: list[Any] = []  # core.Outcome: errors import nothing of ours


class StateStoreError(ConnectorError):
    """The state store could not be opened, read or written; the message names
    CONNECTOR_STATE_URL (never its password) and the cause."""

    exit_code = 3


class StoreBusy(ConnectorError):
    """Another run holds the state store (SQLite takes one run at a time)."""

    exit_code = 6
