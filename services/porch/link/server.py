"""The kernel's end of the link: a ZMTP 3.1 ROUTER on the node's Unix socket.

It runs in the kernel's one thread, on the kernel's epoll: a message is read by the
thread that routes it and written by the same thread, with no libzmq I/O thread or
mailbox in between (docs/decisions.md §1 has the figures that chose it). Any ZeroMQ
DEALER connects to it unchanged: libzmq's ipc:// transport is a Unix stream socket.

What it keeps from the libzmq ROUTER that the kernel once used:
- ROUTER_MANDATORY + SNDHWM: each peer has a bounded output queue (HIGH_WATER_MARK
  messages, MAX_QUEUE_BYTES bytes). A send to a peer whose queue is full, or whose
  connection is gone, fails (SendFailed), and the kernel answers Offline.
- Heartbeats: every heartbeat interval a PING (TTL the heartbeat timeout) goes to
  every peer; a peer that sends nothing for the timeout (a live libzmq peer always
  answers PINGs, and porch's dealers PING us) is disconnected. PINGs get PONGs.
- MAXMSGSIZE: a frame over MAX_FRAME closes its connection.

What it adds, because it holds the connections itself:
- The peer's pid comes from SO_PEERCRED once, at accept.
- EOF on a connection is a disconnect the kernel hears at once: the registration is
  dropped and its pending requests fail Offline without waiting for the pidfd.
- Garbage on a raw connection (not ZMTP, a bad greeting, another mechanism or socket
  type, a malformed or oversized frame, no handshake within HANDSHAKE_TIMEOUT_MS)
  closes that connection, is counted as malformed and logged (rate-limited).

Writes are deferred to the end of each wakeup: messages routed while handling one
epoll_wait's events are written with one send/sendmsg per peer (scatter-gather:
blobs are never joined to their headers), and what the socket does not take stays
queued, with EPOLLOUT armed, until it does. Socket closes are deferred likewise, so
no fd number is reused while an epoll_wait's events are still being handled.

Bytes only: the server knows frames, not envelopes. What it reads goes to a `Sink`
(the kernel's router); the kernel names a connection by its `Connection` object.
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import struct
import time
from collections import deque
from typing import Any, Protocol

from porch.link import HEARTBEATS_TO_TIMEOUT, heartbeat_ivl_s
from porch.link.codec import MAX_QUEUED_FDS, ROUTER, OutQueue, Session, ping, socket_path
from porch.link.fds import ANCILLARY_SIZE, FD_PROPERTY, BadBlobFd, close_all, received_fds, write_out
from porch.wire import now_ms

HIGH_WATER_MARK = 10_000  # messages queued to one peer (libzmq's SNDHWM)
MAX_QUEUE_BYTES = 64 * 1024 * 1024  # bytes queued to one peer (libzmq has no such bound)
MAX_FRAME = 1 << 30  # libzmq's MAXMSGSIZE (per frame)
# A connection that has not finished the greeting and READY by then is closed
# (libzmq's HANDSHAKE_IVL is 30 s; a local peer needs milliseconds).
HANDSHAKE_TIMEOUT_MS = 10_000
READ_SIZE = 65536
BACKLOG = 128

# Why a send failed, worded as ZeroMQ words them (ROUTER_MANDATORY, the high-water
# mark), so Offline details read as they always did.
UNREACHABLE = "Host unreachable"
FULL = "Resource temporarily unavailable"


class SendFailed(Exception):
    """The peer cannot take the message now: gone (its connection closed), or its
    bounded queue is full. The text is the reason (UNREACHABLE, FULL)."""


class Sink(Protocol):
    """Who hears what the server reads (the kernel's router)."""

    def deliver(self, conn: Any, frame: Any, blob: Any) -> None:
        """A message [envelope] (blob None) or [envelope, blob] from conn."""

    def wrong_frame_count(self, conn: Any, count: int) -> None:
        """A message of `count` frames (neither 1 nor 2) from conn."""

    def disconnected(self, conn: Any) -> None:
        """conn is gone (EOF, error, heartbeat timeout); it will never be seen again."""

    def refused_connection(self, who: str, reason: str) -> None:
        """A connection was closed for breaking the protocol (count it, log it)."""

    def note(self, what: str, msg: str, *args: object) -> None:
        """A rate-limited warning."""


_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_IN_OUT = select.EPOLLIN | select.EPOLLOUT


class Connection:
    """One accepted peer. The routing core holds it as the peer's handle."""

    __slots__ = ("age_ms", "closed", "fd", "fds_in", "ident", "out", "pid", "rx", "rx_seen",
                 "session", "silent_ms", "sock", "takes_fds", "writing")

    def __init__(self, sock: socket.socket, pid: int, ident: bytes, max_frame: int,
                 high_water_mark: int, max_queue_bytes: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pid = pid
        self.ident = ident
        self.session = Session(max_frame, ROUTER)
        self.closed = False
        self.out = OutQueue(high_water_mark, max_queue_bytes)
        # Descriptors received (large blobs, `porch.link.fds`) waiting for their message,
        # in order; read with recvmsg only once the peer's READY said it sends them.
        self.fds_in: deque[int] = deque()
        self.takes_fds = False
        # EPOLLOUT armed (the socket took less than was queued). A connection with
        # output queued is either writing or on the transport's dirty list.
        self.writing = False
        # Liveness: reads so far, the count at the last heartbeat tick, silence so far.
        self.rx = 0
        self.rx_seen = 0
        self.silent_ms = 0
        self.age_ms = 0  # before the handshake completes

    def __repr__(self) -> str:
        return f"<zmtp connection {self.ident.hex()} os pid {self.pid}>"


class ZmtpServer:
    """Implements the kernel's transport seam (`porch.kernel.transport.Transport`)."""

    name = "zmtp"

    def __init__(
        self,
        endpoint: str,
        *,
        high_water_mark: int = HIGH_WATER_MARK,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
        max_frame: int = MAX_FRAME,
        heartbeat_ivl_ms: int | None = None,
        heartbeat_timeout_ms: int | None = None,
        handshake_timeout_ms: int = HANDSHAKE_TIMEOUT_MS,
    ) -> None:
        self.endpoint = endpoint
        self.path = socket_path(endpoint)
        self.high_water_mark = high_water_mark
        self.max_queue_bytes = max_queue_bytes
        self.max_frame = max_frame
        ivl = heartbeat_ivl_ms if heartbeat_ivl_ms is not None else int(heartbeat_ivl_s() * 1000)
        self.heartbeat_ivl_ms = ivl
        self.heartbeat_timeout_ms = (heartbeat_timeout_ms if heartbeat_timeout_ms is not None
                                     else HEARTBEATS_TO_TIMEOUT * ivl)
        self.handshake_timeout_ms = handshake_timeout_ms
        self._ping = ping(min(0xFFFF, self.heartbeat_timeout_ms // 100))
        self.conns: dict[int, Connection] = {}  # fd -> connection
        self.lsock: socket.socket | None = None
        self._epoll: select.epoll | None = None
        self._sink: Sink | None = None
        self._dirty: list[Connection] = []  # queued output not yet attempted
        self._closing: list[socket.socket] = []
        # On the monotonic clock: a wall-clock step back must not stall the heartbeats.
        self._next_tick = 0.0
        self._accepting = False
        # Routing identities in libzmq's format (0x00 + a 32-bit counter from a random
        # start): logs name unregistered connections the same way on both transports.
        self._serial = random.getrandbits(31)

    # ------------------------------------------------------------------ lifecycle

    def bind(self) -> None:
        if not self.path.startswith("\0") and os.path.exists(self.path):
            os.unlink(self.path)  # stale socket of a previous kernel (the lock proves it)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o077)
        try:
            lsock.bind(self.path)
        except OSError:
            lsock.close()
            raise
        finally:
            os.umask(old_umask)
        lsock.listen(BACKLOG)
        lsock.setblocking(False)
        self.lsock = lsock

    def attach(self, epoll: select.epoll, sink: Sink) -> None:
        assert self.lsock is not None, "bind() first"
        self._epoll = epoll
        self._sink = sink
        epoll.register(self.lsock.fileno(), _EPOLLIN)
        self._accepting = True
        self._next_tick = time.monotonic() + self.heartbeat_ivl_ms / 1000

    def detach(self) -> None:
        epoll = self._epoll
        if epoll is None:
            return
        if self._accepting and self.lsock is not None:
            epoll.unregister(self.lsock.fileno())
            self._accepting = False
        for conn in self.conns.values():
            epoll.unregister(conn.fd)
        self._epoll = None

    def close(self) -> None:
        self.detach()
        for conn in self.conns.values():
            conn.closed = True
            conn.sock.close()
        self.conns.clear()
        self._close_deferred()
        if self.lsock is not None:
            self.lsock.close()
            self.lsock = None
            if not self.path.startswith("\0"):
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass

    # ------------------------------------------------------------------ events

    def on_events(self, ready: list[tuple[int, int]]) -> bool:
        conns = self.conns
        for fd, ev in ready:
            conn = conns.get(fd)
            if conn is None:
                if self.lsock is not None and fd == self.lsock.fileno():
                    self._accept()
                continue  # a pidfd (the core's), or a connection closed meanwhile
            if ev & _EPOLLOUT:
                self._write(conn)
            if ev & ~_EPOLLOUT and not conn.closed:  # IN, HUP, ERR: a read says which
                self._read(conn)
        if self._dirty:
            self._flush_dirty()
        if self._closing:
            self._close_deferred()
        return False

    def flush(self) -> bool:
        if self._dirty:
            self._flush_dirty()
        if self._closing:
            self._close_deferred()
        return False

    def next_timer(self) -> int:
        return now_ms() + max(0, int((self._next_tick - time.monotonic()) * 1000))

    def on_timer(self, now: int) -> None:
        """Heartbeats, handshake deadlines, and accepting again after EMFILE."""
        ivl = self.heartbeat_ivl_ms
        self._next_tick = time.monotonic() + ivl / 1000
        if not self._accepting and self.lsock is not None and self._epoll is not None:
            self._epoll.register(self.lsock.fileno(), _EPOLLIN)
            self._accepting = True
        for conn in list(self.conns.values()):
            if conn.rx != conn.rx_seen:
                conn.rx_seen = conn.rx
                conn.silent_ms = 0
            else:
                conn.silent_ms += ivl
            if not conn.session.ready:
                conn.age_ms += ivl
                if conn.age_ms >= self.handshake_timeout_ms:
                    self._refuse(conn, f"no ZMTP handshake within {self.handshake_timeout_ms} ms")
                continue
            if conn.silent_ms >= self.heartbeat_timeout_ms:
                self._note("heartbeat", "zmtp: closing %r: nothing received for %d ms "
                           "(heartbeat timeout)", conn, conn.silent_ms)
                self._close(conn)
                continue
            if not conn.writing:  # a peer with a backlog is not reading PINGs either
                self._queue_raw(conn, self._ping)
        self.flush()

    # ------------------------------------------------------------------ accept / close

    def _accept(self) -> None:
        lsock = self.lsock
        epoll = self._epoll
        assert lsock is not None and epoll is not None
        for _ in range(64):
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._note("accept", "zmtp: accept failed: %s", exc)
                    return
                # Out of descriptors: stop accepting until the next tick rather than
                # spin on a listening socket that stays readable.
                self._note("accept", "zmtp: accept failed (%s); pausing accepts for %d ms",
                           exc, self.heartbeat_ivl_ms)
                epoll.unregister(lsock.fileno())
                self._accepting = False
                return
            sock.setblocking(False)
            try:
                cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                pid = struct.unpack("3i", cred)[0]
            except OSError:
                pid = 0
            self._serial = (self._serial + 1) & 0xFFFFFFFF
            conn = Connection(sock, pid, b"\0" + struct.pack(">I", self._serial), self.max_frame,
                              self.high_water_mark, self.max_queue_bytes)
            self.conns[conn.fd] = conn
            epoll.register(conn.fd, _EPOLLIN)
            # Our greeting and READY, at once (a few dozen bytes into an empty buffer).
            self._queue_session_output(conn)

    def _close(self, conn: Connection) -> None:
        """Forget conn now; its socket is closed once this wakeup's events are handled."""
        if conn.closed:
            return
        conn.closed = True
        del self.conns[conn.fd]
        if self._epoll is not None:
            self._epoll.unregister(conn.fd)
        close_all(conn.out.clear())
        close_all(conn.fds_in)
        conn.fds_in.clear()
        self._closing.append(conn.sock)
        if conn.session.ready and self._sink is not None:
            self._sink.disconnected(conn)

    def _refuse(self, conn: Connection, reason: str) -> None:
        """Close conn for breaking the protocol: counted, logged; an ERROR goes first
        when the session queued one (best effort, one non-blocking write)."""
        if conn.closed:
            return
        if conn.session.out:
            self._queue_session_output(conn)
        if conn.out.buffers:
            try:
                write_out(conn.sock, conn.out)
            except OSError:
                pass
        if self._sink is not None:
            self._sink.refused_connection(f"{conn.ident.hex()} (os pid {conn.pid})", reason)
        self._close(conn)

    def _close_deferred(self) -> None:
        closing, self._closing = self._closing, []
        for sock in closing:
            sock.close()

    def _note(self, what: str, msg: str, *args: object) -> None:
        if self._sink is not None:
            self._sink.note(what, msg, *args)

    # ------------------------------------------------------------------ reading

    def _read(self, conn: Connection) -> None:
        session = conn.session
        buf = session.read_buffer()
        sock = conn.sock
        try:
            if conn.takes_fds:
                if buf is None:
                    data, anc, flags, _ = sock.recvmsg(READ_SIZE, ANCILLARY_SIZE)
                    n = len(data)
                else:
                    n, anc, flags, _ = sock.recvmsg_into([buf], ANCILLARY_SIZE)
                if anc or flags & socket.MSG_CTRUNC:
                    self._take_fds(conn, anc, flags)
                    if conn.closed:
                        return
            elif buf is None:
                data = sock.recv(READ_SIZE)
                n = len(data)
            else:
                n = sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # ECONNRESET and the like: the peer is gone
            self._close(conn)
            return
        if not n:
            self._close(conn)
            return
        msgs = session.feed(data) if buf is None else session.filled(n)
        conn.rx += 1
        if session.out:
            self._queue_session_output(conn)
        if not conn.takes_fds and session.ready:
            conn.takes_fds = session.peer_properties.get(FD_PROPERTY.decode().lower()) == b"1"
        if msgs:
            sink = self._sink
            assert sink is not None
            for frames, count in msgs:
                if count == 1:
                    sink.deliver(conn, frames[0], None)
                elif count == 2:
                    sink.deliver(conn, frames[0], frames[1])
                else:
                    sink.wrong_frame_count(conn, count)
                if conn.closed:
                    return
        if session.error is not None:
            self._refuse(conn, session.error)

    def _take_fds(self, conn: Connection, anc: list[tuple[int, int, bytes]], flags: int) -> None:
        try:
            fds = received_fds(anc, flags)
        except BadBlobFd as exc:
            self._refuse(conn, str(exc))
            return
        conn.fds_in.extend(fds)
        if len(conn.fds_in) > MAX_QUEUED_FDS:
            self._refuse(conn, f"more than {MAX_QUEUED_FDS} descriptors sent ahead of their messages")

    def take_fd(self, conn: Any) -> int:
        """The next descriptor conn sent (for the message that says it has one), or -1."""
        c: Connection = conn
        return c.fds_in.popleft() if c.fds_in else -1

    def takes_fds(self, conn: Any) -> bool:
        """Whether conn's peer said (READY) it takes blobs as descriptors."""
        c: Connection = conn
        return c.takes_fds

    # ------------------------------------------------------------------ writing

    def send(self, conn: Any, frame: Any, blob: Any, bounded: bool = True, fd: int = -1) -> None:
        c: Connection = conn
        if c.closed:
            raise SendFailed(UNREACHABLE)
        out = c.out
        was_empty = out.empty
        if not out.push(frame, blob, force=not bounded, fd=fd):
            raise SendFailed(FULL)
        if was_empty:  # not on the dirty list nor writing yet
            self._dirty.append(c)

    def _queue_raw(self, conn: Connection, data: bytes) -> None:
        """Protocol output (greeting, READY, PING, PONG): outside the HWM bound."""
        if conn.out.empty:
            self._dirty.append(conn)
        conn.out.push_raw(data)

    def _queue_session_output(self, conn: Connection) -> None:
        out = conn.session.out
        self._queue_raw(conn, out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def _flush_dirty(self) -> None:
        dirty = self._dirty
        while dirty:
            conn = dirty.pop()
            if not conn.writing and not conn.closed and conn.out.buffers:
                self._write(conn)

    def _write(self, conn: Connection) -> None:
        try:
            n = write_out(conn.sock, conn.out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:  # EPIPE, ECONNRESET: the peer is gone
            self._close(conn)
            return
        if conn.out.consume(n):
            if conn.writing:
                conn.writing = False
                if self._epoll is not None:
                    self._epoll.modify(conn.fd, _EPOLLIN)
        elif not conn.writing:  # partly written: wait until the socket takes more
            conn.writing = True
            if self._epoll is not None:
                self._epoll.modify(conn.fd, _IN_OUT)

    # ------------------------------------------------------------------ for the core

    def peer_pid(self, conn: Any) -> int:
        c: Connection = conn
        return c.pid

    def describe(self, conn: Any) -> str:
        c: Connection = conn
        return c.ident.hex()

    def queue_depth(self, conn: Any) -> tuple[int, int]:
        """(messages, bytes) queued to conn and not written yet (the node's figures)."""
        c: Connection = conn
        out = c.out
        return len(out.ends), out.queued - out.written
