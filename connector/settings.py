"""Configuration from the environment (prefix CONNECTOR_, nested with "__") and `.env`.

Every setting is listed in `.env.example`. Secrets are `SecretStr`, so they
print as `**********`. A bad value fails with the variable's name and what is
wrong with it (`load_settings`), never with a secret value.
"""

from __future__ import annotations

import difflib
import os
import ssl
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from connector.errors import ConfigError

ENV_PREFIX = "CONNECTOR_"
# Values .env.example ships with: copied unchanged they can never work.
PLACEHOLDERS = frozenset(
    {"change-me", "G-XXXXXXXXXX", "integration@example.com", "000-000-0000", "0000000000"}
)


def _https_url(value: str) -> str:
    """A REST endpoint: only https://, so no secret or token ever goes out in clear."""
    if value and not value.lower().startswith("https://"):
        raise ValueError("must start with https:// (secrets and tokens never go over plain HTTP)")
    return value.rstrip("/")


def _grpc_target(value: str) -> str:
    """A gRPC endpoint is host[:port]; the client always opens TLS to it."""
    if "://" in value or "/" in value or not value.strip():
        raise ValueError("must be host or host:port without a scheme (gRPC always uses TLS)")
    return value


def grpc_target(endpoint: str) -> str:
    """The gRPC target (`host:port`, 443 by default) of an endpoint setting that may be an
    https:// URL, as .env files written for the REST client have it, or a bare host[:port]."""
    value = endpoint.strip().rstrip("/")
    scheme, _, _ = value.rpartition("://")
    if scheme and scheme.lower() != "https":
        raise ValueError(
            "must be https://host[:port] or host[:port] (secrets and tokens never go over "
            "plain HTTP: the gRPC channel always uses TLS)"
        )
    parts = urlsplit(value if scheme else f"https://{value}")
    try:
        port = 443 if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not port:
        raise ValueError("has a port that is not a number from 1 to 65535")
    if not parts.hostname or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("must be https://host[:port] or host[:port], without a path")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def _grpc_endpoint(value: str) -> str:
    grpc_target(value)  # only checked here: the client derives its target when it connects
    return value.strip().rstrip("/")


def _rest_host(value: str) -> str:
    """A Google REST endpoint: https://host[:port], or a bare host the client reaches by https."""
    if "://" in value:
        return _https_url(value)
    if "/" in value or not value.strip():
        raise ValueError("must be https://host[:port] or a bare host[:port]")
    return value


def _readable_file(value: Path | None) -> Path | None:
    # Checked at load: a missing CA bundle or key would otherwise surface mid-run as a traceback.
    if value is not None and not value.is_file():
        what = "is a directory" if value.is_dir() else "does not exist"
        raise ValueError(f"{value} {what}: give the path of a readable file, or leave it empty")
    return value


def _ca_bundle(value: Path | None) -> Path | None:
    """A CA bundle that exists and holds PEM certificates (else TLS fails mid-run)."""
    if _readable_file(value) is None:
        return None
    try:
        ssl.create_default_context(cafile=str(value))
    except (ssl.SSLError, OSError, ValueError):
        raise ValueError(f"{value} is not a PEM bundle of CA certificates") from None
    return value


