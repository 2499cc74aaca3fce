"""Every command on a state store it cannot open: exit 3 naming CONNECTOR_STATE_URL, never an
empty ledger, a traceback or the store's password."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from connector import exit_codes
from connector.ledger import Ledger
from connector.ledger.locks import run_lock
from connector_sandbox.stack import Sandbox
from tests.cli.conftest import env_for, invoke
from tests.conftest import POSTGRES_URL

SECRET = "pgsecretpw"
READS = [["runs"], ["failures"], ["report"]]
# Every command that opens the store, the writing ones included.
COMMANDS = [*READS, ["retry", "1"], ["channels"], ["costs"]]


def _env(sandbox: Sandbox, tmp_path: Path, url: str) -> dict[str, str]:
    return env_for(
        sandbox, tmp_path, CONNECTOR_STATE_URL=url, CONNECTOR_GA4__PROPERTY_ID="987654321"
    )


def _assert_unavailable(args: list[str], env: dict[str, str]) -> str:
    result = invoke(*args, env=env)
    output = result.stdout + result.stderr
    assert result.exit_code == exit_codes.UNAVAILABLE, (args, output, result.exception)
    assert "CONNECTOR_STATE_URL" in result.stderr and "unexpected" not in output
    assert SECRET not in output
    return output


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_a_read_of_an_unreachable_postgresql_store_exits_3(
    args: list[str], sandbox: Sandbox, tmp_path: Path
) -> None:
    for url in (
        f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}",
        f"postgresql+psycopg://user:pg@{SECRET}@127.0.0.1:1/db",  # an unencoded @
    ):
        _assert_unavailable(args, _env(sandbox, tmp_path, url))


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_sqlite_store_that_cannot_be_opened_exits_3(
    args: list[str], sandbox: Sandbox, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-directory").mkdir()
    for path in (corrupt, tmp_path / "a-file" / "connector.db", tmp_path / "a-directory"):
        output = _assert_unavailable(args, _env(sandbox, tmp_path, f"sqlite:///{path}"))
        assert str(path) in output


def test_check_shows_the_state_url_without_its_password(sandbox: Sandbox, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}"
    result = invoke("check", "--json", env=_env(sandbox, tmp_path, url))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["state_url"] == url.replace(SECRET, "***")


@pytest.mark.skipif(not POSTGRES_URL, reason="CONNECTOR_TEST_POSTGRES_URL not set")
def test_runs_on_an_empty_postgresql_store_names_it_without_its_password(
    state_url: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    if not state_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: a SQLite URL carries no password")
    url = f"{state_url}?password={SECRET}"  # the test server trusts its clients: ignored
    result = invoke("runs", env=_env(sandbox, tmp_path, url))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("no runs recorded yet in postgresql+psycopg://")
    assert "?password=***" in result.stdout and SECRET not in result.stdout


def test_a_sqlite_url_written_with_its_driver_still_takes_the_run_lock(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "connector.db"
    with run_lock(Ledger.open(f"sqlite:///{path}").db):
        result = invoke("sync", env=_env(sandbox, tmp_path, f"sqlite+pysqlite:///{path}"))
    assert result.exit_code == exit_codes.STORE_BUSY, result.stderr
    assert f"pid {os.getpid()}" in result.stderr
