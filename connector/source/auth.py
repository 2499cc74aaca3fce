"""Log in to Salesforce and hand back a ready simple-salesforce client.

simple-salesforce's own login always posts to `{domain}.salesforce.com`, so a
configurable login URL (My Domain, sandboxes, an emulator) means posting the
OAuth grant ourselves and giving the client the returned session (API-NOTES §5).
"""

from __future__ import annotations

from typing import Any

import requests
from simple_salesforce.api import Salesforce

from connector.errors import ConfigError, SourceError
from connector.http import pinned_session
from connector.settings import SalesforceSettings


def connect(settings: SalesforceSettings) -> Salesforce:
    session = pinned_session(settings.ca_bundle)
    if settings.session_id and settings.instance_url:
        instance_url, token = settings.instance_url, settings.session_id.get_secret_value()
    else:
        instance_url, token = _password_grant(settings, session)
    return Salesforce(
        instance_url=instance_url,
        session_id=token,
        session=session,
        version=settings.api_version,
    )


def _password_grant(settings: SalesforceSettings, session: requests.Session) -> tuple[str, str]:
    if not (settings.username and settings.password and settings.client_secret):
        raise ConfigError(
            "Salesforce login needs CONNECTOR_SALESFORCE__USERNAME, __PASSWORD, __CLIENT_ID and "
            "__CLIENT_SECRET (or __SESSION_ID with __INSTANCE_URL)"
        )
    token = settings.security_token.get_secret_value() if settings.security_token else ""
    form = {
        "grant_type": "password",
        "client_id": settings.client_id,
        "client_secret": settings.client_secret.get_secret_value(),
        "username": settings.username,
        "password": settings.password.get_secret_value() + token,
    }
    url = f"{settings.login_url}/services/oauth2/token"
    try:
        response = session.post(url, data=form, timeout=settings.timeout_seconds)
    except requests.RequestException as exc:
        raise SourceError(
            f"cannot reach the Salesforce login URL {settings.login_url}: {type(exc).__name__}",
            retryable=True,
        ) from None
    return _read_grant(response, settings.login_url)


def _read_grant(response: requests.Response, login_url: str) -> tuple[str, str]:
    body: dict[str, Any] = response.json() if response.content else {}
    if response.status_code != 200:
        # Salesforce's error codes name the problem without echoing credentials.
        raise SourceError(
            f"Salesforce login at {login_url} failed: {body.get('error', response.status_code)}"
            f" ({body.get('error_description', 'no description')}); check the username, "
            "password + security token and the connected app's client id and secret",
            retryable=response.status_code >= 500,
        )
    return str(body["instance_url"]).rstrip("/"), str(body["access_token"])
