"""The seam between the kernel's router and the sockets under it.

The router (`porch.kernel.router.Kernel`) owns the registry, capabilities, pending
requests and deadlines; a transport owns the connections. Two implement it, both in
the kernel's own thread and epoll: `porch.link.server.ZmtpServer`, ZMTP 3.1 on the
node's Unix socket (always), and `porch.kernel.remote.RemoteTransport`, processes on
other machines over TCP with CurveZMQ (when `[kernel] listen` is set), which also
answers what `RemoteSeam` adds. Each reports to the router as a `Sink` (what it read,
who disconnected) and offers what `Transport` lists; the router sends to a connection
through the transport it came from.

A connection is named by an opaque, hashable handle the transport chooses; the router
uses it as a dict key and hands it back. Frames are whatever the transport read
(bytes, bytearray, memoryview); the router parses the envelope from them and hands
the rest back untouched.
"""

from __future__ import annotations

import select
from collections.abc import Hashable
from typing import Any, Protocol

from porch.link.server import FULL, UNREACHABLE, SendFailed, Sink
from porch.wire import now_ms

Conn = Hashable

__all__ = ["FULL", "UNREACHABLE", "Conn", "RemoteSeam", "SendFailed", "Sink", "Transport", "now_ms"]


class Transport(Protocol):
    name: str
    endpoint: str

    def bind(self) -> None: ...

    def attach(self, epoll: select.epoll, sink: Sink) -> None:
        """Register the transport's fds in the kernel's epoll; report to sink."""

    def detach(self) -> None: ...

    def on_events(self, ready: list[tuple[int, int]]) -> bool:
        """Handle the events of one epoll_wait (fds not the transport's are ignored).
        True if messages may still be waiting without a new event."""

    def flush(self) -> bool:
        """Called before the loop sleeps: write what was queued meanwhile. True if
        messages may be waiting without a new event."""

    def next_timer(self) -> int | None:
        """When (now_ms clock) the transport wants on_timer called, if ever."""

    def on_timer(self, now: int) -> None: ...

    def send(self, conn: Any, frame: Any, blob: Any, bounded: bool = True, fd: int = -1) -> None:
        """Queue [frame] or [frame, blob] to conn, all or nothing; raises SendFailed
        (gone, or its queue is full). `bounded=False`: past the queue's bounds (the
        kernel's own small answers, which must not be lost to a full queue). `fd`: a
        blob descriptor to pass with the message (only to a peer that `takes_fds`);
        the transport owns it once send returned."""

    def take_fd(self, conn: Any) -> int:
        """The next blob descriptor conn sent (its message says blob_fd), or -1; the
        caller owns it."""

    def takes_fds(self, conn: Any) -> bool:
        """Whether conn's peer takes blobs as descriptors (porch.link.fds)."""

    def peer_pid(self, conn: Any) -> int:
        """The OS pid at the other end of conn, 0 if unknown."""

    def describe(self, conn: Any) -> str:
        """How logs name an unregistered connection."""

    def close(self) -> None: ...


class RemoteSeam(Transport, Protocol):
    """A transport whose peers are on other machines: no pids to watch, an identity
    (a proven key) instead, asked of it at registration."""

    def admits(self, conn: Any, process_id: str) -> str:
        """Why conn may not register process_id ("" if it may)."""

    def alive(self, conn: Any) -> bool:
        """Whether conn is still connected (asked now; a gone one is reported)."""

    def remote_info(self, conn: Any) -> tuple[str, float, float]:
        """(address, connected since, last known alive), Unix seconds."""
