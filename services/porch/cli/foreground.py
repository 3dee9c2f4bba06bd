"""What a foreground `porch up` tells its console while the node runs.

supervisord is silent on the console (its dozen routine lines per start and stop go
to logs/supervisord.log only), so the news that matters is picked out of that log
here: a program that exits when nobody asked it to ("exited: ... not expected", a
crash, a kill -9, an exit during start-up) and one supervisord gives up on ("gave
up: ... FATAL"). Each is said with the end of the program's own log; a program that
keeps failing is said once a minute at most. Stops that were asked for (`porch
restart`, `porch dev`, `porch down`) are "stopped:" lines, never said.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

QUIET_S = 60.0  # a program said to fail is not said again for this long
_NEWS = re.compile(r"(?:WARN|INFO|CRIT) (?:exited: (\S+) \((.*); not expected\)|gave up: (\S+) entered FATAL)")


def log_tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a log (from its last 8 KiB)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 8192))
            data = f.read()
    except OSError:
        return []
    return [line.decode(errors="replace") for line in data.splitlines()[-lines:]]


class LogFollower:
    """The new text of a log file, from where it ended when this was made (a file
    rotated or truncated meanwhile is read again from its start)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_text(self) -> str:
        try:
            size = self.path.stat().st_size
            if size < self.offset:
                self.offset = 0
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return ""
        end = data.rfind(b"\n") + 1  # whole lines only; the rest comes next time
        self.offset += end
        return data[:end].decode(errors="replace")


class Follower:
    """Picks the failures out of supervisord's log lines and says them."""

    def __init__(self, names: dict[str, str], logs_dir: Path, out: TextIO = sys.stderr) -> None:
        self.names = names  # program -> what people call it
        self.logs_dir = logs_dir
        self.out = out
        self.said: dict[str, float] = {}  # program -> when its failure was last said
        self.log = LogFollower(logs_dir / "supervisord.log")

    def quiet(self, program: str, now: float) -> None:
        """Say nothing of `program` for a while (its failure was just said elsewhere)."""
        self.said[program] = now

    def news(self, text: str, now: float) -> list[str]:
        """The lines to print for these lines of supervisord's log."""
        out: list[str] = []
        for found in _NEWS.finditer(text):
            exited, why, gave_up = found.groups()
            program = exited or gave_up
            if now - self.said.get(program, -QUIET_S) < QUIET_S:
                continue
            self.said[program] = now
            name = self.names.get(program, program)
            if gave_up:
                out.append(f"porch: {name} failed to start too many times; supervisord gave up "
                           f"(`porch restart {name}` tries again); the end of its log:")
            else:
                out.append(f"porch: {name} exited ({why}); supervisord starts it again; "
                           "the end of its log:")
            out.extend("    | " + line for line in log_tail(self.logs_dir / f"{program}.log", 5))
            out.append(f"porch: (more of {name}'s failures within a minute are not shown: "
                       f"`porch logs {name} -f`)")
        return out

    def run(self, alive: Callable[[], bool], interval: float = 0.5) -> None:
        """Say failures until alive() is false (the node stopped)."""
        while alive():
            for line in self.news(self.log.new_text(), time.monotonic()):
                print(line, file=self.out, flush=True)
            time.sleep(interval)
