"""One retry policy for every remote call: backoff with jitter, Retry-After honoured.

Only errors marked retryable (429, 5xx, timeouts: API-NOTES §1) are retried;
anything else goes straight back to the caller to be recorded per row. Each
client translates its library's transient errors into RetryableError at the
boundary (`google_api.GOOGLE_TRANSIENT` for Google's clients).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from connector import stopping
from connector.errors import ConnectorError

T = TypeVar("T")

log = logging.getLogger("connector.retry")


class RetryableError(ConnectorError):
    """A transient failure of any remote call (its kind is the caller's to say when it gives
    up); `retry_after` is the server's hint in seconds, if it gave one. One that ends a
    command (a report read still failing after retries) is exit 3: nothing to fix."""

    retryable = True
    exit_code = 3

    def __init__(self, message: str, *, status: int | None = None, retry_after: float = 0.0):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryBudget:
    """Retries left for this run over every API, shared by all threads: an outage must not
    turn one run into hours of backoff. Counted for the run summary."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True


_budget: RetryBudget | None = None  # the current run's; None: unlimited (tests, tools)


@contextmanager
def budget(limit: int) -> Iterator[RetryBudget]:
    """Retries of everything called inside count against `limit`."""
    global _budget
    previous, _budget = _budget, RetryBudget(limit)
    try:
        yield _budget
    finally:
        _budget = previous


def _may_retry(exc: BaseException) -> bool:
    # Told to stop (SIGTERM): the run settles what is in flight, it does not try again.
    if not isinstance(exc, RetryableError) or stopping.requested():
        return False
    return _budget is None or _budget.take()


def _wait(base: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = exc.retry_after if isinstance(exc, RetryableError) else 0.0
        return max(base(state), min(hint, 120.0))

    return wait


def _backoff(seconds: float) -> None:
    stopping.wait(seconds)  # in slices: a stop ends it at once


def call_with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 5,
    max_wait: float = 30.0,
    deadline: float = 300.0,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Run `call`, retrying RetryableError with exponential backoff; reraise the last one.

    A stop (SIGTERM) ends the backoff: the failure that led to it is the call's outcome."""
    failed: list[BaseException] = []

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            failed[:] = [exc]
        log.warning(
            "transient failure, retrying",
            extra={"attempt": state.attempt_number, "error": str(exc or "")},
        )

    def attempt() -> T:
        if failed and stopping.requested():  # told to stop during the backoff
            raise failed[0]
        return call()

    retrying = Retrying(
        retry=retry_if_exception(_may_retry),
        stop=stop_after_attempt(attempts) | stop_after_delay(deadline),
        wait=_wait(wait_exponential_jitter(multiplier=0.5, max=max_wait, jitter=0.5)),
        before_sleep=before_sleep,
        sleep=sleep or _backoff,
        reraise=True,
    )
    return retrying(attempt)
