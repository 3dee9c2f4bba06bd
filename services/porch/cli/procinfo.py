"""What /proc says of a process: its children and how long it has run (Linux).

`porch status` uses it to show the http-server's worker beside its keeper: the
keeper (the program supervisord knows) keeps its pid across `porch restart
http-server`, so the worker's pid and uptime are what show that a restart happened.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parens)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def children(pid: int) -> list[int]:
    """Pids whose parent is pid."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))  # state, ppid, ...
            if fields is not None and len(fields) > 1 and fields[1] == str(pid):
                found.append(int(entry.name))
    return sorted(found)


def uptime_s(pid: int) -> float | None:
    """Seconds since the process started, or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    started_ticks = int(fields[19])  # field 22 of stat: starttime, in clock ticks since boot
    try:
        boot_s = float((PROC / "uptime").read_text().split()[0])
    except OSError:
        return None
    return max(0.0, boot_s - started_ticks / os.sysconf("SC_CLK_TCK"))


def hms(seconds: float) -> str:
    """supervisord's uptime format: H:MM:SS (days as hours)."""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
