"""What can go wrong, grouped by what the caller should do about it.

    ConnectorError
    ├── ConfigError        a setting or the mapping is wrong: fix it, rerun (exit 2)
    ├── SourceError        Salesforce refused or failed: the run stops, cursor unmoved (exit 3)
    └── DestinationError   an upload failed as a whole (retryable or not)

Per-row problems (a bad gclid, an unknown stage) are not exceptions: they are
recorded in the ledger as a row's reason and the run goes on. Messages never
carry secrets or personal data: only names of settings, fields and codes.
"""

from __future__ import annotations


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
    """A whole request to a destination failed."""

    exit_code = 4

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, code: str = ""
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.code = code
