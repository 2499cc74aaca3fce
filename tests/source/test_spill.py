"""The scratch file that puts a Bulk job's rows back in order."""

from __future__ import annotations

import random
from contextlib import closing
from pathlib import Path

import pytest

from connector.errors import SourceError
from connector.source.spill import Spill


def test_rows_come_back_in_key_order_ties_in_arrival_order() -> None:
    with closing(Spill()) as spill:
        spill.add([("b", ["b", "1"]), ("a", ["a", "1"]), ("b", ["b", "2"])])
        spill.add([("a", ["a", "2"]), ("c", ["c", ""])])
        assert spill.count == 5
        assert list(spill.rows()) == [["a", "1"], ["a", "2"], ["b", "1"], ["b", "2"], ["c", ""]]


def test_many_rows_in_any_order_come_back_sorted() -> None:
    keys = [f"2026-11-{day:02d}T{i:06d}" for day in range(1, 29) for i in range(500)]
    shuffled = random.Random(7).sample(keys, len(keys))
    with closing(Spill()) as spill:
        spill.add((key, [key, "x" * 40]) for key in shuffled)
        assert [row[0] for row in spill.rows()] == keys


def test_the_scratch_file_has_no_name_while_it_holds_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its rows hold contact data in clear: nothing under TMPDIR while it is open, so a
    # killed process leaves none behind, and no other process can open it.
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the process's scratch files go
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    with closing(Spill()) as spill:
        spill.add((f"k{i:06d}", ["jane.doe@example.com", "x" * 300]) for i in range(50_000))
        assert list(tmp_path.iterdir()) == []
        assert sum(1 for _ in spill.rows()) == 50_000  # written past SQLite's page cache
    assert list(tmp_path.iterdir()) == []


def test_no_room_for_the_scratch_file_is_a_source_error_naming_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_directory = tmp_path / "full"
    not_a_directory.write_text("", encoding="utf-8")
    monkeypatch.setattr("tempfile.tempdir", str(not_a_directory))
    with pytest.raises(SourceError) as no_room:
        Spill()
    assert "TMPDIR" in str(no_room.value) and no_room.value.retryable
