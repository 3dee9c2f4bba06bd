"""A process's end of the link: a ZMTP 3.1 DEALER on the kernel's Unix socket.

`Dealer` is the connection's whole state machine, bytes only: connect, handshake,
reconnect with backoff, reads and decoding into frames, the bounded output and its
writes, heartbeats, close, the keepalive thread. It knows frames, not envelopes: the
process's session with the kernel (`porch.process.session.KernelSession`) is its
`Handler`, told when a connection is ready (it sends its Register first), given every
message, and told when an established connection is lost. Two drivers decide when it
runs:

- `porch.link.asyncio_dealer.AsyncioDealer`: the asyncio loop reads and writes it
  (`add_reader`), for `porch.AsyncProcess`;
- `porch.link.blocking_dealer.BlockingDealer`: a poll(2) in the blocking stub's calls,
  for `porch.Process`.

Speaking ZMTP in the process itself removes what a libzmq DEALER costs: every message
handed to its I/O thread and back (an eventfd write and a wake-up each way);
docs/decisions.md §1 has the figures. What it keeps of libzmq's DEALER options:

- IMMEDIATE: nothing is sent, or queued, unless the handshake with a kernel is done;
  a send while disconnected fails at once (the session raises Offline).
- SNDHWM: the output not yet taken by the socket is bounded (HIGH_WATER_MARK
  messages, MAX_QUEUE_BYTES bytes); a send past it fails.
- Heartbeats: a PING (TTL the heartbeat timeout) every heartbeat interval; the
  kernel's PINGs get PONGs; a kernel that sends nothing for the heartbeat timeout (it
  PINGs every interval) is dropped as hung.
- Reconnection with backoff (RECONNECT_IVL_S doubling to RECONNECT_IVL_MAX_S).
- close(goodbye): a last message (the session's Unregister), and up to CLOSE_LINGER_S
  to flush (libzmq's linger); at exit (atexit, or a dealer collected unclosed), up to
  EXIT_LINGER_S for what is still unwritten: a response sent just before the process
  exits still leaves.

A disconnect is seen at the EOF itself. Everything runs on the owner's thread (the
loop's, or the blocking caller's), but for one thing: the kernel drops a peer it hears
nothing from for the heartbeat timeout, and the owner may not run for that long (a
loop blocked by a long computation; a blocking process computing for minutes between
two calls). So a keepalive thread, asleep on the message path, wakes once an interval
and, only when the owner has not run its heartbeat for two intervals, writes for it
under the write lock: the rest of what the owner left queued if anything is (a large
response, say), else a PING (only between whole frames: nothing is queued then). What
arrives meanwhile waits in the socket and the kernel's queue for the owner. Every
write, and every change to the output queue, happens under that lock.

Output is coalesced: a send appends to the queue; the asyncio driver writes the queue
once per loop iteration (`call_soon`), the blocking one at once; both write at the end
of a read what the read made them send (PONGs, Register). Blobs are written from
their own buffers (scatter-gather), and large incoming bodies are read straight into
their own buffer (`Session.read_buffer`).
"""

from __future__ import annotations

import atexit
import logging
import select
import socket
import threading
import time
import weakref
from collections import deque
from typing import Any, Protocol

from porch.link import HEARTBEATS_TO_TIMEOUT
from porch.link import heartbeat_ivl_s as heartbeat_ivl
from porch.link.codec import DEALER, OutQueue, Session, encode_message, ping, socket_path
from porch.link.fds import ANCILLARY_SIZE, FD_PROPERTY, BadBlobFd, close_all, received_fds, write_out

log = logging.getLogger("porch.link")

HIGH_WATER_MARK = 10_000  # messages not yet written (libzmq's SNDHWM)
MAX_QUEUE_BYTES = 256 * 1024 * 1024  # bytes not yet written (libzmq had no such bound)
MAX_FRAME = 1 << 30  # the kernel's MAXMSGSIZE: it sends nothing larger
RECONNECT_IVL_S = 0.1
RECONNECT_IVL_MAX_S = 1.0
CLOSE_LINGER_S = 0.2
EXIT_LINGER_S = 0.5
READ_SIZE = 65536
# Reads per wake-up before the owner gets a turn (a large blob is read in many).
READS_PER_WAKEUP = 64


