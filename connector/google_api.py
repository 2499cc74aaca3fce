"""What every Google API client here shares: credentials, and which errors are transient."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials, Credentials

from connector.errors import ConfigError
from connector.settings import env_name

# Google API errors that mean "try again shortly" (API-NOTES §1), for gRPC clients, to whom
# the channel's own failures arrive as these too: a refused, reset or lost connection as
# ServiceUnavailable (UNAVAILABLE), the call's deadline as DeadlineExceeded, a reset stream as
# InternalServerError (INTERNAL)...
GOOGLE_TRANSIENT: tuple[type[Exception], ...] = (
    gexc.TooManyRequests,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    gexc.GatewayTimeout,
    gexc.DeadlineExceeded,
)
# ...and for REST transports, whose connection failures surface as requests' own errors.
GOOGLE_REST_TRANSIENT: tuple[type[Exception], ...] = (
    *GOOGLE_TRANSIENT,
    requests.ConnectionError,
    requests.Timeout,
)


def google_credentials(
    *, anonymous: bool, credentials_file: Path | None, scope: str, group: str
) -> Credentials:
    """Credentials for a Google API client: anonymous, a service-account file, or ADC.

    `group` is the settings group (e.g. "ga4"), so errors name the variable to set.
    """
    if anonymous:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]  # emulators, proxies
    setting = env_name(group, "credentials_file")
    try:
        if credentials_file is not None:
            from google.oauth2 import service_account

            creds: Credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(credentials_file), scopes=[scope]
            )
            return creds
        import google.auth

        creds, _ = google.auth.default(scopes=[scope])
        return creds
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"Google credentials unusable: set {setting} to a service-account key file, "
            f"or configure Application Default Credentials ({type(exc).__name__})"
        ) from None
    except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError
        raise ConfigError(
            f"no Google credentials found: set {setting} or Application Default Credentials "
            f"({type(exc).__name__})"
        ) from None
