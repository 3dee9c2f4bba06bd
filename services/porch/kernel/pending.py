"""Requests awaiting a response: who waits, who must answer, by when.

Pure bookkeeping (no sockets, no clock of its own) so the failure semantics of
DESIGN.md can be unit-tested: a response is accepted once, only from the process the
request went to; a deadline fires Timeout once; a death fires Offline for everything
pending on the dead process; a late response finds nothing and is dropped.
"""

from __future__ import annotations

import heapq

# (process that receives the response, request id): ids are unique per requester.
Key = tuple[str, int]


class PendingTable:
    """Entries are (responder, deadline) tuples by key; the deadline heap is lazy (an
    answered entry's item stays until it surfaces or the heap is rebuilt). Kept lean:
    the kernel adds and answers one entry per request/response pair."""

    def __init__(self) -> None:
        self._entries: dict[Key, tuple[str, int]] = {}
        self._deadlines: list[tuple[int, str, int]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Key) -> bool:
        return key in self._entries

    def add(self, key: Key, responder: str, deadline_ms: int) -> None:
        entries = self._entries
        entries[key] = (responder, deadline_ms)
        heap = self._deadlines
        heapq.heappush(heap, (deadline_ms, key[0], key[1]))
        if len(heap) > 2 * len(entries) + 10_000:
            # Answered requests leave their heap items behind until their deadline;
            # under load that is rate x timeout items. Rebuild from the live entries.
            self._deadlines = [(d, k[0], k[1]) for k, (_, d) in entries.items()]
            heapq.heapify(self._deadlines)

    def answer(self, key: Key, responder: str) -> bool:
        """Remove and accept the entry if `responder` is the process the request went to."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != responder:
            return False
        del self._entries[key]
        return True

    def next_deadline(self) -> int | None:
        return self._deadlines[0][0] if self._deadlines else None

    def expire(self, now_ms: int) -> list[tuple[Key, str]]:
        """Entries whose deadline passed: (key, responder) each, removed."""
        expired = []
        heap = self._deadlines
        entries = self._entries
        while heap and heap[0][0] <= now_ms:
            deadline, who, id_ = heapq.heappop(heap)
            key = (who, id_)
            entry = entries.get(key)
            if entry is None or entry[1] != deadline:
                continue  # answered already, or re-added with another deadline
            del entries[key]
            expired.append((key, entry[0]))
        if not entries and heap:
            heap.clear()  # every heap item is stale; drop them at once
        return expired

    def responder_gone(self, responder: str) -> list[Key]:
        """Everything that waited on `responder`, removed (it will never answer).

        A scan of the table: deaths are rare, requests are not, so no per-responder
        index is kept up to date on every request."""
        keys = [key for key, (who, _) in self._entries.items() if who == responder]
        for key in keys:
            del self._entries[key]
        return sorted(keys)
