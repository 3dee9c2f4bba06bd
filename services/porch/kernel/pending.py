"""Requests awaiting a response: who waits, who must answer, by when.

Pure bookkeeping (no sockets, no clock of its own) so the failure semantics of
DESIGN.md can be unit-tested: a response is accepted once, only from the process the
request went to; a deadline fires Timeout once; a death fires Offline for everything
pending on the dead process; a late response finds nothing and is dropped.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

# (process that receives the response, request id): ids are unique per requester.
Key = tuple[str, int]


@dataclass(slots=True)
class Pending:
    responder: str
    deadline_ms: int


class PendingTable:
    def __init__(self) -> None:
        self._entries: dict[Key, Pending] = {}
        self._by_responder: dict[str, set[Key]] = {}
        self._deadlines: list[tuple[int, str, int]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Key) -> bool:
        return key in self._entries

    def add(self, key: Key, responder: str, deadline_ms: int) -> None:
        self._entries[key] = Pending(responder, deadline_ms)
        keys = self._by_responder.get(responder)
        if keys is None:
            keys = self._by_responder[responder] = set()
        keys.add(key)
        heap = self._deadlines
        heapq.heappush(heap, (deadline_ms, key[0], key[1]))
        if len(heap) > 2 * len(self._entries) + 10_000:
            # Answered requests leave their heap items behind until their deadline;
            # under load that is rate x timeout items. Rebuild from the live entries.
            self._deadlines = [(p.deadline_ms, k[0], k[1]) for k, p in self._entries.items()]
            heapq.heapify(self._deadlines)

    def answer(self, key: Key, responder: str) -> bool:
        """Remove and accept the entry if `responder` is the process the request went to."""
        entry = self._entries.get(key)
        if entry is None or entry.responder != responder:
            return False
        del self._entries[key]
        self._by_responder[responder].discard(key)
        return True

    def next_deadline(self) -> int | None:
        return self._deadlines[0][0] if self._deadlines else None

    def expire(self, now_ms: int) -> list[tuple[Key, str]]:
        """Entries whose deadline passed: (key, responder) each, removed."""
        expired = []
        heap = self._deadlines
        while heap and heap[0][0] <= now_ms:
            deadline, who, id_ = heapq.heappop(heap)
            key = (who, id_)
            entry = self._entries.get(key)
            if entry is None or entry.deadline_ms != deadline:
                continue  # answered already, or re-added with another deadline
            del self._entries[key]
            self._by_responder[entry.responder].discard(key)
            expired.append((key, entry.responder))
        if not self._entries and heap:
            heap.clear()  # every heap item is stale; drop them at once
        return expired

    def responder_gone(self, responder: str) -> list[Key]:
        """Everything that waited on `responder`, removed (it will never answer)."""
        keys = self._by_responder.pop(responder, set())
        for key in keys:
            self._entries.pop(key, None)
        return sorted(keys)
