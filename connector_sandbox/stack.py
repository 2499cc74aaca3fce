"""All emulators together, and the settings that point the connector at them.

Used by `connector demo` and by the tests: the connector runs its normal code
path; only endpoints, CA bundles and credentials differ from production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from connector.settings import Settings
from connector_sandbox.datamanager import DataManagerEmulator
from connector_sandbox.ga4 import GA4Emulator
from connector_sandbox.google_ads_api import (
    EmulatedAction,
    EmulatedCustomer,
    GoogleAdsApiEmulator,
)
from connector_sandbox.salesforce import SalesforceEmulator
from connector_sandbox.tls import sandbox_ca, trust_test_ca_for_grpc

OPERATING_ACCOUNT = "1234567890"
ACCOUNT_TIME_ZONE = "Europe/Berlin"
# The conversion actions of mappings/salesforce.yaml, as the Google Ads API emulator knows them.
CONVERSION_ACTIONS = (
    EmulatedAction(700000001, "Marketing qualified lead"),
    EmulatedAction(700000002, "Sales qualified lead"),
    EmulatedAction(700000003, "Opportunity"),
    EmulatedAction(700000004, "Won deal"),
)
MEASUREMENT_ID = "G-DEMO000001"
# Sandbox-only values: they unlock the local emulators and nothing else.
SF_PASSWORD = "demo-password"  # noqa: S105
SF_TOKEN = "demo-token"  # noqa: S105
SF_CLIENT_SECRET = "demo-client-secret"  # noqa: S105
GA4_SECRET = "demo-api-secret"  # noqa: S105


class SandboxSettings(Settings):
    """Settings from the values given and the defaults only. A plain Settings also merges
    CONNECTOR_* variables and ./.env into every field left unset, so a demo started in a shell
    set up for a real org would send to it, or fail on a value the demo never uses."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@dataclass
class Sandbox:
    tables: dict[str, list[dict[str, Any]]]
    salesforce: SalesforceEmulator = field(init=False)
    datamanager: DataManagerEmulator = field(init=False)
    ga4: GA4Emulator = field(init=False)
    google_ads_api: GoogleAdsApiEmulator = field(init=False)

    def __post_init__(self) -> None:
        trust_test_ca_for_grpc()
        self.salesforce = SalesforceEmulator(
            self.tables,
            password=SF_PASSWORD,
            security_token=SF_TOKEN,
            client_secret=SF_CLIENT_SECRET,
        )
        self.datamanager = DataManagerEmulator()
        self.ga4 = GA4Emulator(measurement_id=MEASUREMENT_ID, api_secret=GA4_SECRET)
        customer = EmulatedCustomer(OPERATING_ACCOUNT, time_zone=ACCOUNT_TIME_ZONE)
        self.google_ads_api = GoogleAdsApiEmulator([customer], CONVERSION_ACTIONS)

    def __enter__(self) -> Sandbox:
        self.salesforce.start()
        self.datamanager.start()
        self.ga4.start()
        self.google_ads_api.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for emulator in (self.salesforce, self.datamanager, self.ga4, self.google_ads_api):
            emulator.stop()

    def settings(
        self,
        state_url: str,
        mapping_path: Path,
        *,
        upload_api: Literal["datamanager", "ads_api"] = "datamanager",
        **extra: Any,
    ) -> Settings:
        """Settings for these emulators; `upload_api="ads_api"` uploads through the Google Ads
        API emulator (its endpoint is set either way: the account checks and conversion action
        lookups read through it on both paths, with no developer token)."""
        ca = sandbox_ca().bundle_path
        values: dict[str, Any] = {
            "state_url": state_url,
            "mapping_path": mapping_path,
            "salesforce": {
                "login_url": self.salesforce.url,
                "username": "demo@example.com",
                "password": SF_PASSWORD,
                "security_token": SF_TOKEN,
                "client_id": "demo-client-id",
                "client_secret": SF_CLIENT_SECRET,
                "ca_bundle": ca,
            },
            "google_ads": {
                "operating_account_id": OPERATING_ACCOUNT,
                # gRPC too, with the CA pinned on its channel (not the process-wide roots).
                "datamanager_endpoint": self.datamanager.endpoint,
                "datamanager_ca_bundle": ca,
                "anonymous_credentials": True,
                "default_phone_region": "DE",
                "upload_api": upload_api,
                # gRPC reads its CA roots once per process: trust_test_ca_for_grpc() above.
                "api_endpoint": self.google_ads_api.endpoint,
                "api_ca_bundle": ca,
            },
            "ga4": {
                "measurement_id": MEASUREMENT_ID,
                "api_secret": GA4_SECRET,
                "mp_base_url": self.ga4.url,
                "ca_bundle": ca,
            },
        }
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
        # Never from the environment or .env: a demo never picks up real credentials.
        return SandboxSettings(**values)
