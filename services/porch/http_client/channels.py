"""Who owns which outgoing WebSocket: (process, channel id) -> connection, with generations.

Kinode keys connections by (process, channel id) and, when a channel is re-opened, lets
the old connection's listener remove the *new* entry when it sees its own close
(docs/kinode.md §6.5, D12). Here every open gets a generation number when it is asked for;
an entry is only ever removed or replaced by whoever holds its generation, and a
handshake that completes after its key was closed, re-opened more recently, or its
process died, is discarded instead of installed.

Pure bookkeeping, generic in the connection type, so it is unit-tested without sockets.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C")
Key = tuple[str, int]  # (process id, channel id)


@dataclass(slots=True)
class Entry(Generic[C]):
    key: Key
    generation: int
    conn: C
    open_id: int   # id of the WebSocketOpen request: incoming frames carry it (as Kinode)
    url: str


class ChannelTable(Generic[C]):
    def __init__(self) -> None:
        self._entries: dict[Key, Entry[C]] = {}
        self._generations = itertools.count(1)
        self._pending: Counter[Key] = Counter()
        # Handshakes of a key (or of a process) with a generation at or below the floor
        # were cancelled (closed or dead meanwhile). Only kept while some are pending.
        self._key_floor: dict[Key, int] = {}
        self._process_floor: dict[str, int] = {}
        self._last = 0

    def __len__(self) -> int:
        """Connections open plus handshakes in progress (what the node's cap counts)."""
        return len(self._entries) + sum(self._pending.values())

    def begin(self, key: Key) -> int:
        """A handshake for `key` starts; returns its generation."""
        self._last = next(self._generations)
        self._pending[key] += 1
        return self._last

    def complete(self, key: Key, generation: int, conn: C, open_id: int, url: str
                 ) -> tuple[Entry[C] | None, Entry[C] | None]:
        """The handshake succeeded: (the installed entry or None if it must be discarded,
        the entry it replaced, whose connection the caller closes without telling)."""
        self._done(key)
        current = self._entries.get(key)
        floor = max(self._key_floor.get(key, 0), self._process_floor.get(key[0], 0),
                    current.generation if current is not None else 0)
        self._prune(key)
        if generation <= floor:
            return None, None
        entry = Entry(key, generation, conn, open_id, url)
        self._entries[key] = entry
        return entry, current

    def fail(self, key: Key) -> None:
        """The handshake failed."""
        self._done(key)
        self._prune(key)

    def get(self, key: Key) -> Entry[C] | None:
        return self._entries.get(key)

    def is_current(self, key: Key, generation: int) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.generation == generation

    def cancelled(self, key: Key, generation: int) -> bool:
        """Whether a handshake in progress has already lost (closed, dead, superseded)."""
        current = self._entries.get(key)
        return generation <= max(self._key_floor.get(key, 0), self._process_floor.get(key[0], 0),
                                 current.generation if current is not None else 0)

    def remove(self, key: Key) -> tuple[Entry[C] | None, bool]:
        """The process closes `key`: (the entry removed, whether a handshake was cancelled)."""
        entry = self._entries.pop(key, None)
        pending = self._pending.get(key, 0) > 0
        if pending:
            self._key_floor[key] = self._last
        return entry, pending

    def remove_if_current(self, key: Key, generation: int) -> Entry[C] | None:
        """The connection of that generation ended by itself: remove it only if it is
        still the one in the table (never a newer one)."""
        entry = self._entries.get(key)
        if entry is None or entry.generation != generation:
            return None
        del self._entries[key]
        return entry

    def remove_process(self, process: str) -> list[Entry[C]]:
        """The process is gone: remove its entries and cancel its handshakes."""
        removed = [e for k, e in self._entries.items() if k[0] == process]
        for entry in removed:
            del self._entries[entry.key]
        if any(k[0] == process and n > 0 for k, n in self._pending.items()):
            self._process_floor[process] = self._last
        return removed

    def entries(self) -> list[Entry[C]]:
        return list(self._entries.values())

    def _done(self, key: Key) -> None:
        self._pending[key] -= 1
        if self._pending[key] <= 0:
            del self._pending[key]

    def _prune(self, key: Key) -> None:
        if key not in self._pending:
            self._key_floor.pop(key, None)
        process = key[0]
        if process in self._process_floor and not any(k[0] == process for k in self._pending):
            del self._process_floor[process]
