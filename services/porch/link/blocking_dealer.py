"""The blocking driver of a `porch.link.dealer.Dealer`, for `porch.Process`.

The state machine is `Dealer`'s, shared with the asyncio driver; this drives it from
the blocking calls themselves. There is no loop and no I/O
thread: `pump(wait_ms)` is one poll(2) on the socket (bounded by the next heartbeat
and, while disconnected, the next reconnection attempt), then whatever is due: read
and deliver what arrived, write what the socket had no room for, heartbeat,
reconnect. `check()` is the same without waiting, before every send. So the
connection lives while the process calls into the stub (every `await_message` wakes
at least once a heartbeat interval), and the keepalive thread PINGs (and writes what
is left queued) while it computes instead.

Sends are written at once (a response leaves when `respond` returns, not at the next
call), except what the socket has no room for, which the next call (or the keepalive
thread, if the process is away) writes. A write that finds the kernel gone fails
(`send` returns False), after lost() has failed what waited.
"""

from __future__ import annotations

import math
import select
import time
from typing import Any

from porch.link.dealer import Dealer, Handler

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLIN_OUT = select.POLLIN | select.POLLOUT


class BlockingDealer(Dealer):
    """A `Dealer` driven by the caller's thread (`pump`, `check`); `start(handler)`
    begins."""

    def __init__(self, endpoint: str, **settings: Any) -> None:
        super().__init__(endpoint, **settings)
        self._poll = select.poll()
        self._next_tick = math.inf
        self._retry_at = math.inf

    def start(self, handler: Handler) -> None:
        self._next_tick = time.monotonic() + self.heartbeat_ivl_s
        self._start(handler)

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
