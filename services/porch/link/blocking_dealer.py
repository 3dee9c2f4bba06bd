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

import heapq
import itertools
import math
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from porch.link.dealer import Dealer, Handler

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLIN_OUT = select.POLLIN | select.POLLOUT


class Handle:
    """A callback `PollLoop` will run (call_soon, call_later) unless cancelled."""

    __slots__ = ("args", "callback", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class PollLoop:
    """The few calls of an asyncio loop that a socket's driver needs (add_reader,
    add_writer, call_soon, call_later, time), run by the blocking dealer's own poll(2)
    in `pump`: a blocking process serves other sockets (the WebSockets it holds,
    porch.process.held) whenever it waits for the kernel, on the caller's thread."""

    def __init__(self, poll: select.poll) -> None:
        self._poll = poll
        self._readers: dict[int, Handle] = {}
        self._writers: dict[int, Handle] = {}
        self._ready: deque[Handle] = deque()
        self._timers: list[tuple[float, int, Handle]] = []
        self._seq = itertools.count()
        self.running = False  # in run(): a nested pump leaves these sockets alone
        # Held while the callbacks run: another thread of the process that writes to
        # one of these sockets takes it too (porch.process.held).
        self.lock = threading.RLock()

    def time(self) -> float:
        return time.monotonic()

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self._readers[fd] = Handle(callback, args)
        self._update(fd)

    def remove_reader(self, fd: int) -> bool:
        found = self._readers.pop(fd, None) is not None
        self._update(fd)
        return found

    def add_writer(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self._writers[fd] = Handle(callback, args)
        self._update(fd)

    def remove_writer(self, fd: int) -> bool:
        found = self._writers.pop(fd, None) is not None
        self._update(fd)
        return found

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Handle:
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Handle:
        handle = Handle(callback, args)
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), handle))
        return handle

    def _update(self, fd: int) -> None:
        mask = (_POLLIN if fd in self._readers else 0) | (_POLLOUT if fd in self._writers else 0)
        try:
            if mask:
                try:
                    self._poll.modify(fd, mask)
                except FileNotFoundError:
                    self._poll.register(fd, mask)
            else:
                self._poll.unregister(fd)
        except (KeyError, FileNotFoundError, ValueError):
            pass

    def watches(self, fd: int) -> bool:
        return fd in self._readers or fd in self._writers

    def wait_ms(self, wait_ms: int) -> int:
        """wait_ms, shortened to the next thing due."""
        if self._ready:
            return 0
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if self._timers:
            left = math.ceil((self._timers[0][0] - time.monotonic()) * 1000)
            return max(0, min(wait_ms, left))
        return wait_ms

    def dispatch(self, fd: int, events: int) -> None:
        """One socket's poll(2) events: its writer, then its reader (input, EOF and
        errors all go to the reader, whose read finds out which)."""
        if events & _POLLOUT:
            writer = self._writers.get(fd)
            if writer is not None:
                writer.callback(*writer.args)
        if events & ~_POLLOUT:
            reader = self._readers.get(fd)
            if reader is not None:
                reader.callback(*reader.args)

    def has_due(self) -> bool:
        return bool(self._ready) or (bool(self._timers) and self._timers[0][0] <= time.monotonic())

    def run_due(self) -> None:
        """The callbacks due now: call_soon's, then the timers that are up."""
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, handle = heapq.heappop(timers)
            if not handle.cancelled:
                self._ready.append(handle)
        for _ in range(len(self._ready)):  # those added meanwhile wait for the next round
            handle = self._ready.popleft()
            if not handle.cancelled:
                handle.callback(*handle.args)


class BlockingDealer(Dealer):
    """A `Dealer` driven by the caller's thread (`pump`, `check`); `start(handler)`
    begins. `loop` (a PollLoop) lets other sockets be served by the same waits."""

    def __init__(self, endpoint: str, **settings: Any) -> None:
        super().__init__(endpoint, **settings)
        self._poll = select.poll()
        self._next_tick = math.inf
        self._retry_at = math.inf
        self.loop = PollLoop(self._poll)

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
        loop = self.loop
        serving = not loop.running  # a pump from a callback of the loop leaves its sockets alone
        if wait_ms:
            due = self._next_tick if self._sock is not None else min(self._next_tick, self._retry_at)
            left = due - time.monotonic()  # inf once closed
            if left * 1000 < wait_ms:
                wait_ms = max(0, math.ceil(left * 1000))
            if serving:
                wait_ms = loop.wait_ms(wait_ms)
        own = self._fd
        ready = self._poll.poll(wait_ms)
        others = False
        for fd, events in ready:
            if fd == own:
                if events & _POLLOUT:
                    self._write()
                if events & ~_POLLOUT:  # input, EOF or an error: the read finds out which
                    self._on_readable()
            else:
                others = True
        if serving and (others or loop.has_due()):
            with loop.lock:
                loop.running = True
                try:
                    if others:
                        for fd, events in ready:
                            if fd != own:
                                loop.dispatch(fd, events)
                    loop.run_due()
                finally:
                    loop.running = False
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
