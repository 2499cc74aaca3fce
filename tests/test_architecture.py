"""The package's shape: no import cycle, layers in data-flow order, emulators kept apart.

Imports are read from the source (nothing is imported), inside functions too:
an import deferred into a function still makes a cycle, only a later one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ROOT / "connector"
# Lower layers never import higher ones (pipeline and CLI sit on top of them all).
FOUNDATION = {"connector.core", "connector.errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PRODUCT) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(package.rglob("*.py"))}


def imported(path: Path, known: set[str]) -> Iterator[str]:
    """The modules of `known` that `path` imports, wherever in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 more
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    yield f"{base}.{alias.name}"  # a submodule
                elif base in known:
                    yield base


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(path, known)) - {name} for name, path in found.items()}


def first_level(module: str) -> str:
    """connector.ledger.queue -> connector.ledger; connector.pipeline -> connector.pipeline."""
    return ".".join(module.split(".")[:2])


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_modules() -> None:
    assert cycle(graph()) is None


def test_no_import_cycle_between_first_level_packages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in graph().items():
        here = first_level(module)
        packages.setdefault(here, set()).update(
            first_level(t) for t in targets if first_level(t) != here
        )
    assert cycle(packages) is None


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(FOUNDATION))
def test_the_core_records_import_nothing_of_ours(module: str) -> None:
    assert graph()[module] == set()


def test_only_the_cli_and_demo_sit_above_the_pipeline() -> None:
    importers = {m for m, targets in graph().items() if "connector.pipeline" in targets}
    assert importers <= {"connector.cli.app", "connector.demo", "connector.check"}


def test_the_product_imports_the_emulators_only_in_the_demo() -> None:
    users = set()
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(n.startswith("connector_sandbox") for n in names):
                users.add(name)
    assert users <= {"connector.demo", "connector.cli.sandbox"}


def test_a_sync_needs_no_emulator_dependency() -> None:
    code = (
        "import sys, connector.cli, connector.pipeline, connector.check; "
        "from connector.destinations.google_ads import datamanager, legacy; "
        "from connector.destinations import ga4; "
        "bad = sorted(m for m in sys.modules if m.startswith(('trustme', 'connector_sandbox'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
