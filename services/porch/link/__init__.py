"""The link between a process and the kernel: ZMTP 3.1 on the node's Unix socket.

The bottom of the house: bytes and frames only, no envelopes, nothing of porch but
the wire's clock. The kernel composes the ROUTER end (`server.ZmtpServer`); every
process's stub composes a DEALER end (`dealer.Dealer`, driven by asyncio or by the
blocking calls); both share the codec (`codec.Session`, `codec.OutQueue`). Any
ZeroMQ DEALER (libzmq, through pyzmq or any other binding) can connect to the kernel:
the protocol is ZeroMQ's own.
"""

from __future__ import annotations

import os

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
