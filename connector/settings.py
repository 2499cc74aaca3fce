"""Configuration from the environment (prefix CONNECTOR_, nested with "__") and `.env`.

Every setting is listed in `.env.example`. Secrets are `SecretStr`, so they
print as `**********`. A bad value fails with the variable's name and what is
wrong with it (`load_settings`), never with the value itself.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.errors import ConfigError

ENV_PREFIX = "CONNECTOR_"


class SalesforceSettings(BaseModel):
    login_url: str = "https://login.salesforce.com"
    instance_url: str = ""
    session_id: SecretStr | None = None
    username: str = ""
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    client_id: str = ""
    client_secret: SecretStr | None = None
    private_key_file: Path | None = None
    api_version: str = "62.0"
    ca_bundle: Path | None = None
    # A first run reads from start_date, else backfill_days ago (90: the Google Ads click lookback).
    start_date: date | None = None
    backfill_days: int = Field(default=90, ge=1, le=3650)
    overlap_seconds: int = Field(default=300, ge=0, le=86_400)
    # Stop pulling (cursor kept) once this share of the org's daily API calls is used.
    max_api_share: float = Field(default=0.8, gt=0, le=1)
    # A first run with more history rows than this reads them through Bulk API 2.0.
    bulk_threshold: int = Field(default=20_000, ge=0)
    timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("start_date", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("login_url", "instance_url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if value and not value.startswith("https://"):
            raise ValueError("must start with https://")
        return value.rstrip("/")


class GoogleAdsSettings(BaseModel):
    operating_account_id: str = ""
    login_account_id: str = ""
    datamanager_endpoint: str = "https://datamanager.googleapis.com"
    datamanager_ca_bundle: Path | None = None
    api_endpoint: str = "googleads.googleapis.com"
    api_ca_bundle: Path | None = None
    developer_token: SecretStr | None = None
    credentials_file: Path | None = None
    anonymous_credentials: bool = False
    # "ads_api": the legacy Google Ads API upload path, for developer tokens still allowlisted.
    upload_api: Literal["datamanager", "ads_api"] = "datamanager"
    default_phone_region: str = "US"
    batch_size: int = Field(default=2000, ge=1, le=2000)
    timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("operating_account_id", "login_account_id")
    @classmethod
    def _digits(cls, value: str) -> str:
        value = value.replace("-", "")
        if value and not value.isdigit():
            raise ValueError("must be a Google Ads customer id: 10 digits, dashes allowed")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.operating_account_id)


class GA4Settings(BaseModel):
    measurement_id: str = ""
    api_secret: SecretStr | None = None
    mp_base_url: str = "https://www.google-analytics.com"
    ca_bundle: Path | None = None
    property_id: str = ""
    data_api_endpoint: str = "analyticsdata.googleapis.com"
    data_api_ca_bundle: Path | None = None
    credentials_file: Path | None = None
    anonymous_credentials: bool = False
    max_concurrency: int = Field(default=8, ge=1, le=64)
    timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("measurement_id")
    @classmethod
    def _measurement_id(cls, value: str) -> str:
        if value and not value.startswith("G-"):
            raise ValueError("must be a GA4 measurement id like G-ABC123")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.measurement_id)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    state_url: str = "sqlite:///state/connector.db"
    mapping_path: Path = Path("mappings/salesforce.yaml")
    log_format: Literal["auto", "text", "json"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Prometheus textfile metrics written after each run (node-exporter's textfile collector).
    metrics_file: Path | None = None
    salesforce: SalesforceSettings = SalesforceSettings()
    google_ads: GoogleAdsSettings = GoogleAdsSettings()
    ga4: GA4Settings = GA4Settings()

    def secrets(self) -> list[str]:
        """Every secret value set, so logs and errors can be scrubbed of them."""
        values = [
            self.salesforce.session_id,
            self.salesforce.password,
            self.salesforce.security_token,
            self.salesforce.client_secret,
            self.google_ads.developer_token,
            self.ga4.api_secret,
        ]
        return [v.get_secret_value() for v in values if v and v.get_secret_value()]

    def require_for_sync(self) -> None:
        """Fail with the names of the settings a sync needs but lacks."""
        missing = [name for name, ok in self._requirements() if not ok]
        if missing:
            raise ConfigError(
                "missing settings: "
                + ", ".join(missing)
                + " (see .env.example for what each one means)"
            )

    def _requirements(self) -> list[tuple[str, bool]]:
        sf = self.salesforce
        has_session = bool(sf.session_id and sf.instance_url)
        has_password = bool(sf.username and sf.password and sf.client_id and sf.client_secret)
        has_password = has_password or bool(sf.username and sf.client_id and sf.private_key_file)
        reqs = [
            (
                env_name("salesforce", "username")
                + " + PASSWORD + CLIENT_ID + CLIENT_SECRET, or USERNAME + CLIENT_ID + "
                "PRIVATE_KEY_FILE (JWT), or SESSION_ID + INSTANCE_URL",
                has_session or has_password,
            ),
            (
                env_name("google_ads", "operating_account_id")
                + " or "
                + env_name("ga4", "measurement_id"),
                self.google_ads.enabled or self.ga4.enabled,
            ),
        ]
        if self.ga4.enabled:
            reqs.append((env_name("ga4", "api_secret"), self.ga4.api_secret is not None))
        return reqs


def env_name(*path: str) -> str:
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def load_settings(**overrides: object) -> Settings:
    """Read settings; turn a validation failure into a ConfigError naming each variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"{env_name(*(str(p) for p in err['loc']))}: {err['msg']}" for err in exc.errors()
        ]
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None
