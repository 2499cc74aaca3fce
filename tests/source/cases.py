"""Shared cases for the source tests."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import MAPPING


def snapshot_mapping(tmp_path: Path) -> Path:
    """The example mapping with both objects read in snapshot mode."""
    text = MAPPING.read_text(encoding="utf-8")
    for history in ("LeadHistory", "OpportunityFieldHistory"):
        text = text.replace(
            f"history_object: {history}", f"mode: snapshot\n  history_object: {history}"
        )
    path = tmp_path / "snapshot.yaml"
    path.write_text(text, encoding="utf-8")
    return path
