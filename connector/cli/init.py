"""`connector init`: write `.env` and a mapping drafted from the org.

Salesforce credentials come from the environment (or an existing `.env`); in a
terminal, the ones missing are asked for (secrets without echo). With the
Google Ads settings set, the account's conversion actions are listed: a
terminal asks which one each stage sends to, a script passes
`--conversion-action STAGE=NAME` or keeps the drafted names (those the account
lacks are reported). Prompts and the list go to stderr: stdout stays the
result (`--json`). An existing `.env` (`--force`) is updated in place: what init does not
write, above all the state URL, stays as it was.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from connector.cli.app import JsonOption, app, console, err, fail, load_settings_or_exit
from connector.errors import ConfigError, ConnectorError
from connector.summary_view import print_json

if TYPE_CHECKING:
    from connector.destinations.google_ads.actions import ConversionActionInfo
    from connector.draft import OrgFacts
    from connector.settings import GoogleAdsSettings, SalesforceSettings, Settings

# Asked for in a terminal when unset: (field, prompt, secret).
PROMPTS = (
    ("login_url", "Salesforce login URL", False),
    ("username", "Salesforce integration user", False),
    ("password", "Password", True),
    ("security_token", "Security token (empty if the IP is trusted)", True),
    ("client_id", "Connected app consumer key", False),
    ("client_secret", "Connected app consumer secret", True),
)
LIST_LATER = (
    "set CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID and its credentials "
    "(CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE, or Application Default Credentials), then rerun "
    "connector init --force to choose from the account's conversion actions; "
    "connector check --online checks the ones a mapping names"
)
ActionsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--conversion-action",
        metavar="STAGE=NAME",
        help="The Google Ads conversion action (exact name or id) a stage (mql, sql, "
        "opportunity, won, ...) sends to; STAGE= sends it nowhere in Google Ads (repeatable). "
        "Without it a terminal asks, a script keeps the drafted name.",
    ),
]


@dataclass(frozen=True)
class AdsChoice:
    """The conversion action each stage sends to, and what the account had to choose from."""

    customer_id: str  # "" when no Google Ads account is set: nothing was listed or checked
    listed: list[ConversionActionInfo]
    chosen: dict[str, str]  # stage -> conversion action name or id
    missing: dict[str, str]  # the chosen ones the account does not have

    def as_dict(self) -> dict[str, Any]:
        actions = [
            {"name": a.name, "id": int(a.id), "type": a.type, "status": a.status}
            for a in self.listed
        ]
        return {
            "customer_id": self.customer_id or None,
            "conversion_actions": actions,
            "chosen": self.chosen,
            "not_in_account": self.missing,
            "hint": None if self.customer_id else LIST_LATER,
        }


@app.command("init")
def init_command(
    env_file: Annotated[Path, typer.Option(help="The settings file to write.")] = Path(".env"),
    mapping: Annotated[Path, typer.Option(help="The mapping to draft.")] = Path(
        "mappings/salesforce.yaml"
    ),
    conversion_action: ActionsOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Overwrite the mapping, and update an existing .env: only the settings init "
            "writes are replaced, the others (state URL, GA4, ...) kept.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Draft .env and a mapping from the Salesforce org; choose the Google Ads conversion actions.

    Reads the org's Lead and Opportunity describe: fields that look like gclid / gbraid /
    wbraid / GA client id / UTM / consent, every Status and StageName value (those whose stage
    cannot be guessed commented out), and field history tracking (history or snapshot mode).
    In a terminal, missing Salesforce settings are asked for (secrets without echo).

    With CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID and credentials set, it lists the
    account's conversion actions (name, id, type, status): a terminal asks which one each
    stage sends to; a script passes --conversion-action or keeps the drafted names, and the
    output names those the account does not have. The Google Ads settings given are written
    to .env with the Salesforce ones (mode 0600). Without them nothing is listed: set them and
    rerun init --force, or let `connector check --online` check the actions a mapping names.

    With --force an existing .env is updated, not replaced: every setting init does not write
    (the state URL, GA4, the log format, ...) and every comment stay as they were.

    Exit codes: 0 written; 2 a file exists (without --force), a setting to fix, or a refused
    Salesforce login; 3 Salesforce or Google Ads did not answer.
    """
    from connector.draft import draft_mapping, read_org, sent_stages
    from connector.source.auth import connect

    for path in (env_file, mapping):
        if path.exists() and not force:
            fail(ConfigError(f"{path} exists: pass --force to overwrite it"), as_json)
    settings = load_settings_or_exit(as_json)
    try:
        given = _parse_given(conversion_action or [])
        salesforce = _complete(settings.salesforce)
        facts = read_org(connect(salesforce))
        ads = _choose_actions(settings.google_ads, sent_stages(facts), given)
        existing = _read_env(env_file)  # before anything is written: it may be unreadable
    except ConnectorError as exc:
        fail(exc, as_json)
    mapping.parent.mkdir(parents=True, exist_ok=True)
    mapping.write_text(draft_mapping(facts, actions=ads.chosen), encoding="utf-8")
    decided = _decided(settings, salesforce, mapping, existing)
    _write_env(env_file, existing, decided, settings.google_ads)
    result = {
        "env_file": str(env_file.resolve()),
        "mapping": str(mapping.resolve()),
        "statuses": facts.statuses,
        "opportunity_stages": facts.stages,
        "fields": facts.lead_fields,
        "google_ads": ads.as_dict(),
        "next": "connector check --online",
    }
    if as_json:
        print_json(result)
        return
    _print_result(result, facts, ads)


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
            raise ConfigError(f"set {names} (or run connector init in a terminal)")
        return salesforce
    for name, prompt, secret in PROMPTS:
        if name in missing or (name == "login_url" and missing):
            # On stderr, as every prompt here: stdout is the result (--json). An empty answer
            # keeps the current value (the token may be empty), shown only when there is one.
            current = getattr(salesforce, name) or ""
            answer = typer.prompt(
                prompt, default=current, show_default=bool(current), hide_input=secret, err=True
            )
            if answer:
                updates[name] = SecretStr(answer) if secret else answer
    return salesforce.model_copy(update=updates)


