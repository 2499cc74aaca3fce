"""`connector init`: write `.env` and a mapping drafted from the org.

Salesforce credentials come from the environment (or an existing `.env`); in a
terminal, the ones missing are asked for (secrets without echo). Scriptable:
set the `CONNECTOR_SALESFORCE__*` variables and pass the paths as options.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from connector.cli.app import JsonOption, app, console, fail, load_settings_or_exit
from connector.errors import ConfigError, ConnectorError
from connector.summary_view import print_json

if TYPE_CHECKING:
    from connector.settings import SalesforceSettings

# Asked for in a terminal when unset: (field, prompt, secret).
PROMPTS = (
    ("login_url", "Salesforce login URL", False),
    ("username", "Salesforce integration user", False),
    ("password", "Password", True),
    ("security_token", "Security token (empty if the IP is trusted)", True),
    ("client_id", "Connected app consumer key", False),
    ("client_secret", "Connected app consumer secret", True),
)


@app.command("init")
def init_command(
    env_file: Annotated[Path, typer.Option(help="The settings file to write.")] = Path(".env"),
    mapping: Annotated[Path, typer.Option(help="The mapping to draft.")] = Path(
        "mappings/salesforce.yaml"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Read the org's Lead and Opportunity describe; write .env and a drafted mapping."""
    from connector.draft import draft_mapping, read_org
    from connector.source.auth import connect

    for path in (env_file, mapping):
        if path.exists() and not force:
            fail(ConfigError(f"{path} exists: pass --force to overwrite it"), as_json)
    settings = load_settings_or_exit()
    salesforce = _complete(settings.salesforce)
    try:
        facts = read_org(connect(salesforce))
    except ConnectorError as exc:
        fail(exc, as_json)
    mapping.parent.mkdir(parents=True, exist_ok=True)
    mapping.write_text(draft_mapping(facts), encoding="utf-8")
    _write_env(env_file, salesforce, mapping)
    result = {
        "env_file": str(env_file.resolve()),
        "mapping": str(mapping.resolve()),
        "statuses": facts.statuses,
        "opportunity_stages": facts.stages,
        "fields": facts.lead_fields,
        "next": "connector check --online",
    }
    if as_json:
        print_json(result)
        return
    out = console()
    out.print(f"wrote {result['env_file']} and {result['mapping']}")
    out.print(f"  fields found: {', '.join(f'{k} {v}' for k, v in facts.lead_fields.items())}")
    out.print(f"  statuses: {', '.join(facts.statuses)}")
    out.print("  review the mapping (unguessed statuses are commented out), then run:")
    out.print("    connector check --online", markup=False)


def _complete(salesforce: SalesforceSettings) -> SalesforceSettings:
    """Ask for what is unset, in a terminal only; a script gets the names it must set."""
    from pydantic import SecretStr

    from connector.settings import env_name

    updates: dict[str, Any] = {}
    # The JWT bearer flow (a private key) needs no password, token or secret.
    jwt = ("password", "security_token", "client_secret") if salesforce.private_key_file else ()
    missing = [f for f, _, _ in PROMPTS[1:] if not getattr(salesforce, f) and f not in jwt]
    if missing and not sys.stdin.isatty():
        names = ", ".join(env_name("salesforce", f) for f in missing if f != "security_token")
        if names:
            fail(ConfigError(f"set {names} (or run connector init in a terminal)"))
        return salesforce
    for name, prompt, secret in PROMPTS:
        if name in missing or (name == "login_url" and missing):
            answer = typer.prompt(
                prompt, default=getattr(salesforce, name) or "", hide_input=secret
            )
            if answer:
                updates[name] = SecretStr(answer) if secret else answer
    return salesforce.model_copy(update=updates)


def _write_env(path: Path, salesforce: SalesforceSettings, mapping: Path) -> None:
    from connector.cli.sandbox import env_lines

    # Every field set (from the environment, or answered) is a field the user chose.
    chosen = salesforce.model_copy()
    chosen.model_fields_set.update(
        name for name, _, _ in PROMPTS if getattr(salesforce, name) is not None
    )
    lines = [
        "# Written by `connector init`; every setting is described in .env.example.",
        f"CONNECTOR_MAPPING_PATH={mapping.resolve()}",
        f"CONNECTOR_STATE_URL=sqlite:///{(Path.cwd() / 'state' / 'connector.db').resolve()}",
        *env_lines(chosen, "CONNECTOR_SALESFORCE__"),
        "# Google Ads (Data Manager) and GA4: fill in what you send to.",
        "# CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID=",
        "# CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE=",
        "# CONNECTOR_GA4__MEASUREMENT_ID=",
        "# CONNECTOR_GA4__API_SECRET=",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)  # it holds the Salesforce secrets
