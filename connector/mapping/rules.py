"""The mapping file (`mappings/*.yaml`): which CRM stage becomes which event, where.

A mapping names the CRM fields to read (custom field names differ per org),
and for each CRM status (by API value, not label) the funnel stage it means,
the GA4 event to send and the Google Ads conversion action to credit, with
their value and currency rules. Loading validates everything up front, so a
typo fails the run before anything is pulled or sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from connector.errors import ConfigError
from connector.mapping.currency import is_currency

FUNNEL_STAGES = ("lead", "mql", "sql", "opportunity", "won", "lost", "disqualified")
_SOQL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
_GA4_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
Signal = Literal["click_id", "utm", "ga4", "lead_source"]  # attribution signals, see report


# history: the object's field history (exact change times; needs Field History Tracking).
# snapshot: records changed since the cursor (SystemModstamp), diffed against the last
# status the state store saw; the change time is the record's SystemModstamp.
def _lower(value: object) -> object:
    # Choices forgive case (`stage: MQL`, `mode: Snapshot`), as the settings' do.
    return value.lower() if isinstance(value, str) else value


ReadMode = Annotated[Literal["history", "snapshot"], BeforeValidator(_lower)]
Stage = Annotated[
    Literal["lead", "mql", "sql", "opportunity", "won", "lost", "disqualified"],
    BeforeValidator(_lower),
]


# Names GA4 collects itself or reserves (API-NOTES §3): an event sent under one is dropped.
# Kept here, not imported from destinations/ga4.py: that module pulls in httpx and the ledger,
# which `connector check` would then pay for at every start.
GA4_RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
GA4_RESERVED_EVENTS = frozenset(
    {
        "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
        "adunit_exposure", "app_background", "app_clear_data", "app_exception", "app_remove",
        "app_store_refund", "app_store_subscription_cancel", "app_store_subscription_convert",
        "app_store_subscription_renew", "app_uninstall", "app_update", "app_upgrade",
        "dynamic_link_app_open", "dynamic_link_app_update", "dynamic_link_first_open", "error",
        "first_open", "first_visit", "in_app_purchase", "notification_dismiss",
        "notification_foreground", "notification_open", "notification_receive", "os_update",
        "page_view", "screen_view", "session_start", "session_start_with_rollout",
        "user_engagement",
    }
)  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeadFields(_Strict):
    """CRM field API names for each role the connector understands."""

    email: str | None = "Email"
    phone: str | None = "Phone"
    gclid: str | None = None
    gbraid: str | None = None
    wbraid: str | None = None
    ga_client_id: str | None = None
    currency: str | None = None
    lead_source: str | None = "LeadSource"
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    consent_ad_user_data: str | None = None
    consent_ad_personalization: str | None = None

    @field_validator("*")
    @classmethod
    def _field_name(cls, value: str | None) -> str | None:
        # Field names go into SOQL: only plain API names, so nothing can be injected.
        if value is not None and not _SOQL_NAME.match(value):
            raise ValueError(f"{value!r} is not a Salesforce field API name")
        return value

    def selected(self) -> dict[str, str]:
        return {role: name for role, name in self.model_dump().items() if name}


class ConsentValues(_Strict):
    """The CRM values meaning granted / denied, matched without regard to case: a picklist's
    API values, or a checkbox's true / false (Salesforce sends it as a JSON boolean)."""

    granted: list[str] = Field(default_factory=lambda: ["Granted", "true", "Yes"])
    denied: list[str] = Field(default_factory=lambda: ["Denied", "false", "No"])

    @field_validator("granted", "denied", mode="before")
    @classmethod
    def _as_text(cls, values: object) -> object:
        # YAML reads `[true]` as a boolean: the checkbox value it means.
        if isinstance(values, list):
            return [_consent_text(v) if isinstance(v, bool) else v for v in values]
        return values

    @cached_property
    def _meanings(self) -> dict[str, bool]:
        # Read for every change: worked out once (a value in both lists means granted).
        denied = {v.casefold(): False for v in self.denied}
        return denied | {v.casefold(): True for v in self.granted}

    def read(self, raw: object) -> bool | None:
        return self._meanings.get(_consent_text(raw).casefold())


def _consent_text(raw: object) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw).strip() if raw is not None else ""


class Value(_Strict):
    """Conversion value: a fixed amount, or a CRM field, in a currency."""

    fixed: float | None = Field(default=None, ge=0)
    field: str | None = Field(default=None, pattern=_SOQL_NAME.pattern)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")  # overrides the lead's

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return None if value is None else _known_currency(value)


class GA4Target(_Strict):
    event: str
    value: Value | None = None

    @field_validator("event")
    @classmethod
    def _event_name(cls, value: str) -> str:
        if not _GA4_NAME.match(value):
            raise ValueError("GA4 event names are 1-40 letters, digits or _ starting with a letter")
        if value.startswith(GA4_RESERVED_PREFIXES) or value in GA4_RESERVED_EVENTS:
            # GA4 drops reserved events: every row would be rejected, so refuse the mapping.
            raise ValueError(
                f"{value!r} is reserved by GA4 (automatically collected events such as "
                "session_start or page_view, and names starting with ga_, google_ or "
                "firebase_): use a recommended lead event (generate_lead, qualify_lead, "
                "working_lead, close_convert_lead, ...) or a custom name"
            )
        return value