# --------------------------------------------------------------------------- Google Ads


def _parse_given(options: list[str]) -> dict[str, str]:
    """`--conversion-action STAGE=NAME` options as stage -> name ("" sends the stage nowhere)."""
    given: dict[str, str] = {}
    for option in options:
        stage, sep, name = option.partition("=")
        if not sep or not stage.strip():
            raise ConfigError(f"--conversion-action {option!r}: give STAGE=NAME, e.g. mql=MQL")
        given[stage.strip().lower()] = name.strip()
    return given


def _choose_actions(
    google_ads: GoogleAdsSettings, stages: dict[str, list[str]], given: dict[str, str]
) -> AdsChoice:
    """Stage -> conversion action: as given, else asked in a terminal, else the drafted name."""
    from connector.draft import ADS_ACTIONS

    if unknown := sorted(given.keys() - stages.keys()):
        raise ConfigError(
            f"--conversion-action {unknown[0]}=...: no status of the org was drafted as stage "
            f"{unknown[0]!r} (drafted stages that send: {', '.join(stages) or 'none'})"
        )
    if not google_ads.enabled:  # nothing to list: the given names go in unchecked
        return AdsChoice("", [], {s: n for s, n in given.items() if n}, {})
    customer, listed = google_ads.operating_account_id, _list_actions(google_ads)
    wanted = [s for s in stages if s in ADS_ACTIONS or s in given]
    chosen = {s: _given(s, given[s], listed, customer) for s in wanted if s in given}
    asked = [s for s in wanted if s not in given]
    if asked and listed and sys.stdin.isatty():
        _print_actions(listed, customer)
        chosen |= {s: _ask(s, stages[s], listed) for s in asked}
    else:
        chosen |= {s: ADS_ACTIONS[s] for s in asked}
    chosen = {s: chosen[s] for s in wanted if chosen[s]}  # in funnel order
    known = {a.name for a in listed} | {a.id for a in listed}
    missing = {s: name for s, name in chosen.items() if name not in known}
    return AdsChoice(customer, listed, chosen, missing)


def _list_actions(google_ads: GoogleAdsSettings) -> list[ConversionActionInfo]:
    from connector.destinations.google_ads.actions import list_actions

    # google-ads logs a failed call itself (a WARNING): the error below says it once, with
    # its code and request id.
    client_log = logging.getLogger("google.ads.googleads.client")
    previous = client_log.level
    client_log.setLevel(logging.ERROR)
    try:
        return list_actions(google_ads)
    finally:
        client_log.setLevel(previous)


def _given(stage: str, name: str, listed: list[ConversionActionInfo], customer: str) -> str:
    """A name or id given on the command line, which the account must have: a typo in a
    script is an error, not a mapping that fails later."""
    if not name or any(name in (a.name, a.id) for a in listed):
        return name
    names = ", ".join(repr(a.name) for a in listed[:10]) + (", ..." if len(listed) > 10 else "")
    raise ConfigError(
        f"--conversion-action {stage}={name}: customer {customer} has no such conversion "
        f"action ({'it has ' + names if listed else 'it has none'})"
    )


