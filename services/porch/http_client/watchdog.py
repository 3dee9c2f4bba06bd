"""Cut off an outgoing request at its deadline, whatever it is blocked on.

Socket timeouts bound each recv, not the whole request: a server that trickles its body
a byte at a time keeps a blocking read going forever. Unlike Kinode (whose client keeps
running after the caller's Timeout), porch frees the worker at the deadline: one thread
watches every request's deadline and shuts the request's socket down, which makes the
blocked read return at once.

The socket a request uses changes (connect, redirects, keep-alive reuse), so the
connection classes in `fetch` `attach` it to the request's `Deadline` as they use it.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time


class Deadline:
    """One request's deadline (time.monotonic) and the socket it currently uses."""

    __slots__ = ("_lock", "_sock", "at", "denied", "expired", "finished", "why")

    def __init__(self, at: float) -> None:
        self.at = at
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False
        self.why = ""
        self.finished = False
        # Why the node's policy refused a connection of this request, if it did.
        self.denied: str | None = None

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            if self.finished:
                return
            self._sock = sock
            if self.expired:
                _shut(sock)

    def detach(self, sock: socket.socket) -> None:
        """A pooled connection moved on to another request: never cut it for this one."""
        with self._lock:
            if self._sock is sock:
                self._sock = None

    def expire(self, why: str = "deadline passed") -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            self.why = why
            if self._sock is not None:
                _shut(self._sock)

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self._sock = None


def _shut(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the latter also drops the TLS
    # object under a read that may be running in another thread. A closed socket has
    # fileno -1, so this can never reach a descriptor reused by another connection.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class Watchdog:
    """One daemon thread expiring Deadlines; finished ones are skipped lazily."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="http-client-watchdog", daemon=True)
        self._thread.start()

    def watch(self, deadline: Deadline) -> None:
        entry = (deadline.at, next(self._seq), deadline)
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cond.notify()

    def stop(self) -> None:
        """Cut every request still running (the service is stopping: their callers are
        told Offline by the kernel), so the worker threads end at once."""
        with self._cond:
            self._stopped = True
            pending, self._heap = self._heap, []
            self._cond.notify()
        for _, _, deadline in pending:
            deadline.expire("abandoned: the http-client is stopping")
        self._thread.join(2)

    def _run(self) -> None:
        while True:
            due: list[Deadline] = []
            with self._cond:
                if self._stopped:
                    return
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for deadline in due:
                if not deadline.finished:
                    deadline.expire()
