"""The HTTPS server every REST emulator runs on: threaded, loopback, test-CA TLS."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import parse_qs, urlsplit

from connector_sandbox.tls import sandbox_ca


class Request:
    """What a route handler sees of one HTTP request."""

    def __init__(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> None:
        parts = urlsplit(raw_path)
        self.method = method
        self.target = raw_path  # as sent on the request line: path and query, encoded
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def header_bytes(self) -> int:
        """The size of the request line's target and the header lines, as sent."""
        return len(self.target) + sum(len(k) + len(v) + 4 for k, v in self.headers.items())


RESET = 0  # the status of a Response that is no answer: the connection is reset


class Response:
    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        if raw is not None:
            self.payload = raw
        elif body is None:
            self.payload = b""
        else:
            self.payload = json.dumps(body).encode()
        self.headers.setdefault("Content-Type", content_type)


Handler = Callable[[Request], Response]


class EmulatorServer:
    """Serves `handle(request) -> Response` over HTTPS on 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, handle: Handler, port: int = 0) -> None:
        self._handle = handle
        # Seconds added to every request, as a remote API's round trip (benchmarks/sync.py).
        self.latency = 0.0
        handler_class = _make_handler_class(handle, lambda: self.latency)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler_class)
        self._httpd.daemon_threads = True
        ctx = sandbox_ca().server_context()
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Serving(Protocol):
    latency: float

    def start(self) -> object: ...

    def stop(self) -> None: ...


class Served:
    """Lifecycle shared by every emulator, REST or gRPC: `_server` serves, the subclass
    handles."""

    _server: _Serving

    @property
    def latency(self) -> float:
        """Seconds each request waits before it is handled (0: none)."""
        return self._server.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._server.latency = seconds

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServedEmulator(Served):
    """A REST emulator on its `EmulatorServer`."""

    _server: EmulatorServer

    @property
    def url(self) -> str:
        return self._server.base_url


def _make_handler_class(
    handle: Handler, latency: Callable[[], float]
) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(self.command, self.path, dict(self.headers.items()), body)
            if (delay := latency()) > 0:
                time.sleep(delay)  # each request on its own thread: concurrent ones overlap
            try:
                response = handle(request)
            except Exception as exc:  # an emulator bug must show, not hang the client
                response = Response(500, {"error": f"emulator error: {exc!r}"})
            if response.status == RESET:
                # A connection reset: no answer at all, the socket closed under the client.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.payload)))
            self.end_headers()
            self.wfile.write(response.payload)

        do_GET = _serve
        do_POST = _serve
        do_PATCH = _serve
        do_PUT = _serve
        do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep test and demo output clean

    return _Handler
