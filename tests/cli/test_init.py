"""`connector init`: .env and a mapping drafted from the org's describe, usable at once.

Scripted runs go through typer's CliRunner (stdin is not a terminal); the prompts run
`connector init` as a subprocess in a real pseudo-terminal, as a person at a terminal
sees and types them. Google Ads conversion actions are listed by the real GoogleAdsClient
from the Google Ads API emulator.
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.draft import guess_roles, guess_stage
from connector_sandbox import stack
from connector_sandbox.google_ads_api import EmulatedAction, EmulatedCustomer, GoogleAdsApiEmulator
from connector_sandbox.stack import Sandbox
from connector_sandbox.tls import sandbox_ca
from tests.cli.conftest import env_for, invoke
from tests.sandbox_env import SECRETS

OTHER_ACCOUNT = "5550001111"
# An account whose actions are not the drafted names, but one.
OTHER_ACTIONS = [
    EmulatedAction(810000001, "Qualified lead"),
    EmulatedAction(810000002, "Sales qualified lead"),
    EmulatedAction(810000003, "Website purchase", type="WEBPAGE"),
    EmulatedAction(810000004, "Won deal", status="REMOVED"),  # removed: not offered
]


@pytest.fixture(scope="module")
def other_account() -> Iterator[GoogleAdsApiEmulator]:
    with GoogleAdsApiEmulator([EmulatedCustomer(OTHER_ACCOUNT)], OTHER_ACTIONS) as emulator:
        yield emulator


def salesforce_only(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    env = env_for(sandbox, tmp_path)
    return {k: v for k, v in env.items() if k.startswith("CONNECTOR_SALESFORCE__")}


def google_ads(endpoint: str, customer: str) -> dict[str, str]:
    """The Google Ads settings init lists conversion actions with (no developer token)."""
    return {
        "CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID": customer,
        "CONNECTOR_GOOGLE_ADS__ANONYMOUS_CREDENTIALS": "true",
        "CONNECTOR_GOOGLE_ADS__API_ENDPOINT": endpoint,
        "CONNECTOR_GOOGLE_ADS__API_CA_BUNDLE": str(sandbox_ca().bundle_path),
    }


def env_settings(path: Path) -> dict[str, str]:
    lines = path.read_text("utf-8").splitlines()
    return {k: v.strip("'") for k, v in (line.split("=", 1) for line in lines if line[:1] != "#")}


def google_ads_targets(mapping: Path) -> dict[str, Any]:
    """CRM value -> its google_ads target, for every rule of the drafted mapping that has one."""
    drafted = yaml.safe_load(mapping.read_text("utf-8"))
    rules = {**drafted["stages"], **drafted["opportunity"]["stages"]}
    return {value: rule["google_ads"] for value, rule in rules.items() if "google_ads" in rule}


def test_init_drafts_a_mapping_that_check_accepts(sandbox: Sandbox, tmp_path: Path) -> None:
    env_file, mapping = tmp_path / "x.env", tmp_path / "mappings" / "m.yaml"
    args = ("init", "--env-file", str(env_file), "--mapping", str(mapping), "--json")
    result = invoke(*args, env=salesforce_only(sandbox, tmp_path))
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"MQL", "SQL", "Nurture"} <= set(out["statuses"])
    assert out["fields"]["gclid"] == "GCLID__c" and out["fields"]["ga_client_id"]
    # No Google Ads settings: nothing listed, and the output says how to list them later.
    assert out["google_ads"]["customer_id"] is None and out["google_ads"]["chosen"] == {}
    assert "connector check --online" in out["google_ads"]["hint"]
    text = mapping.read_text("utf-8")
    assert "  MQL: {stage: mql, ga4: {event: qualify_lead}}" in text
    assert "  # Nurture: {stage: ...}" in text  # not guessed: left to a person
    assert "    Closed Won: {stage: won" in text
    assert google_ads_targets(mapping) == {}
    assert env_file.stat().st_mode & 0o077 == 0
    lines = env_file.read_text("utf-8").splitlines()
    assert f"CONNECTOR_MAPPING_PATH={mapping}" in lines
    assert "# CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID=" in lines
    # The drafted mapping loads: `check` reads it (offline, with a destination set).
    env = {
        **env_settings(env_file),
        "CONNECTOR_GA4__MEASUREMENT_ID": "G-TEST",
        "CONNECTOR_GA4__API_SECRET": "test-secret",
    }
    check = invoke("check", "--json", env=env)
    assert check.exit_code == 0, check.stdout + check.stderr
    again = invoke(*args, env=salesforce_only(sandbox, tmp_path))
    assert again.exit_code == 2 and "--force" in again.stdout + again.stderr


def test_without_google_settings_a_given_action_is_written_unchecked(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    mapping = tmp_path / "m.yaml"
    result = invoke(
        *("init", "--env-file", str(tmp_path / ".env"), "--mapping", str(mapping)),
        *("--conversion-action", "won=Closed deal"),
        env=salesforce_only(sandbox, tmp_path),
    )
    assert result.exit_code == 0, result.stderr
    assert "google_ads conversion actions (not checked): won -> Closed deal" in result.stdout
    assert "google_ads conversion actions not listed: set " in result.stdout
    assert "rerun connector init --force" in result.stdout
    assert "connector check --online checks the ones a mapping names" in result.stdout
    assert google_ads_targets(mapping) == {
        "Closed Won": {"conversion_action": "Closed deal", "value": {"field": "Amount"}}
    }


def test_scripted_init_lists_the_actions_takes_flags_and_names_the_missing_ones(
    sandbox: Sandbox, other_account: GoogleAdsApiEmulator, tmp_path: Path
) -> None:
    env_file, mapping = tmp_path / ".env", tmp_path / "m.yaml"
    env = salesforce_only(sandbox, tmp_path) | google_ads(other_account.endpoint, OTHER_ACCOUNT)
    result = invoke(
        *("init", "--env-file", str(env_file), "--mapping", str(mapping), "--json"),
        *("--conversion-action", "mql=Qualified lead", "--conversion-action", "Opportunity="),
        env=env,
    )
    assert result.exit_code == 0, result.stderr
    ads = json.loads(result.stdout)["google_ads"]
    assert ads["customer_id"] == OTHER_ACCOUNT and ads["hint"] is None
    assert ads["conversion_actions"] == [  # removed ones left out; by name; ids as numbers
        {"name": "Qualified lead", "id": 810000001, "type": "UPLOAD_CLICKS", "status": "ENABLED"},
        {
            "name": "Sales qualified lead",
            "id": 810000002,
            "type": "UPLOAD_CLICKS",
            "status": "ENABLED",
        },
        {"name": "Website purchase", "id": 810000003, "type": "WEBPAGE", "status": "ENABLED"},
    ]
    # Given, drafted and found, drafted but removed; `opportunity=` sends it nowhere.
    assert ads["chosen"] == {
        "mql": "Qualified lead",
        "sql": "Sales qualified lead",
        "won": "Won deal",
    }
    assert ads["not_in_account"] == {"won": "Won deal"}
    assert any("FROM conversion_action" in q for q in other_account.queries)
    assert google_ads_targets(mapping) == {
        "MQL": {"conversion_action": "Qualified lead"},
        "SQL": {"conversion_action": "Sales qualified lead"},
        "Closed Won": {"conversion_action": "Won deal", "value": {"field": "Amount"}},
    }
    # The Google Ads settings given are in .env, uncommented; the mapping and .env pass check.
    settings = env_settings(env_file)
    assert settings["CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID"] == OTHER_ACCOUNT
    assert settings["CONNECTOR_GOOGLE_ADS__API_ENDPOINT"] == other_account.endpoint
    assert "# CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID=" not in env_file.read_text("utf-8")
    check = invoke("check", "--json", env=settings)
    assert check.exit_code == 0, check.stdout + check.stderr


def test_in_text_init_says_which_drafted_names_the_account_lacks(
    sandbox: Sandbox, other_account: GoogleAdsApiEmulator, tmp_path: Path
) -> None:
    env = salesforce_only(sandbox, tmp_path) | google_ads(other_account.endpoint, OTHER_ACCOUNT)
    args = ("init", "--env-file", str(tmp_path / ".env"), "--mapping", str(tmp_path / "m.yaml"))
    result = invoke(*args, env=env)
    assert result.exit_code == 0, result.stderr
    assert f"google_ads conversion actions (customer {OTHER_ACCOUNT}): mql -> " in result.stdout
    assert "not in the account: 'Marketing qualified lead' (mql): create it" in result.stdout
    assert "rerun with --conversion-action won=NAME" in result.stdout


@pytest.mark.parametrize(
    ("flag", "customer", "code", "message"),
    [
        ("mql=Nope", OTHER_ACCOUNT, 2, "--conversion-action mql=Nope: customer 5550001111 has"),
        ("lead-ish=X", OTHER_ACCOUNT, 2, "no status of the org was drafted as stage 'lead-ish'"),
        ("mql", OTHER_ACCOUNT, 2, "give STAGE=NAME"),
        ("mql=Qualified lead", "9998887777", 5, "could not be listed: Google Ads API"),
    ],
)
def test_a_bad_choice_or_an_unreadable_account_is_one_line_and_writes_nothing(
    sandbox: Sandbox,
    other_account: GoogleAdsApiEmulator,
    tmp_path: Path,
    flag: str,
    customer: str,
    code: int,
    message: str,
) -> None:
    env = salesforce_only(sandbox, tmp_path) | google_ads(other_account.endpoint, customer)
    env["CONNECTOR_LOG_FORMAT"] = "text"
    args = ("init", "--env-file", str(tmp_path / ".env"), "--mapping", str(tmp_path / "m.yaml"))
    result = invoke(*args, "--conversion-action", flag, "--json", env=env)
    assert result.exit_code == code, result.stdout + result.stderr
    assert message in json.loads(result.stdout)["error"]
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".env").exists() and not (tmp_path / "m.yaml").exists()


def test_without_a_terminal_init_names_what_to_set(tmp_path: Path) -> None:
    result = invoke("init", "--env-file", str(tmp_path / ".env"), "--mapping", str(tmp_path / "m"))
    assert result.exit_code == 2
    assert "CONNECTOR_SALESFORCE__USERNAME" in result.stderr


def test_guesses() -> None:
    fields = [{"name": "Google_Click_Id__c", "label": "GCLID"}, {"name": "GA_CID__c", "label": ""}]
    assert guess_roles(fields) == {"gclid": "Google_Click_Id__c", "ga_client_id": "GA_CID__c"}
    assert [guess_stage(s) for s in ("Open - Not Contacted", "Closed - Not Converted")] == [
        "lead",
        "disqualified",
    ]
    assert guess_stage("Nurture") is None


# --------------------------------------------------------------------------- in a terminal


class Terminal:
    """`connector` in a pseudo-terminal: what a person sees (`seen`) and types (`type`)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self._master, slave = os.openpty()
        # 200 columns: rich and click lay lines out for the terminal's size, unwrapped here.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "connector", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,  # no controlling terminal of ours: getpass uses stdin's
        )
        os.close(slave)  # the child's copy stays open: EOF once it exits
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.seen = ""
        self._at = 0  # where the next expect() starts looking

    def expect(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while (found := self.seen.find(text, self._at)) < 0:
            if not self._read(deadline - time.monotonic()):
                raise AssertionError(f"{text!r} never shown; the terminal shows:\n{self.seen}")
        self._at = found + len(text)

    def type(self, line: str) -> None:
        os.write(self._master, line.encode() + b"\r")  # Enter sends CR; the tty makes it NL

    def finish(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline - time.monotonic()):
            pass
        os.close(self._master)
        return self.process.wait(timeout=max(deadline - time.monotonic(), 1))

    def _read(self, timeout: float) -> bool:
        if timeout <= 0 or not select.select([self._master], [], [], timeout)[0]:
            return False
        try:
            chunk = os.read(self._master, 65536)
        except OSError:  # EIO: every copy of the child's end is closed
            return False
        # Output lines end in CR LF on a terminal; colour codes are none of the test's business.
        text = self._decoder.decode(chunk).replace("\r", "")
        self.seen += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
        return bool(chunk)


def terminal_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    return env | {"TERM": "xterm", "NO_COLOR": "1", "CONNECTOR_LOG_FORMAT": "text"} | extra


def test_in_a_terminal_init_asks_for_salesforce_and_a_conversion_action_per_stage(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    salesforce = salesforce_only(sandbox, tmp_path)
    # Only where to log in is set: the user, secrets and connected app are asked for.
    env = terminal_env(
        {
            k: salesforce[k]
            for k in ("CONNECTOR_SALESFORCE__LOGIN_URL", "CONNECTOR_SALESFORCE__CA_BUNDLE")
        }
        | google_ads(sandbox.google_ads_api.endpoint, stack.OPERATING_ACCOUNT)
    )
    env_file, mapping = tmp_path / "conf" / ".env", tmp_path / "m.yaml"
    term = Terminal(["init", "--env-file", str(env_file), "--mapping", str(mapping)], env, tmp_path)
    term.expect(f"Salesforce login URL [{sandbox.salesforce.url}]: ")
    term.type("")  # the default
    for prompt, answer in (
        ("Salesforce integration user: ", "demo@example.com"),
        ("Password: ", stack.SF_PASSWORD),
        ("Security token (empty if the IP is trusted): ", stack.SF_TOKEN),
        ("Connected app consumer key: ", "demo-client-id"),
        ("Connected app consumer secret: ", stack.SF_CLIENT_SECRET),
    ):
        term.expect(prompt)
        term.type(answer)
    # The account's actions, by name, then one question per stage that sends.
    term.expect(f"Conversion actions of Google Ads customer {stack.OPERATING_ACCOUNT}:")
    term.expect("1  Marketing qualified lead  (id 700000001, UPLOAD_CLICKS, ENABLED)")
    term.expect("4  Won deal  (id 700000004, UPLOAD_CLICKS, ENABLED)")
    term.expect("0  none: the stage is not sent to Google Ads")
    term.expect("Conversion action for mql (MQL) [1]: ")
    term.type("")  # the drafted name, found in the account
    term.expect("Conversion action for sql (SQL) [3]: ")
    term.type("9")  # no such number: asked again
    term.expect("type a number from 0 to 4")
    term.expect("Conversion action for sql (SQL) [3]: ")
    term.type("0")  # none
    term.expect("Conversion action for opportunity (Closed - Converted) [2]: ")
    term.type("Won deal")  # by name
    term.expect("Conversion action for won (Closed Won) [4]: ")
    term.type("700000004")  # by id
    term.expect("wrote ")
    assert term.finish() == 0, term.seen
    for secret in SECRETS:
        assert secret not in term.seen  # typed without echo, and never printed
    assert "mql -> Marketing qualified lead, opportunity -> Won deal, won -> Won deal" in term.seen
    assert google_ads_targets(mapping) == {
        "MQL": {"conversion_action": "Marketing qualified lead"},
        "Closed - Converted": {"conversion_action": "Won deal"},
        "Closed Won": {"conversion_action": "Won deal", "value": {"field": "Amount"}},
    }
    assert env_file.stat().st_mode & 0o777 == 0o600
    settings = env_settings(env_file)
    assert settings["CONNECTOR_SALESFORCE__USERNAME"] == "demo@example.com"
    assert settings["CONNECTOR_SALESFORCE__PASSWORD"] == stack.SF_PASSWORD  # in the file only
    assert settings["CONNECTOR_GOOGLE_ADS__OPERATING_ACCOUNT_ID"] == stack.OPERATING_ACCOUNT
