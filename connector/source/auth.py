"""Log in to Salesforce and hand back a ready simple-salesforce client.

simple-salesforce's own login always posts to `{domain}.salesforce.com`, so a
configurable login URL (My Domain, sandboxes, an emulator) means posting the
OAuth grant ourselves and giving the client the returned session (API-NOTES §5).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import requests
from simple_salesforce.api import Salesforce

from connector.errors import ConfigError, SourceError
from connector.http import pinned_session
from connector.retry import RetryableError, call_with_retries
from connector.settings import SalesforceSettings


def connect(settings: SalesforceSettings) -> Salesforce:
    session = pinned_session(settings.ca_bundle, settings.timeout_seconds)
    if settings.session_id and settings.instance_url:
        instance_url, token = settings.instance_url, settings.session_id.get_secret_value()
    elif settings.private_key_file is not None:
        instance_url, token = _jwt_grant(settings, session)
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
    return _post_grant(settings, session, form)


_LOGIN_HINT = (
    "check CONNECTOR_SALESFORCE__USERNAME, __PASSWORD and __SECURITY_TOKEN (a password reset "
    "issues a new token), the connected app's __CLIENT_ID and __CLIENT_SECRET, and __LOGIN_URL"
)
_JWT_HINT = (
    "check that CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE is the key of the certificate uploaded to "
    "the connected app, __CLIENT_ID is its consumer key, __USERNAME is pre-authorised for it, and "
    "__LOGIN_URL is https://login.salesforce.com, https://test.salesforce.com or your My Domain"
)


def _post_grant(
    settings: SalesforceSettings,
    session: requests.Session,
    form: dict[str, str],
    hint: str = _LOGIN_HINT,
) -> tuple[str, str]:
    url = f"{settings.login_url}/services/oauth2/token"

    def post() -> requests.Response:
        try:
            response = session.post(url, data=form, timeout=settings.timeout_seconds)
        except requests.RequestException as exc:
            raise RetryableError(f"cannot reach it ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise RetryableError(f"it answered {response.status_code}")
        return response

    try:
        response = call_with_retries(post, attempts=3, max_wait=10.0, deadline=60.0)
    except RetryableError as exc:
        raise SourceError(
            f"Salesforce login at {settings.login_url} failed after retries: {exc}; rerun later",
            retryable=True,
        ) from None
    return _read_grant(response, settings.login_url, hint)


def _jwt_grant(settings: SalesforceSettings, session: requests.Session) -> tuple[str, str]:
    """OAuth 2.0 JWT bearer flow: the recommended login for an unattended worker."""
    assert settings.private_key_file is not None
    if not (settings.username and settings.client_id):
        raise ConfigError(
            "JWT login needs CONNECTOR_SALESFORCE__USERNAME and __CLIENT_ID (the connected app's "
            "consumer key) beside __PRIVATE_KEY_FILE"
        )
    try:
        key = settings.private_key_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE cannot be read: {exc.strerror}"
        ) from None
    claims = {
        "iss": settings.client_id,
        "sub": settings.username,
        "aud": settings.login_url,
        "exp": int(time.time()) + 180,
    }
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": _sign(claims, key),
    }
    return _post_grant(settings, session, form, _JWT_HINT)


def _sign(claims: dict[str, object], key: str) -> str:
    try:
        return jwt.encode(claims, key, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError):
        # Never the key's text in the message: only that it is not a usable RSA key.
        raise ConfigError(
            "CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE is not an unencrypted PEM RSA private key"
        ) from None


# OAuth 2.0 answers a refused grant or client with 400 or 401 (RFC 6749 section 5.2); 403
# is an org's policy (IP ranges, a blocked user), 404 a login URL with no token endpoint.
_REFUSED = frozenset({400, 401, 403, 404})


def _read_grant(response: requests.Response, login_url: str, hint: str) -> tuple[str, str]:
    body = _json_object(response)  # {} for a proxy's HTML page, a list or an empty body
    if response.status_code == 200 and not {"instance_url", "access_token"} <= body.keys():
        # Not Salesforce's answer (a proxy's page, another service): the URL is to fix.
        raise ConfigError(
            f"Salesforce login at {login_url} answered 200 without a session "
            f"({response.headers.get('Content-Type', 'no content type')}): check "
            "CONNECTOR_SALESFORCE__LOGIN_URL points at the org's login or My Domain URL"
        )
    if response.status_code != 200:
        # Salesforce's error codes name the problem without echoing credentials.
        reason = (
            f"{body.get('error', response.status_code)}"
            f" ({body.get('error_description', 'no description')})"
        )
        if response.status_code in _REFUSED:
            # The login itself was refused (invalid_grant, invalid_client, ...): trying again
            # with the same settings fails the same way, so it is theirs to fix (exit 2).
            raise ConfigError(f"Salesforce login at {login_url} refused: {reason}; {hint}")
        raise SourceError(
            f"Salesforce login at {login_url} failed: {reason}; {hint}",
            retryable=response.status_code >= 500,
        )
    return str(body["instance_url"]).rstrip("/"), str(body["access_token"])


def _json_object(response: requests.Response) -> dict[str, Any]:
    """The JSON object of an answer, or {} for an HTML page, a list or an empty body."""
    try:
        body = response.json() if response.content else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
