"""The stubs' connection to the kernel, speaking ZMTP 3.1 themselves (no libzmq).

The kernel's socket is a Unix stream socket (libzmq's ipc://), and its peers speak
ZMTP 3.1 on it whether the kernel runs on its own ZMTP transport or on a libzmq
ROUTER. `ZmtpClient` is a DEALER speaking that protocol on a non-blocking socket,
with the pure codec of `porch.kernel.zmtp_codec` (`ClientSession`, `OutQueue`): the
connection's whole state machine (connect, handshake and Register, reconnect with
backoff, reads and decoding, the bounded output and its writes, heartbeats, close,
the keepalive thread). Two drivers decide when it runs:

- `ZmtpCore` (here): the asyncio loop reads and writes it (`add_reader`), the asyncio
  stub's default transport;
- `porch.process.zmtp_blocking.BlockingZmtpCore`: a poll(2) in the blocking stub's
  calls, `porch.Process`'s default transport.

A libzmq DEALER hands every message to its I/O thread and back (an eventfd write and
a wake-up each way), which is what this removes: bench/README.md "Stubs" has the
figures.

What it keeps from the libzmq DEALER that `Core` configures:
- IMMEDIATE: nothing is sent, or queued, unless the handshake with a kernel is done;
  a send while disconnected raises Offline at once.
- SNDHWM: the output not yet taken by the socket is bounded (HIGH_WATER_MARK
  messages, MAX_QUEUE_BYTES bytes, like the kernel's own peer queues); a send past it
  raises Offline.
- Heartbeats: a PING (TTL 5 s) every second; the kernel's PINGs get PONGs; a kernel
  that sends nothing for HEARTBEAT_TIMEOUT_S (it PINGs every second) is dropped as hung.
- Reconnection with backoff (RECONNECT_IVL_S doubling to RECONNECT_IVL_MAX_S); every
  new connection sends Register first.
- close(): Unregister, and up to CLOSE_LINGER_S to flush (libzmq's linger); at exit
  (atexit, or a core collected unclosed), up to EXIT_LINGER_S for what is still
  unwritten (the blocking stub's LINGER was 500 ms): a response sent just before the
  process exits still leaves.

What differs: a disconnect is seen at the EOF itself (no monitor socket). Everything
runs on the owner's thread (the loop's, or the blocking caller's), but for one thing:
the kernel drops a peer it hears nothing from for 5 s, and a libzmq I/O thread kept
talking to it, and kept writing what was sent, while the owner did not run (a loop
blocked by a long computation or not running between `run_until_complete` calls; a
blocking process computing for minutes between two calls). So a keepalive thread,
asleep on the message path, wakes once a second and, only when the owner has not run
its heartbeat for two intervals, writes for it under the write lock: the rest of what
the owner left queued if anything is (a large response, say), else a PING (only
between whole frames: nothing is queued then). What arrives meanwhile waits in the
socket and the kernel's queue for the owner, as it waited in libzmq's. Every write,
and every change to the output queue, happens under that lock.

Output is coalesced: a send appends to the queue; the asyncio driver writes the queue
once per loop iteration (`call_soon`), the blocking one at once; both write at the end
of a read what the read made them send (PONGs, Register). Blobs are written from
their own buffers (scatter-gather), and large incoming bodies are read straight into
their own buffer (`ClientSession.read_buffer`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

from porch.kernel.zmtp_codec import IOV_MAX, ClientSession, OutQueue, encode_message, ping, socket_path
from porch.process.core import CoreBase, Incoming
from porch.process.message import Blob, Offline
from porch.wire import kernel_pb2

log = logging.getLogger("porch.process")

HIGH_WATER_MARK = 10_000  # messages not yet written (libzmq's SNDHWM in Core)
MAX_QUEUE_BYTES = 256 * 1024 * 1024  # bytes not yet written (libzmq had no such bound)
MAX_FRAME = 1 << 30  # the kernel's MAXMSGSIZE: it sends nothing larger
HEARTBEAT_IVL_S = 1.0
HEARTBEAT_TIMEOUT_S = 5.0
RECONNECT_IVL_S = 0.1
RECONNECT_IVL_MAX_S = 1.0
CLOSE_LINGER_S = 0.2
EXIT_LINGER_S = 0.5
READ_SIZE = 65536
# Reads per wake-up before the owner gets a turn (a large blob is read in many).
READS_PER_WAKEUP = 64
OFFLINE = "kernel not reachable (not running or not keeping up)"


# The owner's handler of what arrives; its result is ignored here (the blocking stub's
# libzmq reader uses it to stop at the reply it waits for).
Deliver = Callable[[Incoming], object]


class ZmtpClient(CoreBase):
    """One process's connection to the kernel as a ZMTP DEALER, whatever drives it.

    A driver starts it with `_start(deliver, lost)`: from then on it connects (and
    reconnects) by itself, calls deliver(item) for everything decoded, in order, and
    lost() when an established connection ends (not when a connection attempt fails).
    The driver implements the hooks (`_watch` ... `_stop_timers`), calls
    `_on_readable` and `_write` when the socket is ready, `_heartbeat` every
    heartbeat interval, and `_connect` when `_retry_after` says.
    """

    def __init__(
        self,
        process_id: str,
        endpoint: str,
        *,
        high_water_mark: int = HIGH_WATER_MARK,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
        heartbeat_ivl_s: float = HEARTBEAT_IVL_S,
        heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S,
    ) -> None:
        super().__init__(process_id, endpoint)
        self.path = socket_path(endpoint)
        self.high_water_mark = high_water_mark
        self.max_queue_bytes = max_queue_bytes
        self.heartbeat_ivl_s = heartbeat_ivl_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._ping = ping(min(0xFFFF, int(heartbeat_timeout_s * 10)))
        self._deliver: Deliver = _ignore
        self._lost: Callable[[], None] = _nothing
        self._closed = False
        self._sock: socket.socket | None = None
        self._fd = -1
        self._session: ClientSession | None = None
        self._out = OutQueue(self.high_water_mark, self.max_queue_bytes)
        self._writing = False  # the socket took less than was queued: the driver waits for room
        self._flush_due = False  # output queued, a flush scheduled (or at the read's end)
        self._reading = False
        # Liveness: reads so far, the count at the last heartbeat tick, silence so far.
        self._rx = 0
        self._rx_seen = 0
        self._silent_s = 0.0
        self._backoff = RECONNECT_IVL_S
        self._last_failure = ""
        # Socket writes, output queue changes and closes happen under this lock: the
        # keepalive thread's writes never land inside a frame nor on a closed (or
        # reused) fd.
        self._wlock = threading.Lock()
        self._last_tick = time.monotonic()
        self._stop = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ the driver's hooks

    def _watch(self) -> None:
        """Start watching the new socket (`_fd`) for input."""
        raise NotImplementedError

    def _unwatch(self) -> None:
        """Stop watching the socket (it is about to be closed)."""
        raise NotImplementedError

    def _want_writable(self, on: bool) -> None:
        """Call `_write` when the socket has room (on), or stop (off)."""
        raise NotImplementedError

    def _flush_soon(self) -> None:
        """Output was queued: have `_flush` run (now, or soon)."""
        raise NotImplementedError

    def _retry_after(self, delay: float) -> None:
        """Call `_connect` in delay seconds."""
        raise NotImplementedError

    def _stop_timers(self) -> None:
        """Closing: no more heartbeats or reconnections."""
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle

    def _start(self, deliver: Deliver, lost: Callable[[], None]) -> None:
        self._deliver = deliver
        self._lost = lost
        self._last_tick = time.monotonic()
        _LIVE.add(self)
        threading.Thread(target=_keepalive, args=(weakref.ref(self), self._stop, self.heartbeat_ivl_s),
                         name=f"porch-keepalive {self.process_id}", daemon=True).start()
        self._connect()

    def close(self) -> None:
        """Unregister (so the kernel fails what is pending on us at once), give the
        output up to CLOSE_LINGER_S to leave, and close. Never calls lost()."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._stop_timers()
        sock = self._sock
        if sock is not None:
            if self.registered:
                with self._wlock:
                    self._out.push_raw(encode_message([self.unregister_envelope()]))
                self._linger(sock, CLOSE_LINGER_S)
            self._drop_socket()
        self.connected = self.registered = False

    def __del__(self) -> None:
        # Collected unclosed (the process dropped it, or is exiting): what it sent still
        # leaves, as libzmq's LINGER let it.
        try:
            self._flush_before_exit()
        except Exception:  # nothing to report to at this point
            pass

    def _flush_before_exit(self) -> None:
        sock = self._sock
        if sock is not None and not self._closed and self._out.buffers:
            self._linger(sock, EXIT_LINGER_S)

    def _connect(self) -> None:
        if self._closed or self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            # A Unix socket connects at once or fails (ENOENT, ECONNREFUSED, EAGAIN when
            # the backlog is full): there is no connection in progress to wait for.
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            self._failed(f"cannot connect to {self.endpoint}: {exc.strerror or exc}")
            return
        self._sock = sock
        self._fd = sock.fileno()
        session = self._session = ClientSession(MAX_FRAME)
        self._rx = self._rx_seen = 0
        self._silent_s = 0.0
        self._watch()
        with self._wlock:
            self._out.push_raw(b"".join(session.out))  # our greeting and READY, at once
        session.out.clear()
        self._flush()

    def _failed(self, why: str) -> None:
        """A connection attempt failed or a connection ended: try again after the
        backoff (100 ms, doubling to 1 s, like libzmq's RECONNECT_IVL(_MAX))."""
        if why != self._last_failure:
            log.debug("%s: %s", self.process_id, why)
            self._last_failure = why
        if self._closed:
            return
        delay = self._backoff
        self._backoff = min(delay * 2, RECONNECT_IVL_MAX_S)
        self._retry_after(delay)

    def _drop_socket(self) -> None:
        sock = self._sock
        if sock is None:
            return
        self._unwatch()
        with self._wlock:
            sock.close()
            self._sock = None
            self._out.clear()
        self._fd = -1
        self._session = None
        self._writing = False
        self._flush_due = False

    def _lose(self, why: str) -> None:
        """The connection ended (EOF, error, protocol error, heartbeat timeout)."""
        if self._sock is None:
            return
        was_connected = self.connected
        self._drop_socket()
        self.connected = self.registered = False
        if was_connected:
            log.info("%s: connection to the kernel ended: %s", self.process_id, why)
            self._last_failure = ""
            try:
                self._lost()
            except Exception:
                log.exception("%s: disconnect handling failed", self.process_id)
        self._failed(why)

    def _heartbeat(self) -> None:
        """Every heartbeat interval, from the driver: liveness, and a PING to the kernel."""
        self._last_tick = time.monotonic()
        if self._sock is None:
            return
        if self._rx != self._rx_seen:
            self._rx_seen = self._rx
            self._silent_s = 0.0
        else:
            self._silent_s += self.heartbeat_ivl_s
        if self._silent_s >= self.heartbeat_timeout_s:
            what = "heartbeat timeout" if self.connected else "no ZMTP handshake"
            self._lose(f"{what}: nothing from the kernel for {self._silent_s:.0f} s")
        elif self.connected and not self._writing:
            self._queue_raw(self._ping)

    # ------------------------------------------------------------------ reading

    def _on_readable(self) -> None:
        sock = self._sock
        session = self._session
        if sock is None or session is None:
            return
        self._reading = True
        try:
            for _ in range(READS_PER_WAKEUP):
                buf = session.read_buffer()
                try:
                    if buf is None:
                        data = sock.recv(READ_SIZE)
                        n = len(data)
                        if not n:
                            self._lose("the kernel closed the connection")
                            return
                        msgs = session.feed(data)
                        more = n == READ_SIZE
                    else:
                        n = sock.recv_into(buf)
                        if not n:
                            self._lose("the kernel closed the connection")
                            return
                        msgs = session.filled(n)
                        more = n == len(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # ECONNRESET and the like: the kernel is gone
                    self._lose(f"connection error: {exc.strerror or exc}")
                    return
                self._rx += 1
                if session.out:  # PONGs (an ERROR before a close)
                    self._queue_raw(b"".join(session.out))
                    session.out.clear()
                if not self.connected and session.ready:
                    self.connected = True
                    self.registered = False
                    self._backoff = RECONNECT_IVL_S
                    self._last_failure = ""
                    self._send_register()  # before anything else goes out
                if msgs:
                    self._dispatch(msgs)
                    if self._sock is not sock:  # closed or lost meanwhile
                        return
                if session.error is not None:
                    self._lose(f"ZMTP protocol error: {session.error}")
                    return
                if not more:
                    break
        finally:
            self._reading = False
            if self._flush_due:  # what the handlers sent, in one write
                self._flush()

    def _dispatch(self, msgs: list[tuple[list[Any], int]]) -> None:
        decode = self.decode
        deliver = self._deliver
        for frames, count in msgs:
            if count > 2:
                log.warning("%s: dropped a message of %d frames", self.process_id, count)
                continue
            head = frames[0]
            if type(head) is not bytes:
                frames[0] = bytes(head)
            if count == 2 and type(frames[1]) is not bytes:
                frames[1] = bytes(frames[1])  # a large body read in place: one copy
            item = decode(frames)
            if item is None:
                continue
            try:
                deliver(item)
            except Exception:
                log.exception("%s: handling an incoming message failed", self.process_id)
            if self._sock is None:
                return

    # ------------------------------------------------------------------ writing

    def send_envelope(self, env: kernel_pb2.Envelope, blob: Blob | None) -> None:
        """Queue (and write, or have written) without blocking; no kernel, or too much
        unwritten, is Offline."""
        if self.connected:
            data = env.SerializeToString()
            with self._wlock:
                queued = self._out.push(data, None if blob is None else blob.bytes)
            if queued:
                self._flush_soon()
                if self.connected:  # a write may have found the kernel gone
                    return
        raise Offline(env.target, env.id, OFFLINE)

    def _queue_raw(self, data: bytes) -> None:
        """Protocol output (greeting, READY, PING, PONG, Unregister): outside the bound."""
        with self._wlock:
            self._out.push_raw(data)
        self._flush_soon()

    def _flush(self) -> None:
        self._flush_due = False
        if self._out.buffers and not self._writing and self._sock is not None:
            self._write()

    def _write(self) -> None:
        sock = self._sock
        if sock is None:
            return
        out = self._out
        try:
            with self._wlock:
                buffers = out.buffers
                if buffers:
                    n = sock.send(buffers[0]) if len(buffers) == 1 else sock.sendmsg(buffers[:IOV_MAX])
                    done = out.consume(n)
                else:  # the keepalive thread wrote it
                    done = True
        except (BlockingIOError, InterruptedError):
            done = False
        except OSError as exc:  # EPIPE, ECONNRESET: the kernel is gone
            self._lose(f"connection error: {exc.strerror or exc}")
            return
        if done:
            if self._writing:
                self._writing = False
                self._want_writable(False)
        elif not self._writing:
            self._writing = True
            self._want_writable(True)

    def _linger(self, sock: socket.socket, timeout: float) -> None:
        """Block up to timeout seconds to write what is queued (at close and exit only;
        the lock too is waited for no longer: a daemon thread frozen by the
        interpreter's exit may hold it)."""
        give_up = time.monotonic() + timeout
        if not self._wlock.acquire(timeout=timeout):
            return
        out = self._out
        try:
            while out.buffers:
                left = give_up - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                buffers = out.buffers
                n = sock.send(buffers[0]) if len(buffers) == 1 else sock.sendmsg(buffers[:IOV_MAX])
                out.consume(n)
        except OSError:  # timed out, or the kernel is gone: nothing more to do
            pass
        finally:
            try:
                sock.setblocking(False)
            except OSError:
                pass
            self._wlock.release()

    # ------------------------------------------------------------------ keepalive thread

    def _keepalive(self) -> bool:
        """From the keepalive thread, once an interval: if the owner has not run its
        heartbeat for two intervals, write for it (the rest of its output, else a
        PING). True when output is left (the thread comes back at once)."""
        if time.monotonic() - self._last_tick < 2 * self.heartbeat_ivl_s:
            return False  # the owner runs: its own heartbeat PINGs
        with self._wlock:
            sock = self._sock
            if sock is None or not self.connected:
                return False
            out = self._out
            buffers = out.buffers
            try:
                if not buffers:
                    # Between whole frames. A 9-byte PING is written whole or not at all
                    # by a Unix stream socket.
                    sock.send(self._ping)
                    return False
                n = sock.send(buffers[0]) if len(buffers) == 1 else sock.sendmsg(buffers[:IOV_MAX])
                if out.consume(n):
                    return False
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False  # gone: the owner finds out when it runs
            fd = self._fd
        # Wait for room outside the lock. The fd may be closed (even reused) meanwhile:
        # a spurious wake-up, harmless, since every write looks again under the lock.
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        poller.poll(int(self.heartbeat_ivl_s * 1000))
        return True


class ZmtpCore(ZmtpClient):
    """One process's connection to the kernel, as a ZMTP DEALER on the asyncio loop.

    `attach(loop, deliver, lost)` starts it (see ZmtpClient).
    """

    def __init__(self, process_id: str, endpoint: str, **settings: Any) -> None:
        super().__init__(process_id, endpoint, **settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._retry_handle: asyncio.TimerHandle | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, deliver: Deliver,
               lost: Callable[[], None]) -> None:
        self._loop = loop
        self._tick_handle = loop.call_later(self.heartbeat_ivl_s, self._tick)
        self._start(deliver, lost)

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


# Every started ZMTP connection, for the flush at exit.
_LIVE: weakref.WeakSet[ZmtpClient] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """What a process sent just before it exits still leaves (up to EXIT_LINGER_S
    per connection), as libzmq's LINGER let it."""
    for core in list(_LIVE):
        try:
            core._flush_before_exit()
        except Exception:  # exiting: nothing to report to
            pass


def _keepalive(ref: weakref.ref[ZmtpClient], stop: threading.Event, ivl: float) -> None:
    """The keepalive thread (see the module's docstring). It holds the core weakly: a
    core nobody references any more is collected (its socket closed) as before."""
    busy = False
    while not (stop.is_set() if busy else stop.wait(ivl)):
        core = ref()
        if core is None:
            return
        busy = core._keepalive()
        del core


def _ignore(item: Incoming) -> None:
    pass


def _nothing() -> None:
    pass
