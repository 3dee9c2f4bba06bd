"""The bindings as porch kept them before the database: read once, to import them.

state/bindings.json (a snapshot), state/bindings.journal (one JSON line per change
since; a torn last line from a crash mid-append is ignored) and state/static/<sha256>
(static bodies). Reading writes nothing, so it also serves a node whose disk cannot be
written before the import could happen. `remove` deletes the files once the
database holds what they held.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from porch.http_server.bindings import BindingTable

log = logging.getLogger("porch.http_server")

SNAPSHOT = "bindings.json"
JOURNAL = "bindings.journal"
LOCK = "bindings.lock"
STATIC = "static"


def present(state_dir: Path) -> bool:
    return any((state_dir / name).exists() for name in (SNAPSHOT, JOURNAL, STATIC))


@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """The old store's lock, so that an old worker still stopping (it folded the
    journal at stop) is not read half-way. Not taken when it cannot be (read-only)."""
    try:
        fd = os.open(state_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read(state_dir: Path) -> BindingTable | None:
    """The table the old files describe, or None if there are none."""
    if not present(state_dir):
        return None
    data: dict[str, Any] = {}
    snapshot = state_dir / SNAPSHOT
    if snapshot.exists():
        try:
            data = json.loads(snapshot.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s): its bindings are lost", snapshot, exc)
            data = {}
    changes = _journal(state_dir / JOURNAL)
    entries = list(data.get("http", [])) + [e for kind, e in changes if kind == "http"]
    wanted = {e["static"]["sha256"] for e in entries if isinstance(e, dict) and e.get("static")}
    blobs = {}
    for digest in wanted:
        try:
            blobs[digest] = (state_dir / STATIC / digest).read_bytes()
        except OSError:
            log.error("static content %s is missing; its binding is dropped", digest)
    table = BindingTable()
    for kind, entry in [*(("http", e) for e in data.get("http", [])),
                        *(("ws", e) for e in data.get("ws", [])), *changes]:
        try:
            table.apply_entry(kind, entry, blobs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("ignored a %s binding in the old files that is not one (%r): %s", kind, entry, exc)
    return table


def _journal(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.error("cannot read %s (%s): the changes it holds are lost", path, exc)
        return []
    changes = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            (kind, entry), = record.items()
            if kind not in ("http", "ws") or not isinstance(entry, dict):
                raise ValueError(kind)
        except (ValueError, AttributeError):
            log.error("%s line %d is not a binding record (a crash mid-write?): ignored", path, n)
            continue
        changes.append((kind, entry))
    return changes


def remove(state_dir: Path) -> None:
    """Delete the old files (the database holds their bindings now). What cannot be
    removed (a read-only disk) is left, and tried again at the next start."""
    try:
        for name in (SNAPSHOT, JOURNAL, LOCK):
            (state_dir / name).unlink(missing_ok=True)
        static = state_dir / STATIC
        if static.exists():
            shutil.rmtree(static)
    except OSError as exc:
        log.warning("cannot remove the old binding files in %s yet: %s", state_dir, exc)
        return
    log.info("removed the old binding files (%s, %s, %s/) from %s", SNAPSHOT, JOURNAL, STATIC, state_dir)
