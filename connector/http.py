"""TLS trust for the remote APIs: a CA bundle setting that really wins.

requests lets `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` override a session's
`verify` (API-NOTES §6), so a configured bundle (a corporate proxy's CA, the
sandbox's test CA) would be silently ignored on machines that preset them.
These helpers pin the bundle while keeping the environment's proxy settings.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.request import getproxies

import requests


def pin_ca(session: requests.Session, ca_bundle: Path | None) -> requests.Session:
    """Make `session` verify against `ca_bundle` whatever the environment says."""
    if ca_bundle is not None:
        session.proxies.update(getproxies())
        session.trust_env = False
        session.verify = str(ca_bundle)
    return session


class TimeoutSession(requests.Session):
    """A session whose every request has a timeout: simple-salesforce sets none itself, so a
    hung query would otherwise be waited on forever."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def pinned_session(ca_bundle: Path | None, timeout: float | None = None) -> requests.Session:
    session = TimeoutSession(timeout) if timeout is not None else requests.Session()
    return pin_ca(session, ca_bundle)


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """An SSL context for httpx: the bundle if set, else the system's trust store."""
    if ca_bundle is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(ca_bundle))
