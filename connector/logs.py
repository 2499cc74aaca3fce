"""Logging: readable lines in a terminal, one JSON object per line in a container.

Every record passes a filter that replaces any configured secret value with
`[redacted]`, whatever code path put it there: a last line of defence behind
SecretStr and the errors that never echo requests. Every record also carries
the id of the sync run it belongs to (`bind_run`), so one run's lines can be
found among many.

While a progress display is on screen, lines go through its console
(`route_to`): rich prints them above the spinner instead of into it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
_RUN_ID: ContextVar[int | None] = ContextVar("connector_run_id", default=None)


def bind_run(run_id: int | None) -> Token[int | None]:
    """Tag every log line from here on (in this context) with `run_id`; undo with `unbind`."""
    return _RUN_ID.set(run_id)


def unbind(token: Token[int | None]) -> None:
    _RUN_ID.reset(token)


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class AddRunId(logging.Filter):
    """Put the bound run id on the record (unless the caller passed one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = _RUN_ID.get()
        if run_id is not None and not hasattr(record, "run_id"):
            record.run_id = run_id
        return True


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a caller passed with `extra=`, and the run id."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(fields(record))
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message key=value ...`: the same fields the JSON lines carry."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        extra = " ".join(f"{k}={_text_value(v)}" for k, v in fields(record).items())
        if extra:
            line = f"{line}  {extra}"
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return line


def _text_value(value: Any) -> str:
    if not isinstance(value, str):
        return json.dumps(value, default=str, separators=(",", ":"))
    # Quoted only when needed, so `destination=ga4` stays easy to grep.
    return json.dumps(value) if (not value or any(c in value for c in ' ="\n')) else value


class ConsoleHandler(logging.Handler):
    """Writes to stderr, or through the progress display's console while one is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.console: Console | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self.console is not None:
                self.console.print(Text(line), soft_wrap=True)
            else:
                # Looked up on each line: a test runner may have swapped stderr since setup.
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        except Exception:  # logging must never break the run
            self.handleError(record)


_handler = ConsoleHandler()


@contextmanager
def route_to(console: Console) -> Iterator[None]:
    """Send log lines through `console` (the one a rich progress display draws on)."""
    previous, _handler.console = _handler.console, console
    try:
        yield
    finally:
        _handler.console = previous


def setup(log_format: str, level: str, secrets: Iterable[str]) -> RedactSecrets:
    """Configure the root logger once per process; returns the redaction filter."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    _handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    redact = RedactSecrets(secrets)
    _handler.filters[:] = [AddRunId(), redact]
    root = logging.getLogger()
    root.handlers[:] = [_handler]
    root.setLevel(level)
    # Client libraries log request URLs (the GA4 api_secret rides in one) at DEBUG.
    for noisy in ("urllib3", "httpx", "httpcore", "google", "grpc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return redact
