"""The gRPC server every gRPC emulator runs on: loopback, test-CA TLS, generic handlers.

google-ads and google-ads-datamanager ship no servicer classes (API-NOTES §6), so an
emulator hands in `grpc.method_handlers_generic_handler(...)` built on the library's own
message types. `latency` delays every call, as the REST emulators' `EmulatorServer` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc

from connector_sandbox.server import Served
from connector_sandbox.tls import sandbox_ca

# Calls served at once: latency sleeps hold a worker, and a sync keeps several in the air.
MAX_WORKERS = 16


class GrpcServer:
    """Serves `handlers` over gRPC with TLS on 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, handlers: Sequence[grpc.GenericRpcHandler], port: int = 0) -> None:
        # Seconds added to every call, as a remote API's round trip (benchmarks/sync.py).
        self.latency = 0.0
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_WORKERS),
            interceptors=[_Latency(lambda: self.latency)],
        )
        self._server.add_generic_rpc_handlers(tuple(handlers))
        ca = sandbox_ca()
        credentials = grpc.ssl_server_credentials([(ca.private_key_pem(), ca.cert_chain_pem())])
        self.port = int(self._server.add_secure_port(f"127.0.0.1:{port}", credentials))

    @property
    def endpoint(self) -> str:
        """The client's target, host:port (the test certificate covers 127.0.0.1)."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)


class ServedGrpcEmulator(Served):
    """A gRPC emulator on its `GrpcServer`."""

    _server: GrpcServer

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    @property
    def port(self) -> int:
        return self._server.port


class _Latency(grpc.ServerInterceptor):  # type: ignore[misc]
    """Sleeps `latency()` seconds before each call's behaviour, on that call's worker thread,
    so that concurrent calls overlap as they would on a remote API."""

    def __init__(self, latency: Callable[[], float]) -> None:
        self._latency = latency

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._delayed(handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._delayed(handler.unary_stream))
        return handler

    def _delayed(self, behaviour: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def delayed(request: Any, context: Any) -> Any:
            if (delay := self._latency()) > 0:
                time.sleep(delay)
            return behaviour(request, context)

        return delayed
