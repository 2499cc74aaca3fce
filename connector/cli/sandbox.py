"""`connector sandbox`: the demo's emulators in the foreground, to try every command by hand.

The emulators are loaded as the demo's (`demo_sandbox`): the Google Ads API
emulator knows the dataset's campaigns, their daily cost and the click behind
each gclid, so `connector costs` reads cost and `connector report` shows it.
It writes an env file pointing every setting at the emulators (sandbox-only
credentials: they unlock nothing else), then waits for Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from connector import stopping
from connector.cli.app import JsonOption, app, console
from connector.summary_view import print_json

if TYPE_CHECKING:
    from pydantic import BaseModel

    from connector.settings import Settings


@app.command("sandbox")
def sandbox_command(
    leads: Annotated[int, typer.Option(min=10, max=200_000, help="Leads to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the generated dataset.")] = 7,
    env_file: Annotated[
        Path | None,
        typer.Option(help="Where to write the settings (default: sandbox.env in the state dir)."),
    ] = None,
    upload_api: Annotated[
        Literal["datamanager", "ads_api"], typer.Option(help="Google Ads upload path.")
    ] = "datamanager",
    as_json: JsonOption = False,
) -> None:
    """Run the emulators with the demo dataset until Ctrl-C, and write an env file for them.

    Exit codes: 0 stopped by Ctrl-C or SIGTERM.
    """
    # Imported here: the emulators are needed by this command only.
    from connector.demo import demo_mapping, demo_sandbox, new_state_dir

    state_dir = new_state_dir("sandbox")
    path = (env_file or state_dir / "sandbox.env").resolve()
    with demo_sandbox(leads, seed) as box:
        settings = box.settings(
            f"sqlite:///{state_dir / 'connector.db'}", demo_mapping(), upload_api=upload_api
        )
        write_env_file(path, settings)
        info = {"env_file": str(path), "state_dir": str(state_dir), "try": _commands(path)}
        if as_json:
            print_json(info)
        else:
            _print_instructions(info)
        sys.stdout.flush()  # seen now, also when stdout is a pipe or a container log
        _wait_for_stop()
    if not as_json:
        console().print("emulators stopped")


def env_lines(model: BaseModel, prefix: str = "CONNECTOR_") -> list[str]:
    """`NAME=value` for each setting explicitly set on `model`, nested groups joined by `__`."""
    from pydantic import BaseModel

    lines = []
    for name in sorted(model.model_fields_set):
        value: Any = getattr(model, name)
        key = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            lines.extend(env_lines(value, f"{key}__"))
        elif value is not None:
            lines.append(f"{key}={shlex.quote(_env_value(value))}")
    return lines


def _env_value(value: Any) -> str:
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_env_file(path: Path, settings: Settings) -> None:
    lines = [
        "# connector sandbox: local emulators only; these credentials unlock nothing else.",
        *env_lines(settings),
        # gRPC (the Google Ads API checks) reads its TLS roots from here, not from a setting.
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH="
        + shlex.quote(os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"]),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)


def _commands(env_file: Path) -> list[str]:
    from connector.demo import command_name

    program = command_name()
    return [
        f"set -a; . {shlex.quote(str(env_file))}; set +a",
        f"{program} check --online",
        f"{program} sync --dry-run",
        f"{program} sync",
        f"{program} runs",
        f"{program} costs",
        f"{program} report",
    ]


def _print_instructions(info: dict[str, Any]) -> None:
    out = console()
    out.print(f"Emulators running. Settings for them: {info['env_file']}")
    out.print("In another shell, try:", highlight=False)
    for command in info["try"]:
        out.print(f"  {command}", markup=False, highlight=False)
    out.print("Ctrl-C stops the emulators.")


def _wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM (a container stop, or Ctrl-C)."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping.sleep_unless(stop, 3600):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
