"""Files a node keeps in its home: written whole or not at all, and no debris left.

A write goes to a temporary file beside its target (`.<name>.<8 random characters>`,
mode set before any byte is written), fsync'd, then renamed over the target. A process
killed mid-write leaves that temporary file behind; `remove_leftovers` removes such
files at the next start. The writer holds an flock on its temporary file for as long
as it exists, so a leftover is told from a write in progress by the lock alone: a
lock that can be taken has no living writer (the kernel drops it with the process).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# mkstemp's names: the prefix we give, then 8 of "a-z0-9_".
TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}")
# A temporary file younger than this is left alone even when unlocked: it may be in
# the instant between its creation and its writer's flock.
MIN_LEFTOVER_AGE_S = 2.0


@contextmanager
def temp_beside(path: Path, mode: int = 0o600) -> Iterator[tuple[int, Path]]:
    """(fd, name) of a new temporary file in path's directory, locked for the writer
    and removed on exit unless the caller renamed or linked it away."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # ours alone: marks the file as being written
        os.fchmod(fd, mode)
        yield fd, Path(tmp)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace path with data: a reader sees the old file or the new one, and after
    return the new one survives a crash (file and directory fsync'd)."""
    with temp_beside(path, mode) as (fd, tmp):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS):
            raise
    finally:
        os.close(fd)


def remove_leftovers(directory: Path, now: float | None = None) -> tuple[list[Path], list[str]]:
    """Remove the temporary files of interrupted writes in `directory` (not below it).

    (removed, problems): what was removed, and a line per file that should have been
    but could not (a read-only disk, say). A file some living process still writes
    (its flock is held) or created in the last MIN_LEFTOVER_AGE_S is kept."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    problems: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed, problems
    for entry in entries:
        if not TEMP_NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < MIN_LEFTOVER_AGE_S:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # its writer finished meanwhile
        except OSError as exc:
            problems.append(f"{path}: {exc}")
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a write in progress
        else:
            try:
                os.unlink(path)
                removed.append(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(f"{path}: {exc}")
        finally:
            os.close(fd)
    return removed, problems
