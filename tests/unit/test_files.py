"""porch.files: atomic writes, and removing what interrupted ones left (issue 10 item 7)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from porch import files
from porch.files import MIN_LEFTOVER_AGE_S, remove_leftovers, temp_beside, write_atomic


def aged(path: Path, data: bytes = b"half a file") -> Path:
    path.write_bytes(data)
    old = time.time() - 10 * MIN_LEFTOVER_AGE_S
    os.utime(path, (old, old))
    return path


def test_write_atomic_replaces_whole_private_and_leaves_nothing_beside(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    write_atomic(target, b"one")
    write_atomic(target, b"two" * 100_000)
    assert target.read_bytes() == b"two" * 100_000
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_leftovers_of_dead_writers_are_removed_live_and_fresh_ones_kept(tmp_path: Path) -> None:
    dead = [aged(tmp_path / ".port.k2j4_x9a"), aged(tmp_path / ".bindings.json.abcdefgh")]
    keep = [aged(tmp_path / "bindings.json"), aged(tmp_path / ".hidden"), aged(tmp_path / ".a.b.TOOLONGNAME")]
    fresh = tmp_path / ".jwt.secret.0000aaaa"
    fresh.write_bytes(b"being written right now")
    (tmp_path / ".dir.abcdefgh").mkdir()
    with temp_beside(tmp_path / "rpc.token") as (fd, writing):
        os.write(fd, b"in progress")
        os.utime(writing, (time.time() - 60, time.time() - 60))  # a slow write: old, but locked
        removed, problems = remove_leftovers(tmp_path)
        assert writing.exists(), "a write in progress (its flock held) is never touched"
    assert sorted(removed) == sorted(dead) and problems == []
    for path in [*keep, fresh, tmp_path / ".dir.abcdefgh"]:
        assert path.exists(), path
    assert not writing.exists(), "temp_beside removes its file when the write is abandoned"


def test_a_missing_directory_has_no_leftovers(tmp_path: Path) -> None:
    assert remove_leftovers(tmp_path / "nope") == ([], [])


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