def _choice(value: object) -> object:
    # Enum-like settings forgive case: LOG_LEVEL=info, UPLOAD_API=Ads_API.
    return value.lower() if isinstance(value, str) else value


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
    # A read of more history rows than this (a backfill, a catch-up) goes through Bulk API 2.0.
    bulk_threshold: int = Field(default=20_000, ge=0)
    timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("start_date", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("login_url", "instance_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return _https_url(value)

    @field_validator("private_key_file")
    @classmethod
    def _file(cls, value: Path | None) -> Path | None:
        return _readable_file(value)

    @field_validator("ca_bundle")
    @classmethod
    def _ca(cls, value: Path | None) -> Path | None:
        return _ca_bundle(value)


class GoogleAdsSettings(BaseModel):
    operating_account_id: str = ""
    login_account_id: str = ""
    datamanager_endpoint: str = "https://datamanager.googleapis.com"
    datamanager_ca_bundle: Path | None = None
    api_endpoint: str = "googleads.googleapis.com"
    api_ca_bundle: Path | None = None
    # Sunset by Google in 2026 and ignored: sent only if set, needed for nothing.
    developer_token: SecretStr | None = None
    credentials_file: Path | None = None
    anonymous_credentials: bool = False
    # "ads_api": the legacy Google Ads API upload path, for allowlisted Cloud projects only.
    upload_api: Literal["datamanager", "ads_api"] = "datamanager"
    default_phone_region: str = "US"
    batch_size: int = Field(default=2000, ge=1, le=2000)
    timeout_seconds: float = Field(default=60.0, gt=0)
    # Data Manager requests in the air at once, and started per minute at most: its quota
    # is 300 requests a minute per project (API-NOTES), so the default stays well under.
    max_concurrency: int = Field(default=4, ge=1, le=16)
    requests_per_minute: int = Field(default=240, ge=1, le=300)

    @field_validator("operating_account_id", "login_account_id")
    @classmethod
    def _digits(cls, value: str) -> str:
        # Google rejects a malformed id per request, not per row: refuse it before any upload.
        value = value.replace("-", "").strip()
        if value and not (value.isdigit() and len(value) == 10):
            raise ValueError("must be a Google Ads customer id: 10 digits, dashes allowed")
        return value

    @field_validator("datamanager_endpoint")
    @classmethod
    def _datamanager(cls, value: str) -> str:
        return _grpc_endpoint(value)

    @field_validator("api_endpoint")
    @classmethod
    def _grpc(cls, value: str) -> str:
        return _grpc_target(value)

    @field_validator("credentials_file")
    @classmethod
    def _file(cls, value: Path | None) -> Path | None:
        return _readable_file(value)

    @field_validator("datamanager_ca_bundle", "api_ca_bundle")
    @classmethod
    def _ca(cls, value: Path | None) -> Path | None:
        return _ca_bundle(value)

    @field_validator("upload_api", mode="before")
    @classmethod
    def _upload_api(cls, value: object) -> object:
        return _choice(value)

    @property
    def enabled(self) -> bool:
        return bool(self.operating_account_id)


class GA4Settings(BaseModel):
    measurement_id: str = ""
    # "datamanager": events through the Data Manager API to property_id, with the OAuth
    # credentials below instead of an api_secret (validated by Google, not silently dropped).
    upload_api: Literal["measurement_protocol", "datamanager"] = "measurement_protocol"
    datamanager_endpoint: str = "https://datamanager.googleapis.com"
    datamanager_ca_bundle: Path | None = None
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
    # GA4 has no dedup: events in flight when a run stopped (or whose request timed out after
    # sending) are sent again and reported as "may be duplicated"; false marks them unknown.
    resend_in_flight: bool = True

    @field_validator("measurement_id")
    @classmethod
    def _measurement_id(cls, value: str) -> str:
        if value and not value.startswith("G-"):
            raise ValueError("must be a GA4 measurement id like G-ABC123")
        return value

    @field_validator("mp_base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return _https_url(value or "missing")

    @field_validator("datamanager_endpoint")
    @classmethod
    def _datamanager(cls, value: str) -> str:
        return _grpc_endpoint(value)

    @field_validator("data_api_endpoint")
    @classmethod
    def _rest(cls, value: str) -> str:
        return _rest_host(value)

    @field_validator("credentials_file")
    @classmethod
    def _file(cls, value: Path | None) -> Path | None:
        return _readable_file(value)

    @field_validator("ca_bundle", "data_api_ca_bundle")
    @classmethod
    def _ca(cls, value: Path | None) -> Path | None:
        return _ca_bundle(value)

    @property
    def enabled(self) -> bool:
        return bool(self.measurement_id)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        # A copied .env.example has empty values: empty means unset, never the path ".".
        env_ignore_empty=True,
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
    # A claimed delivery is this worker's for this long; after that (its worker died) it is
    # due again. Longer than one page of requests takes, retries included.
    lease_seconds: int = Field(default=900, ge=1, le=86_400)
    # A row still failing transiently after this many attempts becomes a dead letter.
    max_attempts: int = Field(default=10, ge=1, le=1000)
    # Transient failures retried per run, over every API: past it a failure is not retried.
    retry_budget: int = Field(default=500, ge=0)

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return _choice(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def placeholders(self) -> list[str]:
        """The settings still holding a value copied from .env.example (`change-me`, ...)."""
        found = []
        for path, value in _leaves(self):
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(text, str) and text in PLACEHOLDERS:
                found.append(env_name(*path))
        return found

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
        set_values = [v.get_secret_value() for v in values if v and v.get_secret_value()]
        return set_values + self._state_url_passwords()

    def _state_url_passwords(self) -> list[str]:
        # A PostgreSQL state URL may carry a password (user:pw@, ?password=).
        from connector.state_url import url_passwords

        return url_passwords(self.state_url)

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
        if self.ga4.enabled and self.ga4.upload_api == "measurement_protocol":
            reqs.append((env_name("ga4", "api_secret"), self.ga4.api_secret is not None))
        elif self.ga4.enabled:
            name = env_name("ga4", "property_id") + " (with GA4 upload_api datamanager)"
            reqs.append((name, bool(self.ga4.property_id)))
        return reqs


def env_name(*path: str) -> str:
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def _leaves(model: BaseModel, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, (*path, name))
        else:
            yield (*path, name), value


def known_env_names() -> frozenset[str]:
    """Every CONNECTOR_ variable a setting reads: each field, and each group as a whole
    (CONNECTOR_GA4 takes the group as a JSON object)."""
    paths = [path for path, _ in _leaves(Settings.model_construct())]
    return frozenset(env_name(*path[:end]) for path in paths for end in range(1, len(path) + 1))


def unknown_env_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """CONNECTOR_ variables no setting reads (from the environment and .env), each with the
    nearest real name: a typo like __USRENAME is otherwise silently ignored."""
    names = set(os.environ if environ is None else environ)
    if environ is None:
        names |= _dotenv_names(Path(".env"))
    known = known_env_names()
    problems = []
    for name in sorted(n for n in names if n.upper().startswith(ENV_PREFIX)):
        # CONNECTOR_TEST_*: the test suite's own variables (the PostgreSQL URL), not settings.
        if name.upper() in known or name.upper().startswith(ENV_PREFIX + "TEST_"):
            continue
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"{name} is not a setting{hint}")
    return problems


def _dotenv_names(path: Path) -> set[str]:
    from dotenv import dotenv_values

    return set(dotenv_values(path)) if path.is_file() else set()


def load_settings(**overrides: object) -> Settings:
    """Read settings; turn a validation failure into a ConfigError naming each variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:  # a group given as JSON (CONNECTOR_GA4=...) that is not
        raise ConfigError(
            f"invalid settings: {exc}; set a group's fields one by one "
            "(CONNECTOR_GA4__MEASUREMENT_ID=...) or as a JSON object"
        ) from None
    except ValidationError as exc:
        problems = [
            f"{env_name(*(str(p) for p in err['loc']))}: {err['msg']}" for err in exc.errors()
        ]
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None
