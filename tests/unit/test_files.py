"""porch.files: atomic writes, and removing what interrupted ones left (issue 10 item 7)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

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
