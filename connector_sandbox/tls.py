"""A throwaway certificate authority for the local emulators.

The real client libraries only speak TLS to their APIs, so the emulators
serve HTTPS / gRPC-over-TLS on loopback with certificates from a test CA made
fresh per process (API-NOTES §6). gRPC reads its root file once per process,
which is why there is exactly one CA per process.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import trustme


@dataclass(frozen=True)
class SandboxCA:
    """The process-wide test CA and a server certificate for loopback."""

    ca: trustme.CA
    server_cert: trustme.LeafCert
    bundle_path: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.bundle_path))

    def private_key_pem(self) -> bytes:
        return self.server_cert.private_key_pem.bytes()

    def cert_chain_pem(self) -> bytes:
        return b"".join(blob.bytes() for blob in self.server_cert.cert_chain_pems)


@lru_cache(maxsize=1)
def sandbox_ca() -> SandboxCA:
    ca = trustme.CA(organization_name="connector sandbox test CA")
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    directory = Path(tempfile.mkdtemp(prefix="connector-sandbox-ca-"))
    bundle = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return SandboxCA(ca=ca, server_cert=cert, bundle_path=bundle)


def trust_test_ca_for_grpc() -> Path:
    """Point gRPC at the test CA; must run before the first TLS channel opens."""
    bundle = sandbox_ca().bundle_path
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(bundle)
    return bundle
