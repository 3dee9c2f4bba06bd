"""`porch dev APP_DIR`: the development loop. The app's process runs on the node (its
entry is added to porch.toml and the node started, or porch.toml applied, when
needed); every change to a file of the app restarts it, and its log is printed as it
grows. Ctrl-C stops the watching; the node keeps running.

Files are polled (their size and modification time, a few times a second): an app
directory holds tens of files, and polling needs no dependency and sees every kind of
change (an editor's save-by-rename included).
"""

from __future__ import annotations

import os
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from porch.cli import supervise
from porch.cli.foreground import LogFollower
from porch.node.config import ProcessSpec
from porch.node.home import NodeHome

Snapshot = dict[str, tuple[int, int]]
_SKIP_DIRS = {"__pycache__", "node_modules", ".venv", "venv"}


def snapshot(root: Path) -> Snapshot:
    """relative path -> (size, mtime in ns) of every file that belongs to the app:
    hidden files and directories, caches and virtualenvs left out."""
    found: Snapshot = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        for name in files:
            if name.startswith(".") or name.endswith((".pyc", ".swp", "~")):
                continue
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except OSError:  # gone meanwhile
                continue
            found[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return found


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """The files added, removed or modified between two snapshots, sorted."""
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def watch(app_dir: Path, interval: float = 0.3, last: Snapshot | None = None) -> Iterator[list[str]]:
    """Yield the changed files each time the app's files change and then stay still for
    one more interval (an editor writing several files, or one in pieces, is one
    change); yields [] at every quiet interval so that the caller can do its work.
    `last`: the files as they were when watching began (taken now if not given)."""
    if last is None:
        last = snapshot(app_dir)
    while True:
        time.sleep(interval)
        now = snapshot(app_dir)
        names = changed(last, now)
        if not names:
            yield []
            continue
        while True:  # wait for it to settle
            time.sleep(interval)
            settled = snapshot(app_dir)
            if settled == now:
                break
            names = sorted(set(names) | set(changed(now, settled)))
            now = settled
        last = now
        yield names


def loop(home: NodeHome, spec: ProcessSpec, sup: supervise.Supervisor, out: TextIO = sys.stdout,
         keep_going: Callable[[], bool] = lambda: True, interval: float = 0.3) -> int:
    """Restart the app's program at every change of its files, printing its log as
    it grows, until Ctrl-C (or keep_going() is false)."""
    app_dir = Path(spec.directory)
    follower = LogFollower(home.logs_dir / f"{spec.program_name}.log")
    # The files as they are before "watching" is said: a change made after that line
    # restarts the app even if this process is slow to begin polling.
    first = snapshot(app_dir)
    print(f"porch: watching {app_dir} to restart {spec.id} when a file changes; its log "
          "follows (Ctrl-C stops watching, the node keeps running)", file=out, flush=True)
    try:
        for names in watch(app_dir, interval, first):
            text = follower.new_text()
            if text:
                out.write(text)
                out.flush()
            if names:
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                try:
                    sup.restart(spec.program_name)
                    print(f"porch: restarted {spec.id} ({shown} changed)", file=out, flush=True)
                except xmlrpc.client.Fault as exc:
                    print(f"porch: {spec.id} did not start again after {shown} changed "
                          f"({exc.faultString.split(':', 1)[0]}); its log says why; the next "
                          "change tries again", file=out, flush=True)
                except OSError as exc:
                    print(f"porch: the node is not answering ({exc}); `porch up` starts it",
                          file=out, flush=True)
                    return 1
            if not keep_going():
                return 0
    except KeyboardInterrupt:
        print(f"\nporch: stopped watching; the node keeps running (`porch down --home {home.root}` "
              "stops it)", file=out, flush=True)
        return 0
    return 0