class GoogleAdsTarget(_Strict):
    conversion_action: str
    value: Value | None = None

    @field_validator("conversion_action")
    @classmethod
    def _action_id(cls, value: str) -> str:
        # An id, or a name looked up once per run (it goes into GAQL as an escaped literal).
        if not value.strip() or len(value) > 256 or not value.isprintable():
            raise ValueError("conversion_action must be the action's numeric id or its name")
        return value


class StageRule(_Strict):
    stage: Stage
    ga4: GA4Target | None = None
    google_ads: GoogleAdsTarget | None = None


class SourceSpec(_Strict):
    object: Literal["Lead"] = "Lead"
    history_object: Literal["LeadHistory"] = "LeadHistory"
    mode: ReadMode = "history"
    status_field: str = Field(default="Status", pattern=_SOQL_NAME.pattern)
    fields: LeadFields = LeadFields()
    consent_values: ConsentValues = ConsentValues()


class OpportunitySpec(_Strict):
    """Opportunity stages, attributed to the lead the opportunity was converted from.

    An opportunity no lead converted into (e.g. created from a contact) belongs to
    the lead that converted into its primary contact (`OpportunityContactRole` with
    IsPrimary). With no such lead it is still recorded, under its own id with the
    problem `no_source_lead`, and sent nowhere: without the lead there is no click
    id, consent or GA client id to send.
    """

    history_object: Literal["OpportunityFieldHistory"] = "OpportunityFieldHistory"
    mode: ReadMode = "history"
    stage_field: str = Field(default="StageName", pattern=_SOQL_NAME.pattern)
    amount_field: str = Field(default="Amount", pattern=_SOQL_NAME.pattern)
    currency_field: str | None = Field(default=None, pattern=_SOQL_NAME.pattern)
    stages: dict[str, StageRule] = Field(default_factory=dict)


class GA4Options(_Strict):
    """What GA4 gets besides the events: off unless the mapping says so."""

    # Hashed email / phone (as for Google Ads) in user_data, only with ad_user_data consent.
    user_data: bool = False
    # `lead_id`: the lead's id as GA4's user_id.
    user_id: Literal["lead_id"] | None = None


class Mapping(_Strict):
    version: Literal[1]
    source: SourceSpec = SourceSpec()
    default_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    ga4_too_old: Annotated[Literal["skip", "send_now"], BeforeValidator(_lower)] = "skip"
    ga4: GA4Options = GA4Options()
    # Strongest channel signal first; `connector report` attributes each lead by it.
    attribution_precedence: list[Signal] = ["click_id", "utm", "ga4", "lead_source"]
    stages: dict[str, StageRule]
    opportunity: OpportunitySpec | None = None

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return _known_currency(value)

    def rule_for(self, crm_status: str, *, opportunity: bool = False) -> StageRule | None:
        if opportunity:
            return self.opportunity.stages.get(crm_status) if self.opportunity else None
        return self.stages.get(crm_status)

    def rules(self) -> list[StageRule]:
        """Every stage rule: the lead statuses', then the opportunity stages'."""
        extra = list(self.opportunity.stages.values()) if self.opportunity else []
        return [*self.stages.values(), *extra]

    def google_ads_actions(self) -> frozenset[str]:
        """The conversion actions the mapping sends to (ids or names)."""
        return frozenset(r.google_ads.conversion_action for r in self.rules() if r.google_ads)

    def sends_identifiers(self) -> bool:
        """Whether hashed email or phone go out (enhanced conversions for leads)."""
        fields = self.source.fields
        return bool(fields.email or fields.phone)

    def lead_fields(self) -> dict[str, str]:
        """Key -> Lead field API name to read: the roles, plus fields that value rules name."""
        return {**self.source.fields.selected(), **_value_fields(self.stages.values())}

    def opportunity_fields(self) -> dict[str, str]:
        """Opportunity fields to read with each history row: amount, currency, value fields."""
        spec = self.opportunity
        if spec is None:
            return {}
        fields = {spec.amount_field: spec.amount_field, **_value_fields(spec.stages.values())}
        if spec.currency_field:
            fields[spec.currency_field] = spec.currency_field
        return fields


def _known_currency(code: str) -> str:
    if not is_currency(code):
        raise ValueError(
            f"{code!r} is not a currency we know: use an ISO 4217 code like EUR or USD"
        )
    return code


def _value_fields(rules: Iterable[StageRule]) -> dict[str, str]:
    fields = {}
    for rule in rules:
        for target in (rule.ga4, rule.google_ads):
            if target and target.value and target.value.field:
                fields[target.value.field] = target.value.field
    return fields


def load_mapping(path: Path) -> Mapping:
    fix = "set CONNECTOR_MAPPING_PATH to a mappings/*.yaml file"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"mapping file {path} not found: {fix}") from None
    except IsADirectoryError:
        raise ConfigError(f"mapping path {path} is a directory: {fix}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"mapping file {path} is not UTF-8 (byte {exc.start}): save it as UTF-8, or {fix}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"mapping file {path} cannot be read ({exc.strerror}): {fix}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"mapping file {path} is not valid YAML: {exc}") from None
    try:
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(f"mapping file {path} is invalid:\n  " + "\n  ".join(problems)) from None