class Handler(Protocol):
    """What the dealer tells its owner (the process's session with the kernel)."""

    def on_connected(self) -> None:
        """A connection's handshake is done; send what must go first (Register)."""

    def on_message(self, frames: list[bytes]) -> None:
        """One message from the kernel: [envelope] or [envelope, blob]."""

    def on_lost(self) -> None:
        """An established connection ended (not called when an attempt fails)."""

    def on_refused(self, detail: str) -> None:
        """The kernel refused this end's credentials for good (a remote link's key:
        `porch.link.remote`); the local link never calls it."""


class Dealer:
    """One process's connection to the kernel as a ZMTP DEALER, whatever drives it.

    `start(handler)` (from a driver) begins: from then on it connects (and reconnects)
    by itself and reports to the handler. A driver implements the hooks (`_watch` ...
    `_stop_timers`), calls `_on_readable` and `_write` when the socket is ready,
    `_heartbeat` every heartbeat interval, and `_connect` when `_retry_after` says.
    `name` (the process id) names it in logs.
    """

    takes_fds = True  # porch.link.Link: blobs as descriptors, on the node's Unix socket
    remote = False

    def __init__(
        self,
        endpoint: str,
        *,
        name: str = "",
        high_water_mark: int = HIGH_WATER_MARK,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
        heartbeat_ivl_s: float | None = None,
        heartbeat_timeout_s: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.name = name or "dealer"
        self.path = socket_path(endpoint)
        self.connected = False
        self.high_water_mark = high_water_mark
        self.max_queue_bytes = max_queue_bytes
        ivl = heartbeat_ivl_s if heartbeat_ivl_s is not None else heartbeat_ivl()
        self.heartbeat_ivl_s = ivl
        self.heartbeat_timeout_s = (heartbeat_timeout_s if heartbeat_timeout_s is not None
                                    else HEARTBEATS_TO_TIMEOUT * ivl)
        self._ping = ping(min(0xFFFF, int(self.heartbeat_timeout_s * 10)))
        self._handler: Handler = _NO_HANDLER
        self._closed = False
        self._sock: socket.socket | None = None
        self._fd = -1
        self._session: Session | None = None
        self._out = OutQueue(self.high_water_mark, self.max_queue_bytes)
        # Descriptors from the kernel waiting for their message (`take_fd`), in order.
        self._fds_in: deque[int] = deque()
        self._writing = False  # the socket took less than was queued: the driver waits for room
        self._flush_due = False  # output queued, a flush scheduled (or at the read's end)
        self._reading = False
        # Liveness: reads so far, the count at the last heartbeat tick, silence so far.
        self._rx = 0
        self._rx_seen = 0
        self._silent_s = 0.0
        # time.monotonic() of the last bytes from the kernel (PONGs included): what was
        # sent before it may be inside a kernel that dies (the http-server's WebSockets).
        self.last_heard = 0.0
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

    def _start(self, handler: Handler) -> None:
        self._handler = handler
        self._last_tick = time.monotonic()
        _LIVE.add(self)
        threading.Thread(target=_keepalive, args=(weakref.ref(self), self._stop, self.heartbeat_ivl_s),
                         name=f"porch-keepalive {self.name}", daemon=True).start()
        self._connect()

    def close(self, goodbye: bytes | None = None) -> None:
        """Send `goodbye` (a last one-frame message, if connected), give the output up
        to CLOSE_LINGER_S to leave, and close. Never calls lost()."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._stop_timers()
        sock = self._sock
        if sock is not None:
            if goodbye is not None and self.connected:
                with self._wlock:
                    self._out.push_raw(encode_message([goodbye]))
                self._linger(sock, CLOSE_LINGER_S)
            self._drop_socket()
        self.connected = False

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
        session = self._session = Session(MAX_FRAME, DEALER, {FD_PROPERTY: b"1"})
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
            log.debug("%s: %s", self.name, why)
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
            close_all(self._out.clear())
        close_all(self._fds_in)
        self._fds_in.clear()
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
        self.connected = False
        if was_connected:
            log.info("%s: connection to the kernel ended: %s", self.name, why)
            self._last_failure = ""
            try:
                self._handler.on_lost()
            except Exception:
                log.exception("%s: disconnect handling failed", self.name)
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
                        data, anc, flags, _ = sock.recvmsg(READ_SIZE, ANCILLARY_SIZE)
                        n = len(data)
                        more = n == READ_SIZE
                    else:
                        n, anc, flags, _ = sock.recvmsg_into([buf], ANCILLARY_SIZE)
                        more = n == len(buf)
                    if anc or flags & socket.MSG_CTRUNC:
                        self._fds_in.extend(received_fds(anc, flags))
                except (BlockingIOError, InterruptedError):
                    break
                except BadBlobFd as exc:
                    self._lose(f"descriptors lost: {exc}")
                    return
                except OSError as exc:  # ECONNRESET and the like: the kernel is gone
                    self._lose(f"connection error: {exc.strerror or exc}")
                    return
                if not n:
                    self._lose("the kernel closed the connection")
                    return
                msgs = session.feed(data) if buf is None else session.filled(n)
                self._rx += 1
                self.last_heard = time.monotonic()
                if session.out:  # PONGs (an ERROR before a close)
                    self._queue_raw(b"".join(session.out))
                    session.out.clear()
                if not self.connected and session.ready:
                    self.connected = True
                    self._backoff = RECONNECT_IVL_S
                    self._last_failure = ""
                    try:
                        self._handler.on_connected()  # its Register goes out before anything else
                    except Exception:
                        log.exception("%s: connection handling failed", self.name)
                    if self._sock is not sock:
                        return
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
        received = self._handler.on_message
        for frames, count in msgs:
            if count > 2:
                log.warning("%s: dropped a message of %d frames", self.name, count)
                continue
            head = frames[0]
            if type(head) is not bytes:
                frames[0] = bytes(head)
            if count == 2 and type(frames[1]) is not bytes:
                frames[1] = bytes(frames[1])  # a large body read in place: one copy
            try:
                received(frames)
            except Exception:
                log.exception("%s: handling an incoming message failed", self.name)
            if self._sock is None:
                return

    # ------------------------------------------------------------------ writing

    def send(self, frame: bytes, blob: bytes | None = None, fd: int = -1) -> bool:
        """Queue [frame] or [frame, blob] (and write it, or have it written) without
        blocking. False when it cannot go: no connection, or too much unwritten.
        `fd` (a blob as a descriptor, `porch.link.fds`) travels with the message; the
        dealer owns it once this returns True."""
        if self.connected:
            with self._wlock:
                queued = self._out.push(frame, blob, fd=fd)
            if queued:
                self._flush_soon()
                if self.connected:  # a write may have found the kernel gone
                    return True
        return False

    def take_fd(self) -> int:
        """The next descriptor the kernel sent (for the message that says it has one),
        or -1 if none came: the caller owns it."""
        return self._fds_in.popleft() if self._fds_in else -1

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
                # Nothing queued: the keepalive thread wrote it.
                done = out.consume(write_out(sock, out)) if out.buffers else True
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
                out.consume(write_out(sock, out))
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
                if out.consume(write_out(sock, out)):
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


# Every started ZMTP connection, for the flush at exit.
_LIVE: weakref.WeakSet[Dealer] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """What a process sent just before it exits still leaves (up to EXIT_LINGER_S
    per connection), as libzmq's LINGER let it."""
    for dealer in list(_LIVE):
        try:
            dealer._flush_before_exit()
        except Exception:  # exiting: nothing to report to
            pass


def _keepalive(ref: weakref.ref[Dealer], stop: threading.Event, ivl: float) -> None:
    """The keepalive thread (see the module's docstring). It holds the dealer weakly: a
    dealer nobody references any more is collected (its socket closed)."""
    busy = False
    while not (stop.is_set() if busy else stop.wait(ivl)):
        dealer = ref()
        if dealer is None:
            return
        busy = dealer._keepalive()
        del dealer


class _NoHandler:
    def on_connected(self) -> None:
        pass

    def on_message(self, frames: list[bytes]) -> None:
        pass

    def on_lost(self) -> None:
        pass

    def on_refused(self, detail: str) -> None:
        pass


_NO_HANDLER = _NoHandler()
