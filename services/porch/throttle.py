"""Log lines for events that can come in floods: at most one per interval, with the
count of what it stands for (a refused connection, a dropped frame, a busy worker)."""

from __future__ import annotations

import time


class Every:
    """`due()` counts one event; it returns how many there were since the last line
    when a line is due (at most once per `interval` seconds), else 0."""

    __slots__ = ("count", "interval", "last")

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.last = -interval  # the first event is due
        self.count = 0

    def due(self) -> int:
        self.count += 1
        now = time.monotonic()
        if now - self.last < self.interval:
            return 0
        self.last, count, self.count = now, self.count, 0
        return count
