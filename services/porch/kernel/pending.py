"""Requests awaiting a response: who waits, who must answer, by when.

Pure bookkeeping (no sockets, no clock of its own) so the failure semantics can be
unit-tested. Requester and responder are the kernel's connection handles, never the
process ids a message claims, and an entry is keyed by (requester, request id):

- ids are the requester's own: two requesters using the same id never meet, and a
  process that re-registers (a new connection) cannot receive, nor be sent, the
  answers of its previous life;
- a response is accepted once, and only from the connection the request was delivered
  to, for the requester that sent it;
- a live entry is never overwritten (`add` says False): nobody can redirect, answer or
  time out a request that is already pending;
- a deadline fires Timeout once; a responder's death fires Offline for everything
  pending on it; a requester's death drops what it waited for; a late response finds
  nothing and is dropped.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import NamedTuple

Handle = Hashable  # a connection of the kernel's transport


class Waiting(NamedTuple):
    """A request that ended without a response (expired, or its responder went)."""

    requester: Handle
    id: int
    target: str  # the process id the request was for (what the error names)


class PendingTable:
    """Entries by (requester, id): (responder, target, deadline, seq). The deadline heap
    is lazy (an answered entry's item stays until it surfaces or the heap is rebuilt);
    `seq` tells an item from a later entry under the same key."""

    def __init__(self) -> None:
        self._entries: dict[tuple[Handle, int], tuple[Handle, str, int, int]] = {}
        self._deadlines: list[tuple[int, int, tuple[Handle, int]]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple[Handle, int]) -> bool:
        return key in self._entries

    def add(self, requester: Handle, id_: int, responder: Handle, target: str,
            deadline_ms: int) -> bool:
        """Track a request; False (nothing changed) if that requester's id is pending."""
        entries = self._entries
        key = (requester, id_)
        if key in entries:
            return False
        seq = next(self._seq)
        entries[key] = (responder, target, deadline_ms, seq)
        heap = self._deadlines
        heapq.heappush(heap, (deadline_ms, seq, key))
        if len(heap) > 2 * len(entries) + 10_000:
            # Answered requests leave their heap items behind until their deadline;
            # under load that is rate x timeout items. Rebuild from the live entries.
            self._deadlines = [(d, s, k) for k, (_, _, d, s) in entries.items()]
            heapq.heapify(self._deadlines)
        return True

    def answer(self, requester: Handle, id_: int, responder: Handle) -> bool:
        """Remove and accept the entry if `responder` is the connection it went to."""
        key = (requester, id_)
        entry = self._entries.get(key)
        if entry is None or entry[0] != responder:
            return False
        del self._entries[key]
        return True

    def next_deadline(self) -> int | None:
        return self._deadlines[0][0] if self._deadlines else None

    def expire(self, now_ms: int) -> list[Waiting]:
        """Entries whose deadline passed, removed."""
        expired = []
        heap = self._deadlines
        entries = self._entries
        while heap and heap[0][0] <= now_ms:
            _, seq, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is None or entry[3] != seq:
                continue  # answered already, or a later request under the same key
            del entries[key]
            expired.append(Waiting(key[0], key[1], entry[1]))
        if not entries and heap:
            heap.clear()  # every heap item is stale; drop them at once
        return expired

    def responder_gone(self, responder: Handle) -> list[Waiting]:
        """Everything that waited on `responder`, removed (it will never answer).

        A scan of the table: deaths are rare, requests are not, so no per-responder
        index is kept up to date on every request."""
        gone = [(key, entry) for key, entry in self._entries.items() if entry[0] == responder]
        for key, _ in gone:
            del self._entries[key]
        return [Waiting(key[0], key[1], entry[1]) for key, entry in gone]

    def requester_gone(self, requester: Handle) -> int:
        """Forget what `requester` waited for (nobody is left to tell); how many."""
        keys = [key for key in self._entries if key[0] == requester]
        for key in keys:
            del self._entries[key]
        return len(keys)
