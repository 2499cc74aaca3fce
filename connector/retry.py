"""One retry policy for every remote call: backoff with jitter, Retry-After honoured.

Only errors marked retryable (429, 5xx, timeouts: API-NOTES §1) are retried;
anything else goes straight back to the caller to be recorded per row. Each
client translates its library's transient errors into RetryableError at the
boundary (`google_api.GOOGLE_TRANSIENT` for Google's clients).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from connector.errors import ConnectorError

T = TypeVar("T")

log = logging.getLogger("connector.retry")


class RetryableError(ConnectorError):
    """A transient failure of any remote call (its kind is the caller's to say when it gives
    up); `retry_after` is the server's hint in seconds, if it gave one."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None, retry_after: float = 0.0):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _wait(base: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = exc.retry_after if isinstance(exc, RetryableError) else 0.0
        return max(base(state), min(hint, 120.0))

    return wait


def call_with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 5,
    max_wait: float = 30.0,
    deadline: float = 300.0,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Run `call`, retrying RetryableError with exponential backoff; reraise the last one."""
    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, RetryableError)),
        stop=stop_after_attempt(attempts) | stop_after_delay(deadline),
        wait=_wait(wait_exponential_jitter(multiplier=0.5, max=max_wait, jitter=0.5)),
        before_sleep=lambda s: log.warning(
            "transient failure, retrying",
            extra={
                "attempt": s.attempt_number,
                "error": str(s.outcome.exception()) if s.outcome else "",
            },
        ),
        reraise=True,
    )
    if sleep is not None:
        retrying.sleep = sleep
    return retrying(call)
