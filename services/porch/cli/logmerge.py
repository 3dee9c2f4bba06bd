"""`porch logs --all [-f]`: every log of the node, interleaved by time (issue 13 item 2).

Each line is printed after the name of what wrote it (`kernel | ...`); a JSON line
(`[logging] format = "json"`) is printed as it is, since it names its service itself.
Lines are ordered by the time at their start (a text line's local time, a JSON line's
`ts`); a line without one (a traceback's) keeps its place after the line before it.
Following, every log is polled, new logs are picked up, and a rotated log is read
again from its start.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

_TEXT_TIME = re.compile(rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[,.](\d{3})")


def line_time(line: bytes) -> float | None:
    """The Unix time a log line starts with, if any."""
    if line.startswith(b"{"):
        try:
            record = json.loads(line)
            ts = record.get("ts") if isinstance(record, dict) else None
            if isinstance(ts, str):
                return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
        return None
    match = _TEXT_TIME.match(line)
    if match is None:
        return None
    try:
        stamp = time.mktime(time.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return None
    return stamp + int(match.group(2)) / 1000


def shown(label: str, width: int, line: bytes) -> bytes:
    if line.startswith(b"{") and line_time(line) is not None:
        return line.rstrip(b"\n") + b"\n"
    return f"{label:<{width}} | ".encode() + line.rstrip(b"\n") + b"\n"


def interleave(logs: dict[str, list[bytes]]) -> list[tuple[str, bytes]]:
    """(label, line) of every log, by time; untimed lines stay after their predecessor."""
    keyed: list[tuple[float, int, int, str, bytes]] = []
    for order, (label, lines) in enumerate(sorted(logs.items())):
        last = 0.0
        for i, line in enumerate(lines):
            t = line_time(line)
            last = t if t is not None else last
            keyed.append((last, order, i, label, line))
    keyed.sort()
    return [(label, line) for _, _, _, label, line in keyed]


def tail(path: Path, lines: int) -> list[bytes]:
    """The last `lines` lines of a file (reading at most the last 4 MiB)."""
    if lines <= 0:
        return []
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4 * 1024 * 1024))
        data = f.read()
    got = data.splitlines(keepends=True)
    if size > len(data) and got:
        got = got[1:]  # the first one is cut
    return got[-lines:]


@dataclass
class _Followed:
    path: Path
    handle: BinaryIO
    inode: int
    partial: bytes = b""
    lines: list[bytes] = field(default_factory=list)

    def read(self) -> list[bytes]:
        data = self.handle.read()
        if not data:
            return []
        *done, self.partial = (self.partial + data).split(b"\n")
        return [line + b"\n" for line in done]


def _labels(logs_dir: Path, names: dict[str, str]) -> dict[str, Path]:
    """label -> log file: the program's id for user processes, else its name."""
    found = {}
    for path in sorted(logs_dir.glob("*.log")):
        program = path.name[:-len(".log")]
        found[names.get(program, program)] = path
    return found


def print_all(logs_dir: Path, names: dict[str, str], lines: int, follow: bool,
              out: BinaryIO | None = None, poll_s: float = 0.25, until: float | None = None) -> int:
    """Print the last `lines` of every log, interleaved; with `follow`, then what is
    appended to any of them (until Ctrl-C, or the monotonic time `until`)."""
    out = out or sys.stdout.buffer
    files = _labels(logs_dir, names)
    if not files and not follow:
        print(f"porch: no logs yet in {logs_dir}", file=sys.stderr)
        return 1
    width = max([len(label) for label in files] + [8])
    for label, line in interleave({label: tail(path, lines) for label, path in files.items()}):
        out.write(shown(label, width, line))
    out.flush()
    if not follow:
        return 0
    followed: dict[str, _Followed] = {}
    for label, path in files.items():
        _open(followed, label, path, at_end=True)
    try:
        while until is None or time.monotonic() < until:
            time.sleep(poll_s)
            for label, path in _labels(logs_dir, names).items():
                current = followed.get(label)
                try:
                    st = path.stat()
                except OSError:
                    continue
                if current is None or current.inode != st.st_ino or st.st_size < current.handle.tell():
                    if current is not None:
                        current.handle.close()
                    _open(followed, label, path, at_end=current is None and label in files)
                    width = max(width, len(label))
            fresh = {label: f.read() for label, f in followed.items()}
            for label, line in interleave({k: v for k, v in fresh.items() if v}):
                out.write(shown(label, width, line))
            out.flush()
    except KeyboardInterrupt:
        pass
    for f in followed.values():
        f.handle.close()
    return 0


def _open(followed: dict[str, _Followed], label: str, path: Path, at_end: bool) -> None:
    try:
        handle = path.open("rb")
    except OSError:
        return
    if at_end:
        handle.seek(0, os.SEEK_END)
    followed[label] = _Followed(path, handle, os.fstat(handle.fileno()).st_ino)