def _print_actions(listed: list[ConversionActionInfo], customer: str) -> None:
    err.print(f"Conversion actions of Google Ads customer {customer}:", highlight=False)
    for number, action in enumerate(listed, 1):
        line = f"  {number:>3}  {action.name}  (id {action.id}, {action.type}, {action.status})"
        err.print(line, markup=False, highlight=False)
    err.print("    0  none: the stage is not sent to Google Ads", highlight=False)


def _ask(stage: str, values: list[str], listed: list[ConversionActionInfo]) -> str:
    """The action `stage` sends to, by number (or name, or id); the drafted name is the
    default when the account has it, else none."""
    from connector.draft import ADS_ACTIONS

    drafted = ADS_ACTIONS.get(stage)
    default = next((str(n) for n, a in enumerate(listed, 1) if a.name == drafted), "0")
    while True:
        answer = typer.prompt(
            f"Conversion action for {stage} ({', '.join(values)})", default=default, err=True
        )
        picked = _pick(answer.strip(), listed)
        if picked is not None:
            return picked
        err.print(f"  type a number from 0 to {len(listed)}", highlight=False)


def _pick(answer: str, listed: list[ConversionActionInfo]) -> str | None:
    if answer.isdigit() and int(answer) <= len(listed):
        return listed[int(answer) - 1].name if int(answer) else ""
    return next((a.name for a in listed if answer in (a.name, a.id)), None)


# --------------------------------------------------------------------------- output


@dataclass(frozen=True)
class EnvFile:
    """A settings file as it was before init: its lines, and the values they set."""

    lines: list[str]
    values: dict[str, str]  # key (upper case) -> value, as the settings read it (python-dotenv)
    counts: dict[str, int]  # key -> how many active lines assign it


_ACTIVE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")
# A commented-out assignment (`# CONNECTOR_GA4__API_SECRET=...`, as in .env.example).
_COMMENTED = re.compile(r"\s*#\s*(?:export\s+)?(CONNECTOR_[A-Za-z0-9_]+)\s*=")
_HEADER = "# Written by `connector init`; every setting is described in .env.example."
_ADDED = "# Added by `connector init` (every setting is described in .env.example):"


def _read_env(path: Path) -> EnvFile:
    if not path.exists():
        return EnvFile([], {}, {})
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path} cannot be read ({type(exc).__name__}): fix it, or move it away and rerun"
        ) from None
    from dotenv import dotenv_values

    # The parser pydantic-settings reads .env with: values exactly as a run would see them.
    parsed = dotenv_values(stream=io.StringIO(text))
    values = {key.upper(): value for key, value in parsed.items() if value is not None}
    lines = text.splitlines()
    counts = Counter(key for line in lines if (key := _key(_ACTIVE, line)))
    return EnvFile(lines, values, dict(counts))


def _key(pattern: re.Pattern[str], line: str) -> str:
    found = pattern.match(line)
    return found[1].upper() if found else ""


def _decided(
    settings: Settings, salesforce: SalesforceSettings, mapping: Path, existing: EnvFile
) -> dict[str, str]:
    """Key -> `KEY=value` line for each setting init writes: the mapping it drafted, the
    Salesforce and Google Ads settings given, and a state URL only where the file has none."""
    from connector.cli.sandbox import env_lines

    # Every field set (from the environment, or answered) is a field the user chose.
    chosen = salesforce.model_copy()
    chosen.model_fields_set.update(
        name for name, _, _ in PROMPTS if getattr(salesforce, name) is not None
    )
    lines = [_assign("CONNECTOR_MAPPING_PATH", str(mapping.resolve()))]
    # The ledger behind a state URL holds the cursors and what was sent: another URL would
    # start over on an empty store, re-pull the backfill and re-send GA4 events.
    if not existing.values.get("CONNECTOR_STATE_URL"):
        lines.append(_assign("CONNECTOR_STATE_URL", _state_url(settings)))
    lines += env_lines(chosen, "CONNECTOR_SALESFORCE__")
    lines += env_lines(settings.google_ads, "CONNECTOR_GOOGLE_ADS__")  # the ones given
    return {line.partition("=")[0]: line for line in lines}


