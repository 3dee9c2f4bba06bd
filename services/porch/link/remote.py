"""A process's end of the link from another machine: a libzmq DEALER over TCP, CURVE.

`RemoteDealer` offers what the local `porch.link.dealer.Dealer` offers (`porch.link.Link`:
start, send, take_fd, close, connected, closed) so the session above it
(`porch.process.session.KernelSession`) and both stub APIs work unchanged; two drivers
decide when it runs, as for the local dealer: `AsyncioRemoteDealer` (the loop reads its
descriptors) and `BlockingRemoteDealer` (a zmq poll in the blocking calls).

Here libzmq does what the local dealer does by hand: the CURVE handshake and
encryption (with the process's key pair, pinning the node's public key), reconnection
with backoff, heartbeats (ZMQ_HEARTBEAT_IVL/TIMEOUT/TTL from the node's heartbeat
interval: a silent kernel is dropped, and the kernel drops us when we go silent),
and IMMEDIATE (nothing is queued while there is no connection: a send fails at once
and the session raises Offline). A socket monitor reports each handshake that
succeeded (the handler's `on_connected`: its Register goes out first), each lost
connection (`on_lost`), and a handshake the kernel refused for our key (`on_refused`:
not declared, or revoked; that does not heal by retrying).

Differences a caller sees: descriptors do not cross machines (`takes_fds` is False:
the session sends large blobs inline), and the kernel's liveness check, a message of
one empty frame, is dropped here.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
from typing import Any, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from porch.link import HEARTBEATS_TO_TIMEOUT
from porch.link import heartbeat_ivl_s as heartbeat_ivl
from porch.link.dealer import _NO_HANDLER, Handler

log = logging.getLogger("porch.link")

HIGH_WATER_MARK = 1000  # messages queued each way (libzmq's SNDHWM, RCVHWM)
MAX_MSG_SIZE = 1 << 30  # the kernel's bound
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 1000
CLOSE_LINGER_MS = 200
# At exit, what is still queued (a response sent just before) gets this long to leave.
EXIT_LINGER_MS = 500
# Messages handled per wake-up before the owner gets a turn.
READS_PER_WAKEUP = 256
NOBLOCK = int(zmq.NOBLOCK)
MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
POLLIN = int(zmq.POLLIN)
EVENTS = int(zmq.EVENTS)
MONITOR_EVENTS = int(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)


class RemoteDealer:
    """One process's connection to a kernel on another machine, whatever drives it.

    Keys are Z85 text (as `porch keys new` writes them): the process's pair and the
    node's public key. A driver calls `_start`, then `_on_monitor` and `_drain` when
    their descriptors are readable, and implements `_after_send`.
    """

    takes_fds = False
    remote = True

    def __init__(
        self,
        endpoint: str,
        *,
        server_key: str,
        public_key: str,
        secret_key: str,
        name: str = "",
        high_water_mark: int = HIGH_WATER_MARK,
        heartbeat_ivl_s: float | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.name = name or "dealer"
        ivl = heartbeat_ivl_s if heartbeat_ivl_s is not None else heartbeat_ivl()
        self.heartbeat_ivl_s = ivl
        self.heartbeat_timeout_s = HEARTBEATS_TO_TIMEOUT * ivl
        self.connected = False
        self.last_heard = 0.0  # time.monotonic() when the kernel last sent anything
        self._closed = False
        self._handler: Handler = _NO_HANDLER
        self._ctx = context or _context()
        sock = self.sock = self._ctx.socket(zmq.DEALER)
        ivl_ms = int(ivl * 1000)
        timeout_ms = int(self.heartbeat_timeout_s * 1000)
        for opt, value in (
            (zmq.LINGER, 0),
            (zmq.IMMEDIATE, 1),
            (zmq.SNDHWM, high_water_mark),
            (zmq.RCVHWM, high_water_mark),
            (zmq.MAXMSGSIZE, MAX_MSG_SIZE),
            (zmq.RECONNECT_IVL, RECONNECT_IVL_MS),
            (zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS),
            (zmq.HEARTBEAT_IVL, ivl_ms),
            (zmq.HEARTBEAT_TIMEOUT, timeout_ms),
            (zmq.HEARTBEAT_TTL, timeout_ms),
        ):
            sock.setsockopt(opt, value)
        try:
            sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode("ascii"))
            sock.setsockopt(zmq.CURVE_PUBLICKEY, public_key.encode("ascii"))
            sock.setsockopt(zmq.CURVE_SECRETKEY, secret_key.encode("ascii"))
        except (zmq.ZMQError, UnicodeEncodeError) as exc:
            sock.close(0)
            raise ValueError(f"not a CURVE key: {exc}") from None
        self.monitor = sock.get_monitor_socket(MONITOR_EVENTS)
        self._failures = 0
        self._in_monitor = False  # a handler's send must not read the monitor again

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ lifecycle

    def _start(self, handler: Handler) -> None:
        self._handler = handler
        self.sock.connect(self.endpoint)

    def close(self, goodbye: bytes | None = None) -> None:
        """Send `goodbye` (a last message, if connected), give it up to CLOSE_LINGER_MS
        to leave, and close. Never calls on_lost."""
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        linger = 0
        if goodbye is not None and self.connected:
            try:
                self.sock.send(goodbye, NOBLOCK)
                linger = CLOSE_LINGER_MS
            except zmq.ZMQError:
                pass
        self.connected = False
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)
        self.sock.close(linger)

    def _unwatch(self) -> None:
        """The driver stops watching the descriptors (they are about to close)."""

    def _after_send(self) -> None:
        """A send may have taken the descriptor's signal for input now waiting: the
        driver looks (EVENTS) before it sleeps."""

    # ------------------------------------------------------------------ events

    def _on_monitor(self) -> None:
        """Connection events: a handshake done (Register first), a connection lost, a
        key refused."""
        if self._in_monitor:
            return
        self._in_monitor = True
        try:
            self._take_events()
        finally:
            self._in_monitor = False

    def _take_events(self) -> None:
        monitor = self.monitor
        while not self._closed:
            try:
                frames = monitor.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            try:
                event = parse_monitor_message(frames)["event"]
            except (ValueError, IndexError, TypeError):
                continue
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
                self._failures = 0
                log.info("%s: connected to the kernel at %s", self.name, self.endpoint)
                try:
                    self._handler.on_connected()
                except Exception:
                    log.exception("%s: connection handling failed", self.name)
            elif event == zmq.EVENT_DISCONNECTED:
                if self.connected:
                    self.connected = False
                    log.info("%s: connection to the kernel at %s ended", self.name, self.endpoint)
                    try:
                        self._handler.on_lost()
                    except Exception:
                        log.exception("%s: disconnect handling failed", self.name)
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                detail = (f"the kernel at {self.endpoint} refused this process's key (not "
                          "declared in the node's porch.toml, or revoked)")
                log.error("%s: %s", self.name, detail)
                try:
                    self._handler.on_refused(detail)
                except Exception:
                    log.exception("%s: refusal handling failed", self.name)
            else:
                self._failures += 1
                if self._failures == 1:
                    log.warning("%s: the CURVE handshake with %s failed (is server_key the "
                                "node's public key? porch keys new prints it); retrying",
                                self.name, self.endpoint)

    def _drain(self) -> int:
        """Hand the handler what arrived, at most READS_PER_WAKEUP messages (more may be
        waiting when that many were read); the number read."""
        recv = self.sock.recv
        received = self._handler.on_message
        n = 0
        while n < READS_PER_WAKEUP:
            if self._closed:
                return n
            try:
                frame = recv(NOBLOCK, copy=False)
            except zmq.Again:
                return n
            n += 1
            self.last_heard = time.monotonic()
            frames = [frame.bytes]
            while frame.more:
                frame = recv(NOBLOCK, copy=False)
                frames.append(frame.bytes)
            if len(frames) > 2:
                log.warning("%s: dropped a message of %d frames", self.name, len(frames))
                continue
            if len(frames) == 1 and not frames[0]:
                continue  # the kernel's check that we are still connected
            try:
                received(frames)
            except Exception:
                log.exception("%s: handling an incoming message failed", self.name)
        return n

    def _monitor_waiting(self) -> bool:
        return bool(cast(int, self.monitor.get(EVENTS)) & POLLIN)

    # ------------------------------------------------------------------ sending

    def send(self, frame: bytes, blob: bytes | None = None, fd: int = -1) -> bool:
        """Queue [frame] or [frame, blob] without blocking. False when it cannot go: no
        connection, or the queue is full. A descriptor cannot go (`takes_fds`)."""
        if fd >= 0:
            os.close(fd)
            return False
        if self._closed:
            return False
        if not self._in_monitor and self._monitor_waiting():
            self._on_monitor()  # a new connection's Register goes out before this
        if not self.connected:
            return False
        sock = self.sock
        try:
            if blob is None:
                sock.send(frame, NOBLOCK)
            else:
                sock.send(frame, MORE_NOBLOCK)
                sock.send(blob, NOBLOCK, copy=len(blob) < 65536)
        except zmq.ZMQError:  # Again: full, or the connection just went
            return False
        finally:
            self._after_send()
        return True

    def take_fd(self) -> int:
        return -1


class AsyncioRemoteDealer(RemoteDealer):
    """A `RemoteDealer` driven by the asyncio loop: `start(loop, handler)` begins."""

    def __init__(self, endpoint: str, **settings: Any) -> None:
        super().__init__(endpoint, **settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = self._mfd = -1
        self._scheduled = False

    def start(self, loop: asyncio.AbstractEventLoop, handler: Handler) -> None:
        self._loop = loop
        self._fd = cast(int, self.sock.getsockopt(zmq.FD))
        self._mfd = cast(int, self.monitor.getsockopt(zmq.FD))
        loop.add_reader(self._fd, self._on_readable)
        loop.add_reader(self._mfd, self._on_monitor)
        self._start(handler)
        loop.call_soon(self._on_monitor)

    def _on_readable(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        if self._drain() >= READS_PER_WAKEUP or self._waiting():
            self._schedule()

    def _waiting(self) -> bool:
        return not self._closed and bool(cast(int, self.sock.get(EVENTS)) & POLLIN)

    def _schedule(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._on_readable)

    def _after_send(self) -> None:
        if not self._scheduled and self._waiting():
            self._schedule()

    def _unwatch(self) -> None:
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_reader(self._mfd)
            self._fd = self._mfd = -1


class BlockingRemoteDealer(RemoteDealer):
    """A `RemoteDealer` driven by the caller's thread (`pump`, `check`); `start(handler)`
    begins. libzmq's own thread keeps the connection alive meanwhile (heartbeats)."""

    def __init__(self, endpoint: str, **settings: Any) -> None:
        super().__init__(endpoint, **settings)
        self._poller = zmq.Poller()

    def start(self, handler: Handler) -> None:
        self._poller.register(self.sock, zmq.POLLIN)
        self._poller.register(self.monitor, zmq.POLLIN)
        self._start(handler)

    def check(self) -> None:
        """Before a send: take connection events and what arrived, without waiting."""
        self.pump(0)

    def pump(self, wait_ms: int) -> None:
        """Wait up to wait_ms for input or a connection event, then handle what came."""
        if self._closed:
            return
        if self._monitor_waiting():
            self._on_monitor()
        if self._drain():
            return
        if wait_ms <= 0:
            return
        ready = dict(self._poller.poll(wait_ms))
        if self.monitor in ready:
            self._on_monitor()
        if self.sock in ready:
            self._drain()

    def _unwatch(self) -> None:
        try:
            self._poller.unregister(self.sock)
            self._poller.unregister(self.monitor)
        except KeyError:
            pass


_CONTEXT: zmq.Context[Any] | None = None


def _context() -> zmq.Context[Any]:
    """The remote links' own libzmq context (one I/O thread), ended at exit."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = zmq.Context(io_threads=1)
        atexit.register(_flush_at_exit)
    return _CONTEXT


def _flush_at_exit() -> None:
    """What a process sent just before it exits still leaves (up to EXIT_LINGER_MS),
    as the local link lets it: the context's sockets close with that linger."""
    ctx = _CONTEXT
    if ctx is not None and not ctx.closed:
        try:
            ctx.destroy(linger=EXIT_LINGER_MS)
        except Exception:  # exiting: nothing to report to
            pass
