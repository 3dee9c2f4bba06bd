"""Response bodies on their way to the caller: held small in memory, large in a memfd,
and counted against the service's in-flight byte budget.

A body of FD_BLOB_MIN bytes or more is written into a memfd as it arrives and handed to
the kernel as a descriptor (porch.link.fds), so the http-client never holds it whole:
4 x 50 MB fetched at once used to cost ~2.5x the bytes in the http-client alone (the
pieces, then the joined body, then the outgoing queue), plus as much again in the
kernel. What every body read at once may hold is `max_inflight_bytes`: a body whose
next piece would pass it fails (ExecuteRequestFailed, "http-client busy") instead of
growing the node's memory without bound.
"""

from __future__ import annotations

import threading

from porch.link.fds import FD_BLOB_MIN, BlobFile, MemfdWriter


class InflightBudget:
    """Bytes of response bodies read and not yet handed over, all workers together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give_back(self, n: int) -> None:
        with self._lock:
            self.used -= n


class BodyCollector:
    """One body as it arrives: pieces in memory up to FD_BLOB_MIN, then a memfd."""

    def __init__(self, budget: InflightBudget) -> None:
        self.budget = budget
        self.size = 0  # bytes taken from the budget (all of them until `release`)
        self._pieces: list[bytes] = []
        self._file: MemfdWriter | None = None

    def add(self, piece: bytes) -> bool:
        """False (nothing added) when the budget cannot take it."""
        if not self.budget.take(len(piece)):
            return False
        self.size += len(piece)
        if self._file is not None:
            self._file.write(piece)
        elif self.size >= FD_BLOB_MIN:
            self._file = MemfdWriter("porch-http-body")
            for earlier in self._pieces:
                self._file.write(earlier)
            self._file.write(piece)
            self._pieces = []
        else:
            self._pieces.append(piece)
        return True

    def finish(self) -> Body:
        """The body, owning the budget it took."""
        if self._file is not None:
            blob: bytes | BlobFile = BlobFile(self._file.seal(), self.size)
            self._file = None
        else:
            blob = b"".join(self._pieces)
            self._pieces = []
        return Body(blob, self.size, self.budget)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pieces = []
        self.budget.give_back(self.size)
        self.size = 0


class Body:
    """A finished body (bytes, or a BlobFile) and the budget it holds until released."""

    __slots__ = ("budget", "data", "size")

    def __init__(self, data: bytes | BlobFile, size: int, budget: InflightBudget | None) -> None:
        self.data = data
        self.size = size
        self.budget = budget

    def release(self) -> None:
        """Handed over (or dropped): give the budget back, close an unsent memfd."""
        if isinstance(self.data, BlobFile):
            self.data.close()  # no-op once sent (the descriptor was detached)
        if self.budget is not None:
            self.budget.give_back(self.size)
            self.budget = None
