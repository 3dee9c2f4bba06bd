"""The asyncio driver of a `porch.link.dealer.Dealer`: the loop reads and writes it
(`add_reader`/`add_writer`), heartbeats and reconnections are loop timers, and output
is written once per loop iteration (`call_soon`). `porch.AsyncProcess` uses it."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from porch.link.dealer import Dealer, Handler


class AsyncioDealer(Dealer):
    """A `Dealer` driven by the asyncio loop: `start(loop, handler)` begins."""

    def __init__(self, endpoint: str, **settings: Any) -> None:
        super().__init__(endpoint, **settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._retry_handle: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop, handler: Handler) -> None:
        self._loop = loop
        self._tick_handle = loop.call_later(self.heartbeat_ivl_s, self._tick)
        self._start(handler)

    def _tick(self) -> None:
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(self.heartbeat_ivl_s, self._tick)
        self._heartbeat()

    def _retry(self) -> None:
        self._retry_handle = None
        self._connect()

    # ------------------------------------------------------------------ hooks

    def _watch(self) -> None:
        cast(asyncio.AbstractEventLoop, self._loop).add_reader(self._fd, self._on_readable)

    def _unwatch(self) -> None:
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        loop.remove_reader(self._fd)
        if self._writing:
            loop.remove_writer(self._fd)

    def _want_writable(self, on: bool) -> None:
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        if on:
            loop.add_writer(self._fd, self._on_writable)
        else:
            loop.remove_writer(self._fd)

    def _on_writable(self) -> None:
        if self._sock is not None:
            self._write()

    def _flush_soon(self) -> None:
        if not self._flush_due and not self._writing:
            self._flush_due = True
            if not self._reading:
                cast(asyncio.AbstractEventLoop, self._loop).call_soon(self._flush)

    def _retry_after(self, delay: float) -> None:
        if self._loop is not None:
            self._retry_handle = self._loop.call_later(delay, self._retry)

    def _stop_timers(self) -> None:
        for handle in (self._tick_handle, self._retry_handle):
            if handle is not None:
                handle.cancel()
        self._tick_handle = self._retry_handle = None
