"""porch.files.write_atomic: a file in the node home is replaced whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from porch import files


def test_the_new_content_replaces_the_old_with_the_mode_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    files.write_atomic(path, b"new", mode=0o640)
    assert path.read_bytes() == b"new"
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["state.json"], "no temporary file is left"


def test_the_temporary_file_is_a_hidden_sibling_named_after_the_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside the target, so the rename is atomic (same filesystem); hidden and named
    after it, so a leftover from a crash is recognisable and matches no reader's glob."""
    renamed: list[tuple[str, str]] = []
    replace = os.replace

    def spy(src: str, dst: str) -> None:
        renamed.append((str(src), str(dst)))
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", spy)
    path = tmp_path / "ws.json"
    files.write_atomic(path, b"x")
    [(src, dst)] = renamed
    assert Path(src).parent == tmp_path and Path(src).name.startswith(".ws.json.")
    assert dst == str(path)


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        files.write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_target_that_cannot_be_replaced_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a-directory"
    target.mkdir()
    with pytest.raises(OSError):
        files.write_atomic(target, b"x")
    assert os.listdir(tmp_path) == ["a-directory"]
