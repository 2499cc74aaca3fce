"""The deploy examples, the image and `.env.example`, checked statically (no Docker daemon here).

Each example must run one connector at a time, take its secrets by reference, keep its state at
an absolute path or URL, and agree with the image (user, state directory) and with the settings.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from connector.settings import Settings
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
COMPOSE = DEPLOY / "compose.yaml"
SERVICE = DEPLOY / "systemd" / "connector.service"
TIMER = DEPLOY / "systemd" / "connector.timer"
CRONTAB = DEPLOY / "cron" / "connector"
ENV_EXAMPLE = REPO / ".env.example"
ASSIGNMENT = re.compile(r"^(#\s*)?(CONNECTOR_[A-Z0-9_]+)=(.*)$")


def _env_names() -> dict[str, bool]:
    """Every setting's variable name, and whether it holds a secret."""
    names: dict[str, bool] = {}
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            for sub, subfield in group.model_fields.items():
                secret = "SecretStr" in str(subfield.annotation) or subfield.annotation is SecretStr
                names[f"CONNECTOR_{name.upper()}__{sub.upper()}"] = secret
        else:
            names[f"CONNECTOR_{name.upper()}"] = False
    return names


SETTINGS = _env_names()
SECRET_SETTINGS = {name for name, secret in SETTINGS.items() if secret}


def _absolute_state(url: str) -> bool:
    """A SQLite URL with an absolute path, or a server URL."""
    if url.startswith("sqlite:"):
        return url.startswith("sqlite:////")
    return bool(re.match(r"^postgresql(\+\w+)?://[^/]+/\w+", url))


def _sqlite_dir(url: str) -> str:
    return str(Path(url.removeprefix("sqlite:///")).parent)


def _no_credentials_in_url(url: str) -> bool:
    """A password in a URL only as a ${VARIABLE} reference."""
    match = re.match(r"^\w[\w+]*://([^@/]*)@", url)
    if not match or ":" not in match.group(1):
        return True
    return match.group(1).split(":", 1)[1].startswith("${")


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text(encoding="utf-8")


def _image_user() -> int:
    users = re.findall(r"^USER\s+(\S+)", _dockerfile(), flags=re.MULTILINE)
    assert users, "the Dockerfile sets no USER"
    return int(users[-1].split(":")[0])


def _image_state_url() -> str:
    found = re.search(r"CONNECTOR_STATE_URL=(\S+)", _dockerfile())
    assert found, "the Dockerfile sets no CONNECTOR_STATE_URL"
    return found.group(1)


# --- Kubernetes ---------------------------------------------------------------------------------


def _cronjobs() -> list[tuple[Path, dict[str, Any], list[dict[str, Any]]]]:
    found = []
    for path in KUBERNETES:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        found += [(path, d, docs) for d in docs if d["kind"] == "CronJob"]
    return found


CRONJOBS = _cronjobs()


def test_there_is_a_cronjob_per_state_backend() -> None:
    states = [_env(_container(job)["env"])["CONNECTOR_STATE_URL"] for _, job, _ in CRONJOBS]
    kinds = {"secret" if "valueFrom" in state else "sqlite" for state in states}
    assert kinds == {"secret", "sqlite"}  # PostgreSQL (its URL in a Secret) and SQLite on a PVC


def _container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in entries}


@pytest.mark.parametrize(("path", "job", "docs"), CRONJOBS, ids=[p.name for p, _, _ in CRONJOBS])
def test_cronjob_runs_one_sync_at_a_time(path: Path, job: dict[str, Any], docs: Any) -> None:
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert len(spec["schedule"].split()) == 5
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0  # the next scheduled run retries
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert _container(job)["args"] == ["sync"]
    # An evicted pod's run settles the request in flight first: the kill waits that long.
    longest = max(
        Settings.model_fields[name].annotation.model_fields["timeout_seconds"].default  # type: ignore[union-attr]
        for name in ("salesforce", "google_ads", "ga4")
    )
    assert pod["terminationGracePeriodSeconds"] > longest


@pytest.mark.parametrize(("path", "job", "docs"), CRONJOBS, ids=[p.name for p, _, _ in CRONJOBS])
def test_cronjob_is_locked_down(path: Path, job: dict[str, Any], docs: Any) -> None:
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _image_user()
    container = _container(job)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # the one writable place besides the state volume


