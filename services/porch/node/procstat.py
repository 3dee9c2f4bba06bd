"""What /proc says of a process's use of the machine: CPU seconds, resident memory and
when it started (Linux). For the node's figures: every process's cost, read at scrape
time from the pids the kernel and supervisord know, without asking the processes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    cpu_seconds: float  # user + system
    rss_bytes: int
    started: float  # Unix seconds


def _boot_time() -> float | None:
    try:
        for line in (PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def proc_stat(pid: int) -> ProcStat | None:
    """The process's figures, or None if it is gone (or /proc cannot tell)."""
    if pid <= 0:
        return None
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # from field 3 (state) on
    if len(fields) < 22:
        return None
    boot = _boot_time()
    utime, stime, start_ticks, rss_pages = int(fields[11]), int(fields[12]), int(fields[19]), int(fields[21])
    return ProcStat(cpu_seconds=(utime + stime) / _TICKS, rss_bytes=rss_pages * _PAGE,
                    started=(boot or 0.0) + start_ticks / _TICKS)
