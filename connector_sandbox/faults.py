"""Faults an emulator can be told to inject into its next responses."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from connector_sandbox.server import RESET, Response


@dataclass
class Fault:
    """One injected failure: an HTTP status with a body, or a delay (a timeout to the client)."""

    status: int = 503
    body: object = None  # JSON; bytes: sent as they are (say their type in `headers`)
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    path_contains: str = ""  # empty: any path
    method: str = ""  # empty: any method (the Salesforce emulator's requests say theirs)
    # Served normally after the delay: latency, or (with a delay past the client's timeout)
    # a request the server processed but whose answer never reached the client.
    then_serve: bool = False
    reset: bool = False  # no answer: the connection is reset (the request is not processed)

    def applies(self, path: str, method: str) -> bool:
        return self.path_contains in path and self.method in ("", method)


class FaultQueue:
    """FIFO of faults; each matching request consumes one. Thread-safe."""

    def __init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._random: tuple[float, list[Fault], random.Random] | None = None

    def randomly(self, rate: float, faults: list[Fault], seed: int = 0) -> None:
        """From now on, each request gets one of `faults` with probability `rate`."""
        with self._lock:
            self._random = (rate, faults, random.Random(seed))

    def push(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend(fault for _ in range(times))

    def __len__(self) -> int:
        """The faults queued and not yet taken (a request takes one on arrival)."""
        with self._lock:
            return len(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random = None

    def take(self, path: str, method: str = "") -> Response | None:
        """The response to inject for this request, or None to serve it normally."""
        with self._lock:
            fault = next((f for f in self._faults if f.applies(path, method)), None)
            if fault is not None:
                self._faults.remove(fault)
            elif self._random is not None:
                rate, choices, rng = self._random
                fault = rng.choice(choices) if rng.random() < rate else None
                if fault is not None and not fault.applies(path, method):
                    fault = None
            if fault is None:
                return None
        if fault.delay_seconds:
            time.sleep(fault.delay_seconds)
        if fault.then_serve:
            return None
        if fault.reset:
            return Response(RESET)
        if isinstance(fault.body, bytes):
            return Response(fault.status, headers=fault.headers, raw=fault.body)
        body = fault.body if fault.body is not None else {"error": {"code": fault.status}}
        return Response(fault.status, body, headers=fault.headers)
