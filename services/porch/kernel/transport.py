"""What the kernel's routing core needs from the socket under it, and what it offers back.

The routing core (`porch.kernel.router.Kernel`) owns the registry, capabilities,
pending requests and deadlines; a transport owns the connections. Two implement this:

- `LibzmqTransport` (`[kernel] transport = "libzmq"`): a pyzmq ROUTER, as the kernel
  always had. Every message crosses libzmq's I/O thread and a mailbox on the way in and
  again on the way out.
- `ZmtpTransport` (`transport = "zmtp"`): the kernel speaks ZMTP 3.1 itself on the same
  Unix socket path, with epoll, in the kernel's one thread. The stubs' DEALERs cannot
  tell the difference.

A connection is named by a `Conn` handle (a ROUTER identity for libzmq, a connection
object for ZMTP): hashable, used as a dict key by the core, and meaningful only to the
transport that made it. Frames are whatever the transport read (zmq.Frame, bytes,
bytearray); the core parses the envelope from them and hands the rest back untouched.
"""

from __future__ import annotations

import select
import time
from collections.abc import Hashable
from typing import Any, Protocol

Conn = Hashable


def now_ms() -> int:
    """The kernel's clock for deadlines and timers (deadlines travel as epoch ms)."""
    return int(time.time() * 1000)


class SendFailed(Exception):
    """The peer cannot take the message now: gone (its connection closed), or its
    bounded queue is full. The text is the reason ("Host unreachable", "Resource
    temporarily unavailable", as ZeroMQ's ROUTER_MANDATORY and HWM report them)."""


# The reasons, worded as ZeroMQ words them, so the Offline details read the same on
# either transport.
UNREACHABLE = "Host unreachable"
FULL = "Resource temporarily unavailable"


class Sink(Protocol):
    """The routing core, as a transport sees it."""

    def deliver(self, conn: Conn, frame: Any, blob: Any) -> None:
        """A message [envelope] (blob None) or [envelope, blob] from conn."""

    def wrong_frame_count(self, conn: Conn, count: int) -> None:
        """A message of `count` frames (neither 1 nor 2) from conn."""

    def disconnected(self, conn: Conn) -> None:
        """conn is gone (EOF, error, heartbeat timeout); it will never be seen again."""

    def refused_connection(self, who: str, reason: str) -> None:
        """A connection was closed for breaking the protocol (count it, log it)."""

    def note(self, what: str, msg: str, *args: object) -> None:
        """A rate-limited warning."""


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

    def flush(self, sent: bool) -> bool:
        """Called before the loop sleeps; `sent` if the core sent outside on_events.
        True if messages may be waiting without a new event."""

    def next_timer(self) -> int | None:
        """When (now_ms clock) the transport wants on_timer called, if ever."""

    def on_timer(self, now: int) -> None: ...

    def send(self, conn: Conn, frame: Any, blob: Any) -> None:
        """Queue [frame] or [frame, blob] to conn, all or nothing; raises SendFailed."""

    def peer_pid(self, conn: Conn, frame: Any) -> int:
        """The OS pid at the other end of conn (frame: one that came on it), 0 if unknown."""

    def describe(self, conn: Conn) -> str:
        """How logs name an unregistered connection."""

    def close(self) -> None: ...
