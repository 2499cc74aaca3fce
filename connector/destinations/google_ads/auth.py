"""Credentials for the Google Ads side: the Data Manager API and the Google Ads API."""

from __future__ import annotations

from google.auth.credentials import Credentials

from connector.google_api import google_credentials
from connector.settings import GoogleAdsSettings

ADWORDS_SCOPE = "https://www.googleapis.com/auth/adwords"


def credentials(settings: GoogleAdsSettings, scope: str) -> Credentials:
    return google_credentials(
        anonymous=settings.anonymous_credentials,
        credentials_file=settings.credentials_file,
        scope=scope,
        group="google_ads",
    )
