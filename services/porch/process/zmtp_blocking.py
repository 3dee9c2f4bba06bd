"""The blocking stub's connection to the kernel, speaking ZMTP itself (`porch.Process`'s
default transport).

The state machine is `porch.process.zmtp_client.ZmtpClient`'s, shared with the asyncio
stub; this drives it from the blocking calls themselves. There is no loop and no I/O
thread: `pump(wait_ms)` is one poll(2) on the socket (bounded by the next heartbeat
and, while disconnected, the next reconnection attempt), then whatever is due: read
and deliver what arrived, write what the socket had no room for, heartbeat,
reconnect. `check()` is the same without waiting, before every send. So the
connection lives while the process calls into the stub (every `await_message` wakes
at least once a heartbeat interval), and the keepalive thread PINGs (and writes what
is left queued) while it computes instead.

Sends are written at once (a response leaves when `respond` returns, not at the next
call), except what the socket has no room for, which the next call (or the keepalive
thread, if the process is away) writes. A write that finds the kernel gone raises
Offline, after lost() has failed what waited.
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Callable
from typing import Any

from porch.process.zmtp_client import Deliver, ZmtpClient

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLIN_OUT = select.POLLIN | select.POLLOUT


class BlockingZmtpCore(ZmtpClient):
    """One process's connection to the kernel as a ZMTP DEALER, driven by the caller's
    thread (`pump`, `check`). `attach(deliver, lost)` starts it (see ZmtpClient)."""

    def __init__(self, process_id: str, endpoint: str, **settings: Any) -> None:
        super().__init__(process_id, endpoint, **settings)
        self._poll = select.poll()
        self._next_tick = math.inf
        self._retry_at = math.inf

    def attach(self, deliver: Deliver, lost: Callable[[], None]) -> None:
        self._next_tick = time.monotonic() + self.heartbeat_ivl_s
        self._start(deliver, lost)

    def check(self) -> None:
        """Before a send: take what arrived (a lost connection fails what waits, a new
        one sends its Register first), write what waited for room, heartbeat and
        reconnect if due. One poll(2) when nothing happened."""
        self.pump(0)

    def pump(self, wait_ms: int) -> None:
        """Wait up to wait_ms for the socket (less when a heartbeat or a reconnection
        is due first), then do what is due. Returns after one wake-up."""
        if wait_ms:
            due = self._next_tick if self._sock is not None else min(self._next_tick, self._retry_at)
            left = due - time.monotonic()  # inf once closed
            if left * 1000 < wait_ms:
                wait_ms = max(0, math.ceil(left * 1000))
        for _, events in self._poll.poll(wait_ms):
            if events & _POLLOUT:
                self._write()
            if events & ~_POLLOUT:  # input, EOF or an error: the read finds out which
                self._on_readable()
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + self.heartbeat_ivl_s
            self._heartbeat()
        if now >= self._retry_at and self._sock is None:
            self._retry_at = math.inf
            self._connect()

    # ------------------------------------------------------------------ hooks

    def _watch(self) -> None:
        self._poll.register(self._fd, _POLLIN)

    def _unwatch(self) -> None:
        self._poll.unregister(self._fd)

    def _want_writable(self, on: bool) -> None:
        self._poll.modify(self._fd, _POLLIN_OUT if on else _POLLIN)

    def _flush_soon(self) -> None:
        if self._reading:
            self._flush_due = True  # written at the read's end
        elif self._sock is not None:
            self._write()  # at once, even with a partial write pending: the socket may have room

    def _retry_after(self, delay: float) -> None:
        self._retry_at = time.monotonic() + delay

    def _stop_timers(self) -> None:
        self._next_tick = self._retry_at = math.inf