# A first run's Bulk backfill sorts its rows through a scratch file in /tmp: about 350 bytes
# a stage change (connector.source.spill), so a million changes need about 350 MB there.
BACKFILL_SCRATCH_MIB = 512


@pytest.mark.parametrize(("path", "job", "docs"), CRONJOBS, ids=[p.name for p, _, _ in CRONJOBS])
def test_cronjob_tmp_holds_a_backfills_scratch_file(
    path: Path, job: dict[str, Any], docs: Any
) -> None:
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    mount = next(m for m in _container(job)["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    size = volume["emptyDir"]["sizeLimit"]
    assert _mebibytes(size) >= BACKFILL_SCRATCH_MIB
    assert volume["emptyDir"].get("medium") != "Memory"  # not counted against the pod's memory


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    unit = next(u for u in sorted(units, key=len, reverse=True) if quantity.endswith(u))
    return float(quantity.removesuffix(unit)) * units[unit]


@pytest.mark.parametrize(("path", "job", "docs"), CRONJOBS, ids=[p.name for p, _, _ in CRONJOBS])
def test_cronjob_takes_secrets_by_reference(path: Path, job: dict[str, Any], docs: Any) -> None:
    container = _container(job)
    assert all(set(source) == {"secretRef"} for source in container["envFrom"])
    env = _env(container["env"])
    assert set(env) <= set(SETTINGS), "an env name that is no setting"
    for name, entry in env.items():
        if name in SECRET_SETTINGS:
            assert "secretKeyRef" in entry["valueFrom"], name
    text = path.read_text(encoding="utf-8")
    assert not any(d["kind"] == "Secret" for d in docs), "Secrets are created with kubectl"
    assert "change-me" not in text
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for setting in (
        "CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE",
        "CONNECTOR_GOOGLE_ADS__CREDENTIALS_FILE",
    ):
        key_dir = str(Path(env[setting]["value"]).parent)
        assert Path(key_dir).is_absolute()
        assert mounts[key_dir]["readOnly"] is True
        assert "secret" in volumes[mounts[key_dir]["name"]], f"{setting} is not on a Secret volume"


@pytest.mark.parametrize(("path", "job", "docs"), CRONJOBS, ids=[p.name for p, _, _ in CRONJOBS])
def test_cronjob_state_is_absolute_and_persistent(
    path: Path, job: dict[str, Any], docs: Any
) -> None:
    container = _container(job)
    state = _env(container["env"])["CONNECTOR_STATE_URL"]
    if "valueFrom" in state:  # PostgreSQL: the URL holds a password
        assert "secretKeyRef" in state["valueFrom"]
        return
    url = state["value"]
    assert _absolute_state(url), url
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == _sqlite_dir(url))
    claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    claims = [d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert claim in claims


# --- docker compose -----------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def test_compose_runs_the_connector_on_a_schedule_beside_postgresql() -> None:
    services = _compose()["services"]
    connector, postgres = services["connector"], services["postgres"]
    assert connector["command"][:2] == ["run", "--every"]
    assert connector["restart"] == "unless-stopped"
    assert connector["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in postgres
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    url = connector["environment"]["CONNECTOR_STATE_URL"]
    assert _absolute_state(url) and "@postgres:" in url


def test_compose_takes_secrets_from_the_env_file() -> None:
    services = _compose()["services"]
    connector = services["connector"]
    assert connector["env_file"] == "../.env"
    assert connector["read_only"] is True
    environment: dict[str, str] = connector["environment"]
    assert set(environment) <= set(SETTINGS)
    assert not set(environment) & SECRET_SETTINGS, "secrets belong in .env"
    assert all(_no_credentials_in_url(v) for v in environment.values())
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
    assert "change-me" not in COMPOSE.read_text(encoding="utf-8")
    mounts = {v.split(":")[1]: v for v in connector["volumes"]}
    key = environment["CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE"]
    assert mounts[str(Path(key).parent)].endswith(":ro")


def test_compose_tmp_is_on_disk_for_a_backfills_scratch_file() -> None:
    compose = _compose()
    connector = compose["services"]["connector"]
    assert "tmpfs" not in connector  # RAM: a backfill's scratch file would count as memory
    scratch = next(v.split(":")[0] for v in connector["volumes"] if v.split(":")[1] == "/tmp")
    assert scratch in compose["volumes"]


# --- systemd and cron ---------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Section -> (key, value) in order: systemd keys may repeat (Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key, value))
    return sections


def _one(entries: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in entries if k == key]
    assert len(values) == 1, key
    return values[0]


def test_systemd_service_is_one_sync_run_as_a_service_user() -> None:
    service = _unit(SERVICE)["Service"]
    assert _one(service, "Type") == "oneshot"  # a running oneshot is not started twice
    assert _one(service, "User") not in ("", "root")
    command = shlex.split(_one(service, "ExecStart"))
    assert Path(command[0]).is_absolute() and command[0].endswith("/connector")
    assert command[1:] == ["sync"]
    assert Path(_one(service, "EnvironmentFile").lstrip("-")).is_absolute()
    assert _one(service, "ProtectSystem") == "strict"
    env = dict(v.split("=", 1) for k, v in service if k == "Environment")
    assert env.pop("MALLOC_ARENA_MAX") == "2"  # as the image has it: a smaller peak memory
    assert set(env) <= set(SETTINGS) and not set(env) & SECRET_SETTINGS
    url = env["CONNECTOR_STATE_URL"]
    assert _absolute_state(url)
    assert _sqlite_dir(url) == "/var/lib/" + _one(service, "StateDirectory")


def test_systemd_timer_starts_the_service_every_15_minutes() -> None:
    timer = _unit(TIMER)
    assert _one(timer["Timer"], "OnCalendar") == "*:0/15"
    assert _one(timer["Timer"], "Persistent") == "true"
    assert _one(timer["Timer"], "Unit") == SERVICE.name
    assert _one(timer["Install"], "WantedBy") == "timers.target"


def test_crontab_line_runs_sync_with_an_absolute_state_path() -> None:
    lines = [
        line
        for line in CRONTAB.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    variables = dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))
    jobs = [line.split(None, 6) for line in lines if not re.match(r"^[A-Z_]+=", line)]
    assert len(jobs) == 1
    *schedule, user, command = jobs[0]
    assert schedule == ["*/15", "*", "*", "*", "*"]
    assert user not in ("", "root")
    assert "flock -n" in command  # cron itself would start a second run beside a slow one
    assert re.search(r" /\S+/connector sync\b", command), "an absolute path to connector sync"
    assert _absolute_state(variables["CONNECTOR_STATE_URL"])
    assert not set(variables) & SECRET_SETTINGS
    assert variables["MALLOC_ARENA_MAX"] == "2"  # as the image has it


def test_the_image_keeps_glibc_to_two_malloc_arenas() -> None:
    # The delivery threads each get an arena otherwise: a larger peak memory (RESULTS.md).
    assert re.search(r"^\s+MALLOC_ARENA_MAX=2\b", _dockerfile(), flags=re.MULTILINE)


# --- every example ------------------------------------------------------------------------------

DEPLOY_FILES = sorted(p for p in DEPLOY.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "path", DEPLOY_FILES, ids=[str(p.relative_to(DEPLOY)) for p in DEPLOY_FILES]
)
def test_no_example_holds_a_secret_value(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for name in SECRET_SETTINGS:
        # YAML `NAME: value`, unit/crontab `NAME=value`: a secret is never written in an example.
        assert not re.search(rf"{name}\s*[:=]\s*(?!\$\{{)\S", text), f"{name} has a value in {path}"
    for url in re.findall(r"\b(?:postgresql|mysql)\S*://\S+", text):
        assert _no_credentials_in_url(url) or "PASSWORD@" in url, url  # PASSWORD: a placeholder


def test_examples_use_the_image_state_directory() -> None:
    image_url = _image_state_url()
    assert _absolute_state(image_url)
    assert re.search(rf'^VOLUME \["{re.escape(_sqlite_dir(image_url))}"\]', _dockerfile(), re.M)
    sqlite_urls = {
        url
        for path in DEPLOY_FILES
        for url in re.findall(r"sqlite:///\S+", path.read_text(encoding="utf-8"))
    }
    sqlite_urls |= {u for u in re.findall(r"sqlite:///\S+", ENV_EXAMPLE.read_text()) if u}
    assert sqlite_urls == {image_url}


# --- the image ----------------------------------------------------------------------------------


def test_image_is_built_from_the_lock_file_as_a_non_root_user() -> None:
    dockerfile = _dockerfile()
    syncs = re.findall(r"\buv sync\b[^\n]*", dockerfile)
    assert syncs and all("--frozen" in s for s in syncs)
    assert "COPY connector_sandbox " in dockerfile  # `connector demo` works in the image
    assert _image_user() != 0
    assert re.search(r'^CMD \["sync"\]', dockerfile, re.M)


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_environments_and_secrets_out_of_the_build_context() -> None:
    patterns = _dockerignore()
    for excluded in (".venv", ".env", ".git", ".pytest_cache", "**/__pycache__"):
        assert excluded in patterns, excluded
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", _dockerfile(), re.M)
    sources = {s for line in copied for s in line.split()}
    assert sources == {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "connector",
        "connector_sandbox",
        "mappings",
    }
    assert not sources & {p.lstrip("!") for p in patterns}, "the Dockerfile copies an ignored path"


# --- .env.example -------------------------------------------------------------------------------


def _env_example() -> list[str]:
    return ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()


def test_env_example_has_no_empty_values_and_only_real_settings() -> None:
    for number, line in enumerate(_env_example(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        found = ASSIGNMENT.match(line)
        assert found, f"line {number} is neither a comment nor CONNECTOR_NAME=value: {line!r}"
        name, value = found.group(2), found.group(3)
        assert name in SETTINGS, f"line {number}: {name} is no setting"
        assert value.strip(), f"line {number}: {name} is empty: comment it out instead"
        assert value == value.strip() and value[0] not in "'\"", f"line {number}: no quotes/spaces"
        assert " #" not in value, f"line {number}: no comment after a value"


def test_env_example_documents_every_setting_with_a_comment() -> None:
    lines = _env_example()
    text = "\n".join(lines)
    missing = [name for name in SETTINGS if name not in text]
    assert not missing, f"settings missing from .env.example: {missing}"
    for number, line in enumerate(lines):
        found = ASSIGNMENT.match(line)
        if found and not found.group(1):  # an active setting: a prose comment right above it
            above = lines[number - 1]
            assert above.startswith("#") and not ASSIGNMENT.match(above), line


def test_env_example_needs_no_developer_token_and_keeps_state_absolute() -> None:
    active = {
        m.group(2): m.group(3)
        for line in _env_example()
        if (m := ASSIGNMENT.match(line)) and not m.group(1)
    }
    assert "CONNECTOR_GOOGLE_ADS__DEVELOPER_TOKEN" not in active
    assert "no longer needed" in ENV_EXAMPLE.read_text(encoding="utf-8")
    assert _absolute_state(active["CONNECTOR_STATE_URL"])
    for name, value in active.items():
        if name.endswith(("_FILE", "_BUNDLE", "_PATH")):
            assert Path(value).is_absolute(), name


def test_env_example_loads_as_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("CONNECTOR_")]:
        monkeypatch.delenv(name)
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert (
        "CONNECTOR_SALESFORCE__PRIVATE_KEY_FILE=/etc/connector/secrets/salesforce-jwt.key" in text
    )
    # The key files must exist when the settings load: stand-ins where the example points.
    for secret in ("salesforce-jwt.key", "google-service-account.json"):
        (tmp_path / secret).write_text("stand-in", encoding="utf-8")
    copied = tmp_path / ".env"
    copied.write_text(text.replace("/etc/connector/secrets/", f"{tmp_path}/"), encoding="utf-8")
    settings = Settings(_env_file=copied)  # type: ignore[call-arg]
    settings.require_for_sync()  # a complete example: only the placeholders are to be replaced
    assert settings.state_url == "sqlite:////var/lib/connector/connector.db"
    assert settings.salesforce.private_key_file == tmp_path / "salesforce-jwt.key"
    assert getattr(settings.google_ads, "developer_token", None) is None  # gone with issue 16


# --- README -------------------------------------------------------------------------------------


def test_readme_points_at_existing_deploy_files() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\bdeploy/[\w./-]*[\w]", readme))
    assert named, "README names no deploy/ file"
    for path in named:
        assert (REPO / path).exists(), f"README names {path}, which does not exist"
    for path in DEPLOY_FILES:
        relative = path.relative_to(REPO)
        assert {str(relative), str(relative.parent)} & named, f"README does not mention {relative}"
