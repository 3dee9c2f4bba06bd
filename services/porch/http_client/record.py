"""The outgoing WebSockets open right now, written down in <home>/state/http-client-ws.json.

Connections live in the http-client's memory only: when it is killed (or crashes) they
are gone, and without this record their openers would wait forever for frames that
cannot come. At start the service reads what its previous life left here and tells
each opener `WebSocketClose` for each channel, as a remote close would have.

Writes are debounced (the http-server does the same with its sockets): a burst of opens
and closes costs one write, and a connection opened less than `delay` before a crash may
be missing, which is the price of not fsyncing on every open. Nothing is written when
the set has not changed since the last write, and an empty set is no file at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from porch.files import write_atomic

log = logging.getLogger("porch.http_client")

FILE_NAME = "http-client-ws.json"


@dataclass(frozen=True, order=True)
class Opened:
    """One open connection as its opener knows it: its process, its channel, and the id
    of its WebSocketOpen (frames, and the close, carry that id)."""

    process: str
    channel_id: int
    open_id: int


class WsRecord:
    def __init__(self, path: Path, delay: float = 0.5) -> None:
        self.path = path
        self.delay = delay
        self._written: frozenset[Opened] = frozenset()
        self._timer: asyncio.TimerHandle | None = None

    def take(self) -> list[Opened]:
        """What the previous life left (sorted); the file is removed. A file that cannot
        be read or parsed is reported and removed: it cannot be acted on."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot read %s: %s", self.path, exc)
            return []
        opened: set[Opened] = set()
        try:
            entries = json.loads(data)
            if not isinstance(entries, list):
                raise ValueError("not a list")
            for entry in entries:
                process, channel_id, open_id = entry["process"], entry["channel_id"], entry["open_id"]
                if not (isinstance(process, str) and _is_uint(channel_id, 32) and _is_uint(open_id, 64)):
                    raise ValueError(f"bad entry {entry!r}")
                opened.add(Opened(process, channel_id, open_id))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring %s, which is not a record of WebSockets: %s", self.path, exc)
            opened.clear()
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:  # a read-only disk: start anyway (the next write replaces it)
            log.warning("cannot remove %s: %s", self.path, exc)
        self._written = frozenset()
        return sorted(opened)

    def schedule(self, current: Callable[[], Iterable[Opened]]) -> None:
        """Write `current()` in `delay` seconds (once, however often this is called)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._fire, current)

    def write_now(self, opened: Iterable[Opened]) -> None:
        """Write at once (the service is stopping), cancelling a scheduled write."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._write(frozenset(opened))

    def _fire(self, current: Callable[[], Iterable[Opened]]) -> None:
        self._timer = None
        self._write(frozenset(current()))

    def _write(self, opened: frozenset[Opened]) -> None:
        if opened == self._written:
            return
        try:
            if opened:
                entries = [{"process": o.process, "channel_id": o.channel_id, "open_id": o.open_id}
                           for o in sorted(opened)]
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                write_atomic(self.path, json.dumps(entries, separators=(",", ":")).encode())
            else:
                self.path.unlink(missing_ok=True)
        except OSError as exc:  # the next change tries again
            log.warning("cannot record open WebSockets in %s: %s", self.path, exc)
            return
        self._written = opened


def _is_uint(value: object, bits: int) -> bool:
    """Fits the wire's field (channel ids are uint32, message ids uint64): a value that
    does not would fail when the close is built, at start."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << bits
