"""The stop request's waits: a main thread waiting on other threads still runs a signal
handler soon, whichever thread the kernel handed the signal to."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

import pytest

from connector import stopping


class Handled(Exception):
    """Raised by the test's handler: proof that it ran in the main thread."""


@pytest.fixture
def handled_usr1() -> Iterator[None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        raise Handled

    previous = signal.signal(signal.SIGUSR1, handle)
    yield
    signal.signal(signal.SIGUSR1, previous)


def test_a_signal_to_a_worker_thread_is_handled_while_the_main_thread_waits(
    handled_usr1: None,
) -> None:
    released = threading.Event()

    def signal_myself_then_block() -> bool:
        time.sleep(0.3)  # the main thread is waiting by now
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # not to the main thread
        return released.wait(10)  # False: the main thread's handler ran only once this ended

    with ThreadPoolExecutor(1) as pool:
        worker = pool.submit(signal_myself_then_block)
        try:
            with pytest.raises(Handled):
                stopping.wait_for([worker])
        finally:
            released.set()
        assert worker.result(), "the handler waited for the worker"


def test_wait_for_all_or_the_first() -> None:
    second = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        quick, slow = pool.submit(lambda: 1), pool.submit(second.wait, 30)
        done, pending = stopping.wait_for([quick, slow], first=True)
        assert done == {quick} and pending == {slow}
        second.set()
        done, pending = stopping.wait_for([quick, slow])
        assert done == {quick, slow} and not pending


def test_sleep_unless_ends_once_the_event_is_set() -> None:
    event = threading.Event()
    assert stopping.sleep_unless(event, 0.05) is False
    threading.Timer(0.05, event.set).start()
    assert stopping.sleep_unless(event, 30) is True
