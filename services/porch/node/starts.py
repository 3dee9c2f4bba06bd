"""How many times each of the node's programs started since `porch up` (restarts =
starts - 1): supervisord tells a program's state but keeps no count of its restarts.

Each start of a service (`porch.node.startup`) or of a user process (its launcher)
adds one to `<home>/run/starts/<program>`, under an flock so two starts never lose
one; `porch up` clears the directory when it starts the node. Read by the http-server
for the node page, `porch status` and the scrape (porch_process_restarts_total).
"""

from __future__ import annotations

import fcntl
import os
import re

from porch.node.home import NodeHome

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")


def _dir(home: NodeHome) -> str:
    return str(home.run_dir / "starts")


def record_start(home: NodeHome, program: str) -> int:
    """Count one start of `program`; the count now (0 if it could not be recorded:
    a read-only home must not stop anything from starting)."""
    if not _NAME.fullmatch(program):
        return 0
    try:
        os.makedirs(_dir(home), mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(_dir(home), program), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        count = (int(text) if text.isdigit() else 0) + 1
        data = f"{count}\n".encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        return count
    except OSError:
        return 0
    finally:
        os.close(fd)


def read_starts(home: NodeHome) -> dict[str, int]:
    """program -> starts since `porch up` (only those that started at least once)."""
    counts: dict[str, int] = {}
    try:
        names = os.listdir(_dir(home))
    except OSError:
        return counts
    for name in names:
        if not _NAME.fullmatch(name):
            continue
        try:
            with open(os.path.join(_dir(home), name), "rb") as f:
                text = f.read(32).decode("ascii", "replace").strip()
        except OSError:
            continue
        if text.isdigit():
            counts[name] = int(text)
    return counts


def reset(home: NodeHome) -> None:
    """A fresh start of the node: every count starts again from zero."""
    try:
        names = os.listdir(_dir(home))
    except OSError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(_dir(home), name))
        except OSError:
            pass
