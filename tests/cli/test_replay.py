"""`connector replay`: a mapping change previewed against what was done, then queued once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connector_sandbox.stack import Sandbox
from tests.cli.conftest import env_for, invoke
from tests.conftest import MAPPING

SINCE = "2000-01-01"
NURTURE = """  Nurture:
    stage: disqualified
    ga4: {event: nurture_lead, value: {field: Company}}  # a field never recorded
    google_ads: {conversion_action: "700000001", value: {fixed: 10}}
"""


def changed_mapping(tmp_path: Path) -> Path:
    """The demo mapping with `Nurture` mapped (GA4 valued by a field never recorded) and the
    MQL conversion worth 75 instead of 50."""
    text = MAPPING.read_text(encoding="utf-8")
    text = text.replace("stages:\n  Open:", f"stages:\n{NURTURE}  Open:", 1)
    text = text.replace('"700000001", value: {fixed: 50}', '"700000001", value: {fixed: 75}')
    path = tmp_path / "changed.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def lines(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    parsed = [json.loads(line) for line in stdout.splitlines()]
    return parsed[:-1], parsed[-1]["summary"]


def test_replay_previews_queues_once_and_sync_sends_once(
    sandbox: Sandbox, tmp_path: Path, state_url: str
) -> None:
    env = env_for(sandbox, tmp_path, CONNECTOR_STATE_URL=state_url)  # SQLite and PostgreSQL
    first = invoke("sync", "--json", env=env)
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout)["unmapped_statuses"].get("Nurture")
    mapping = str(changed_mapping(tmp_path))

    preview = invoke(
        "replay", "--since", SINCE, "--mapping", mapping, "--dry-run", "--json", env=env
    )
    assert preview.exit_code == 0, preview.stderr
    rows, summary = lines(preview.stdout)
    new = [r for r in rows if r["change"] == "newly_sent"]
    assert new and {r["crm_status"] for r in new} == {"Nurture"}
    assert all(r["status_before"] is None and r["stage_before"] == "unmapped" for r in new)
    assert {r["stage_now"] for r in new} == {"disqualified"}
    assert {r["destination"] for r in new} == {"google_ads"}  # GA4's value is not known:
    unknown = [r for r in rows if r["change"] == "value_unknown"]
    assert unknown and {(r["destination"], r["crm_status"]) for r in unknown} == {
        ("ga4", "Nurture")
    }
    assert all(r["note"] == "crm_field_not_recorded: Company" for r in unknown)
    valued = [r for r in rows if r["change"] == "value_changed"]
    assert valued and {(r["value_before"], r["value_now"]) for r in valued} == {(50.0, 75.0)}
    assert all(r["destination"] == "google_ads" and not r["queued"] for r in valued)
    assert summary["dry_run"] and summary["queued"] == 0
    assert (
        invoke(
            "replay", "--since", SINCE, "--mapping", mapping, "--dry-run", "--json", env=env
        ).stdout
        == preview.stdout
    )  # nothing written

    table = invoke("replay", "--since", SINCE, "--mapping", mapping, "--dry-run", env=env)
    assert table.exit_code == 0 and "newly_sent" in table.stdout and "Nurture" in table.stdout

    queued = invoke("replay", "--since", SINCE, "--mapping", mapping, "--json", env=env)
    assert queued.exit_code == 0, queued.stderr
    done, summary = lines(queued.stdout)
    assert summary["queued"] == len(new)
    assert [r["queued"] for r in done] == [r["change"] == "newly_sent" for r in done]

    env["CONNECTOR_MAPPING_PATH"] = mapping
    sent = json.loads(invoke("sync", "--json", env=env).stdout)
    handled = sum(
        t["delivered"] + sum(t["skipped"].values()) + sum(t["rejected"].values())
        for t in sent["destinations"].values()
    )
    assert handled == len(new) and sent["new"] == 0  # each queued row once, nothing else

    again = invoke("replay", "--since", SINCE, "--json", env=env)  # the configured mapping now
    rows, summary = lines(again.stdout)
    assert summary["queued"] == 0 and not [r for r in rows if r["queued"]]
    assert not [r for r in rows if r["change"] == "newly_sent" and r["status_before"] is None]
    resent = json.loads(invoke("sync", "--json", env=env).stdout)
    assert all(t["delivered"] == 0 for t in resent["destinations"].values())


def test_replay_refuses_a_bad_date(sandbox: Sandbox, tmp_path: Path) -> None:
    result = invoke("replay", "--since", "last tuesday", "--json", env=env_for(sandbox, tmp_path))
    assert result.exit_code == 2
    assert "--since" in result.stderr or "--since" in result.stdout


def test_replay_help_documents_its_options_and_exit_codes() -> None:
    result = invoke("replay", "--help")
    assert result.exit_code == 0
    for word in ("--since", "--mapping", "--dry-run", "--json", "Exit codes"):
        assert word in result.stdout


def test_a_rule_valued_by_the_deal_amount_reads_the_amount_recorded_with_the_change(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path)
    assert invoke("sync", "--json", env=env).exit_code == 0
    text = MAPPING.read_text(encoding="utf-8").replace(
        "ga4: {event: close_unconvert_lead}",
        "ga4: {event: close_unconvert_lead}\n"
        '      google_ads: {conversion_action: "700000004", value: {field: Amount}}',
    )
    mapping = tmp_path / "lost-valued.yaml"
    mapping.write_text(text, encoding="utf-8")
    preview = invoke(
        "replay", "--since", SINCE, "--mapping", str(mapping), "--dry-run", "--json", env=env
    )
    assert preview.exit_code == 0, preview.stderr
    rows, _ = lines(preview.stdout)
    lost = [r for r in rows if r["crm_status"] == "Closed Lost"]
    # A lost deal's amount was recorded when it was lost: its value is known, or the deal
    # had none (skipped as a sync would skip it), never "value unknown".
    assert lost and not [r for r in lost if r["change"] == "value_unknown"]
    amounts = {
        o["Id"]: float(o["Amount"])
        for o in sandbox.salesforce.records("Opportunity")
        if o.get("Amount") is not None
    }
    sent = [r for r in lost if r["change"] == "newly_sent"]
    assert sent and all(r["value_now"] in amounts.values() for r in sent)
