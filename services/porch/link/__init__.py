"""The link between a process and the kernel: ZMTP 3.1 on the node's Unix socket, or
libzmq over TCP with CURVE for a process on another machine.

The bottom of the house: bytes and frames only, no envelopes, nothing of porch but
the wire's clock. The kernel composes the ROUTER end (`server.ZmtpServer`); every
process's stub composes a DEALER end (`dealer.Dealer`, driven by asyncio or by the
blocking calls); both share the codec (`codec.Session`, `codec.OutQueue`). Any
ZeroMQ DEALER (libzmq, through pyzmq or any other binding) can connect to the kernel:
the protocol is ZeroMQ's own. A process on another machine links through
`remote.RemoteDealer` (a libzmq DEALER, CURVE client) to the kernel's TCP endpoint;
both kinds of end offer what `Link` lists, so the session above does not care which.
"""

from __future__ import annotations

import os
from typing import Protocol

ENV_HEARTBEAT = "PORCH_HEARTBEAT_IVL_S"
DEFAULT_HEARTBEAT_IVL_S = 1.0
# A peer silent for this many heartbeat intervals is dropped (libzmq's TTL/timeout).
HEARTBEATS_TO_TIMEOUT = 5


def heartbeat_ivl_s() -> float:
    """Seconds between heartbeats, the same at both ends: $PORCH_HEARTBEAT_IVL_S if set
    (tests use short ones; a very slow machine may want longer), else 1 s. A peer silent
    for HEARTBEATS_TO_TIMEOUT intervals is dropped. Every process of a node must agree,
    so set it for the whole node (porch up passes its environment to every service)."""
    text = os.environ.get(ENV_HEARTBEAT, "")
    try:
        value = float(text) if text else DEFAULT_HEARTBEAT_IVL_S
    except ValueError:
        return DEFAULT_HEARTBEAT_IVL_S
    return value if 0.05 <= value <= 60 else DEFAULT_HEARTBEAT_IVL_S


class Link(Protocol):
    """What a process's session asks of its end of the link, whichever it is."""

    # Blobs may travel as descriptors (porch.link.fds): only on the node's Unix socket.
    takes_fds: bool
    # The kernel is on another machine (its clock may differ: deadlines are converted).
    remote: bool
    # time.monotonic() when the kernel last sent anything (0 before it ever did).
    last_heard: float

    @property
    def connected(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    def send(self, frame: bytes, blob: bytes | None = None, fd: int = -1) -> bool:
        """Queue a message without blocking; False when it cannot go (no connection,
        too much unwritten)."""

    def take_fd(self) -> int:
        """The next blob descriptor that came, or -1."""

    def close(self, goodbye: bytes | None = None) -> None:
        """Send goodbye (a last one-frame message, if connected) and close."""
