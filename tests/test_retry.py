"""The one retry policy: transient failures retried, others not, and a stop ends the backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from connector import stopping
from connector.retry import RetryableError, call_with_retries


@pytest.fixture(autouse=True)
def no_stop_left() -> Iterator[None]:
    yield
    stopping.reset()


def failing(times: int, calls: list[int]) -> Callable[[], str]:
    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise RetryableError(f"503 number {len(calls)}", status=503)
        return "ok"

    return call


def test_a_transient_failure_is_retried_and_others_are_not() -> None:
    calls: list[int] = []
    assert call_with_retries(failing(2, calls), sleep=lambda _: None) == "ok"
    assert len(calls) == 3

    def refused() -> None:
        calls.append(1)
        raise ValueError("not transient")

    with pytest.raises(ValueError):
        call_with_retries(refused, sleep=lambda _: None)
    assert len(calls) == 4


def test_told_to_stop_a_failure_is_not_retried() -> None:
    calls: list[int] = []
    stopping.request()
    with pytest.raises(RetryableError, match="number 1"):
        call_with_retries(failing(5, calls), sleep=lambda _: None)
    assert len(calls) == 1


def test_a_stop_during_the_backoff_ends_it_without_another_attempt() -> None:
    calls: list[int] = []
    timer = threading.Timer(0.2, stopping.request)
    timer.start()
    started = time.monotonic()
    with pytest.raises(RetryableError, match="number 1"):
        # The server asks for a minute's wait; the stop comes 0.2 s into it.
        call_with_retries(_hinted(calls))
    timer.join()
    assert len(calls) == 1
    assert time.monotonic() - started < 30  # not the minute asked for


def _hinted(calls: list[int]) -> Callable[[], str]:
    def call() -> str:
        calls.append(1)
        raise RetryableError(f"429 number {len(calls)}", status=429, retry_after=60)

    return call