def _state_url(settings: Settings) -> str:
    """The state URL set (in the environment or the cwd .env), else SQLite beside the cwd."""
    if "state_url" in settings.model_fields_set:
        return settings.state_url
    return f"sqlite:///{(Path.cwd() / 'state' / 'connector.db').resolve()}"


def _assign(key: str, value: str) -> str:
    return f"{key}={shlex.quote(value)}"


def _write_env(
    path: Path, existing: EnvFile, decided: dict[str, str], google_ads: GoogleAdsSettings
) -> None:
    """A new file: init's settings, with commented-out hints for the destinations. An existing
    one (--force): updated in place, every line init does not decide kept."""
    hints = [] if google_ads.enabled else ["# CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID="]
    if not google_ads.enabled and not google_ads.credentials_file:
        hints.append("# CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE=")
    hints += ["# CONNECTOR_GA4__MEASUREMENT_ID=", "# CONNECTOR_GA4__API_SECRET="]
    lines = _merged(existing, decided, hints) if existing.lines else _fresh(decided, hints)
    _write_private(path, "\n".join(lines) + "\n")


def _fresh(decided: dict[str, str], hints: list[str]) -> list[str]:
    ads = [line for key, line in decided.items() if key.startswith("CONNECTOR_GOOGLE_ADS__")]
    others = [line for key, line in decided.items() if not key.startswith("CONNECTOR_GOOGLE_ADS__")]
    return [
        _HEADER,
        *others,
        "# Google Ads (Data Manager) and GA4: fill in what you send to.",
        *ads,
        *hints,
    ]


def _merged(existing: EnvFile, decided: dict[str, str], hints: list[str]) -> list[str]:
    """The file as it was, but for the settings init writes: each set where the file assigns
    it (or, where it only has it commented out, there), the rest appended."""
    mentioned = {
        k for line in existing.lines for k in (_key(_ACTIVE, line), _key(_COMMENTED, line))
    }
    placed: set[str] = set()
    lines = []
    for line in existing.lines:
        active, commented = _key(_ACTIVE, line), _key(_COMMENTED, line)
        key = active or (commented if commented not in existing.counts else "")
        if key not in decided or (not active and key in placed):
            lines.append(line)  # not init's to decide: kept as it is, comments too
        elif key not in placed:
            placed.add(key)
            lines.append(line if _unchanged(existing, key, decided[key]) else decided[key])
        # else a second assignment of a key init writes: dropped, it would win over the first
    added = [line for key, line in decided.items() if key not in placed]
    added += [hint for hint in hints if _key(_COMMENTED, hint) not in mentioned]
    return [*lines, "", _ADDED, *added] if added else lines


def _unchanged(existing: EnvFile, key: str, line: str) -> bool:
    """Whether the file's one assignment of `key` already gives the value `line` does: then
    its line is kept as written (its quoting, its `export`)."""
    value = existing.values.get(key)
    return existing.counts.get(key) == 1 and value is not None and _assign(key, value) == line


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by the owner only (it holds the Salesforce secrets), replacing
    the file at once: a failure part-way leaves the old one whole."""
    target = path.resolve()  # a symlinked .env (a mounted secret) is written where it points
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.init-tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # O_CREAT's mode applies to a new file only
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)  # no stray copy of the secrets
        raise


def _print_result(result: dict[str, Any], facts: OrgFacts, ads: AdsChoice) -> None:
    out = console()
    out.print(f"wrote {result['env_file']} and {result['mapping']}", highlight=False)
    out.print(f"  fields found: {', '.join(f'{k} {v}' for k, v in facts.lead_fields.items())}")
    out.print(f"  statuses: {', '.join(facts.statuses)}", markup=False)
    for line in _ads_lines(ads):
        out.print(f"  {line}", markup=False, highlight=False)
    out.print("  review the mapping (unguessed statuses are commented out), then run:")
    out.print("    connector check --online", markup=False)


def _ads_lines(ads: AdsChoice) -> list[str]:
    sends = ", ".join(f"{stage} -> {name}" for stage, name in ads.chosen.items()) or "none"
    if not ads.customer_id:
        unchecked = [f"google_ads conversion actions (not checked): {sends}"] if ads.chosen else []
        return [*unchecked, f"google_ads conversion actions not listed: {LIST_LATER}"]
    lines = [f"google_ads conversion actions (customer {ads.customer_id}): {sends}"]
    for stage, name in ads.missing.items():
        lines.append(
            f"not in the account: {name!r} ({stage}): create it as an 'Import from clicks' "
            f"conversion action, or rerun with --conversion-action {stage}=NAME"
        )
    return lines
