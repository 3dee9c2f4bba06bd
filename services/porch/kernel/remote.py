"""The kernel's second transport: processes on other machines, over TCP with CurveZMQ.

`[kernel] listen = "tcp://0.0.0.0:9555"` binds a libzmq ROUTER there, a CURVE server
with the node's key pair (`porch.node.keys`). libzmq does the handshake, the
encryption and the heartbeats; pyzmq's ZAP authenticator (a thread) lets a handshake
complete only for a public key porch.toml declares and nobody revoked (`KeyRing`).
The ROUTER lives in the kernel's epoll beside the local Unix-socket transport
(`porch.link.server`), and reports to the same router (`porch.kernel.router`), whose
rules do not change for it: stamping, capabilities, rsvp, deadlines, pending requests.
What differs, and is decided here or asked of the router:

- Identity. Every message carries the key its connection proved (ZAP's User-Id). A
  connection may register only the id that key is declared for (`admits`), never a
  reserved one; a message whose key differs from its connection's (a routing id
  reused) starts a new connection in the router's eyes.
- Liveness, without pids. libzmq's heartbeats (ZMQ_HEARTBEAT_IVL/TIMEOUT/TTL, the
  node's heartbeat interval, PORCH_HEARTBEAT_IVL_S, and HEARTBEATS_TO_TIMEOUT times it)
  close a connection that went silent; a connection the OS closes (a process killed, a
  reset) is closed at once. The socket monitor reports each close by descriptor; the
  router needs the routing id, so the transport asks libzmq directly: a message of one
  empty frame to the routing id of every connection that was on that descriptor
  (ROUTER_MANDATORY fails it with EHOSTUNREACH once the connection is gone). Every
  heartbeat interval every connection is checked the same way. A gone connection is
  reported to the router, which fails its pending requests Offline. Processes ignore
  the empty message (`porch.link.remote`).
- Bounds. SNDHWM (`[kernel] remote_queue` messages) with ROUTER_MANDATORY: a send to a
  process that does not read fails (SendFailed: the router answers Offline). At most
  `[kernel] remote_connections` connections are open at once, handshaking included: one
  more is closed as soon as it is accepted. A handshake must finish within
  HANDSHAKE_IVL_MS. Refused handshakes are counted and logged at most once a second.
- No descriptors: a large blob is read by the router and sent as a frame.

Revocation takes effect without a restart: every heartbeat interval the revoked-keys
file is re-read if it changed; connections of a newly revoked key are reported gone
(their registrations end, pending requests fail Offline) and closed, and the ZAP
handler refuses that key from then on.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time
from typing import Any, cast

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from porch.kernel.keyring import KeyRing
from porch.kernel.transport import FULL, UNREACHABLE, SendFailed, Sink
from porch.link import HEARTBEATS_TO_TIMEOUT, heartbeat_ivl_s
from porch.node.keys import KeyPair, short
from porch.wire import now_ms

log = logging.getLogger("porch.kernel")

ZAP_DOMAIN = "porch"
MAX_MSG_SIZE = 1 << 30  # as the local link's MAX_FRAME
HANDSHAKE_IVL_MS = 10_000
BACKLOG = 128
# Frame sets handled per wakeup before deadlines and the other transport get a turn.
BATCH = 1000
NOBLOCK = int(zmq.NOBLOCK)
MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_COPY_BELOW = 65536  # zmq copies small frames faster than it tracks borrowed ones
MONITOR_EVENTS = int(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPT_FAILED
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)


class RemoteConn:
    """One authenticated connection, as the router names it."""

    __slots__ = ("address", "fd", "gone", "key", "rid", "seen", "since")

    def __init__(self, rid: bytes, key: str, address: str, fd: int) -> None:
        self.rid = rid
        self.key = key
        self.address = address
        self.fd = fd  # libzmq's descriptor for it, when its first message came
        self.since = time.time()
        self.seen = self.since  # last message, or last check that it is still connected
        self.gone = False

    def __repr__(self) -> str:
        return f"<remote connection {self.rid.hex()} from {self.address} key {short(self.key)}>"


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, telling the key ring the address of each handshake (for logs)."""

    def __init__(self, context: zmq.Context[Any], ring: KeyRing) -> None:
        super().__init__(context)
        self.ring = ring
        self._address = ""
        self.configure_curve_callback(ZAP_DOMAIN, self)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("ascii", "replace") if len(msg) > 3 else ""
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        return self.ring.zap_allows(self._address, key.decode("ascii", "replace"))


class RemoteTransport:
    """Implements the kernel's transport seam (`porch.kernel.transport.RemoteSeam`)."""

    name = "remote"

    def __init__(
        self,
        endpoint: str,
        ring: KeyRing,
        server: KeyPair,
        *,
        queue: int = 1000,
        max_connections: int = 128,
        heartbeat_ivl_ms: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.ring = ring
        self.server = server
        self.queue = queue
        self.max_connections = max_connections
        ivl = heartbeat_ivl_ms if heartbeat_ivl_ms is not None else int(heartbeat_ivl_s() * 1000)
        self.heartbeat_ivl_ms = ivl
        self.heartbeat_timeout_ms = HEARTBEATS_TO_TIMEOUT * ivl
        self.conns: dict[bytes, RemoteConn] = {}  # routing id -> connection
        self.open = 0  # TCP connections open (accepted, not yet disconnected)
        self.port = 0
        self._ctx: zmq.Context[Any] | None = None
        self._auth: _Authenticator | None = None
        self.sock: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._fd = self._mfd = -1
        self._epoll: select.epoll | None = None
        self._sink: Sink | None = None
        self._touched = False  # a socket operation since the last drain (see flush)
        self._gone: list[RemoteConn] = []  # found gone by a send: reported at flush
        self._suspects: dict[RemoteConn, float] = {}  # closed descriptor, check again until
        self._next_tick = 0.0

    # ------------------------------------------------------------------ lifecycle

    def bind(self) -> None:
        # One I/O thread: monitor events and messages then come in the order they happened.
        ctx = self._ctx = zmq.Context(io_threads=1)
        auth = self._auth = _Authenticator(ctx, self.ring)
        auth.start()  # before the socket: CURVE without a ZAP handler would accept any key
        sock = self.sock = ctx.socket(zmq.ROUTER)
        hb = self.heartbeat_ivl_ms
        for opt, value in (
            (zmq.LINGER, 0),
            (zmq.ROUTER_MANDATORY, 1),
            (zmq.SNDHWM, self.queue),
            (zmq.RCVHWM, self.queue),
            (zmq.MAXMSGSIZE, MAX_MSG_SIZE),
            (zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS),
            (zmq.BACKLOG, BACKLOG),
            (zmq.HEARTBEAT_IVL, hb),
            (zmq.HEARTBEAT_TIMEOUT, self.heartbeat_timeout_ms),
            (zmq.HEARTBEAT_TTL, self.heartbeat_timeout_ms),
            (zmq.CURVE_SERVER, 1),
        ):
            sock.setsockopt(opt, value)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.server.secret.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.server.public.encode())
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        self._monitor = sock.get_monitor_socket(MONITOR_EVENTS)
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise OSError(exc.errno, f"cannot listen on {self.endpoint}: {exc.strerror}") from None
        last = cast(bytes, sock.getsockopt(zmq.LAST_ENDPOINT)).decode()
        self.port = int(last.rsplit(":", 1)[1])

    def attach(self, epoll: select.epoll, sink: Sink) -> None:
        assert self.sock is not None and self._monitor is not None, "bind() first"
        self._epoll = epoll
        self._sink = sink
        self._fd = cast(int, self.sock.getsockopt(zmq.FD))
        self._mfd = cast(int, self._monitor.getsockopt(zmq.FD))
        epoll.register(self._fd, select.EPOLLIN)
        epoll.register(self._mfd, select.EPOLLIN)
        self._next_tick = time.monotonic() + self.heartbeat_ivl_ms / 1000
        # Look once: the fds only signal what comes after the last look.
        self._drain_monitor()
        self._touched = True

    def detach(self) -> None:
        if self._epoll is not None:
            self._epoll.unregister(self._fd)
            self._epoll.unregister(self._mfd)
            self._epoll = None

    def close(self) -> None:
        self.detach()
        if self.sock is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self.sock.close(0)
            self.sock = None
        if self._monitor is not None:
            self._monitor.close(0)
            self._monitor = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # ------------------------------------------------------------------ events

    def on_events(self, ready: list[tuple[int, int]]) -> bool:
        monitor = router = False
        for fd, _ in ready:
            if fd == self._fd:
                router = True
            elif fd == self._mfd:
                monitor = True
        if monitor:
            self._drain_monitor()
        if router or self._touched:
            return self._drain()
        return False

    def flush(self) -> bool:
        if self._gone:
            self._report_gone()
        if self._suspects:
            self._check_suspects()
        # A send or a check may have taken the fd's signal for a message now waiting
        # (ZeroMQ's fd only says "look again"): look before the loop sleeps.
        return self._drain() if self._touched else False

    def next_timer(self) -> int:
        if self._suspects:
            return now_ms() + 10
        return now_ms() + max(0, int((self._next_tick - time.monotonic()) * 1000))

    def on_timer(self, now: int) -> None:
        """Every heartbeat interval: is every connection still there; revocations;
        the refusals to log; the ZAP thread still running."""
        if time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + self.heartbeat_ivl_ms / 1000
        if self.sock is None:
            return
        if self._auth is None or not self._auth.is_alive():
            self._fail_closed()
            return
        for key in self.ring.reload():
            self._revoked(key)
        self._log_refusals()
        for conn in list(self.conns.values()):
            self._gone_now(conn)
        self._report_gone()

    # ------------------------------------------------------------------ reading

    def _drain(self) -> bool:
        """Handle what is waiting, at most BATCH messages; True if more may be waiting."""
        self._touched = False
        sock = self.sock
        sink = self._sink
        if sock is None or sink is None:
            return False
        recv = sock.recv
        conns = self.conns
        for _ in range(BATCH):
            try:
                rid = recv(NOBLOCK)
            except zmq.Again:
                return False
            frame = recv(NOBLOCK, copy=False)
            blob: Any = None
            count = 1
            if frame.more:
                part = recv(NOBLOCK, copy=False)
                count = 2
                blob = part.buffer if len(part) >= _COPY_BELOW else part.bytes
                while part.more:
                    part = recv(NOBLOCK, copy=False)
                    count += 1
            try:
                key = str(frame.get("User-Id"))
            except zmq.ZMQError:
                key = ""
            conn = conns.get(rid)
            if conn is None or conn.key != key:
                if conn is not None:  # another connection under a reused routing id
                    self._lose(conn)
                    self._report_gone()
                conn = self._adopt(rid, frame, key)
                if conn is None:
                    continue
            conn.seen = time.time()
            if count == 1:
                sink.deliver(conn, frame.bytes, None)
            elif count == 2:
                sink.deliver(conn, frame.bytes, blob)
            else:
                sink.wrong_frame_count(conn, count)
        return True

    def _adopt(self, rid: bytes, frame: zmq.Frame, key: str) -> RemoteConn | None:
        """The first message of a connection: name it (routing id, key, address)."""
        if not key:
            # No ZAP handler answered the handshake: never route for an unproven peer.
            self._note("zap", "remote: a message without a proven key was dropped "
                       "(is the ZAP handler running?)")
            return None
        try:
            address = str(frame.get("Peer-Address"))
        except zmq.ZMQError:
            address = "?"
        try:
            fd = int(frame.get(zmq.SRCFD))
        except (zmq.ZMQError, ValueError, TypeError):
            fd = -1
        conn = RemoteConn(rid, key, address, fd)
        self.conns[rid] = conn
        log.info("remote: connection from %s with key %s", address, short(key))
        return conn

    def _drain_monitor(self) -> None:
        monitor = self._monitor
        if monitor is None:
            return
        while True:
            try:
                frames = monitor.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            try:
                event = parse_monitor_message(frames)
            except (ValueError, IndexError, TypeError):
                continue
            kind = event["event"]
            value = int(event["value"])
            if kind == zmq.EVENT_ACCEPTED:
                self.open += 1
                if self.open > self.max_connections:
                    self._shed(value)
            elif kind == zmq.EVENT_DISCONNECTED:
                self.open = max(0, self.open - 1)
                self._closed_fd(value)
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                pass  # the ZAP refusal was noted with its address (logged at the tick)
            elif kind == zmq.EVENT_ACCEPT_FAILED:
                self._note("remote-accept", "remote: accept failed: %s", os.strerror(value))
            else:
                self._note("remote-handshake", "remote: a handshake failed (%s)",
                           getattr(kind, "name", kind))

    def _closed_fd(self, fd: int) -> None:
        """libzmq closed a connection on fd: which routing id was it? Ask libzmq."""
        if self.sock is not None:
            self.sock.get(zmq.EVENTS)  # take libzmq's pending commands: the pipe's end
            self._touched = True  # ... which may have taken the fd's signal too
        until = time.monotonic() + self.heartbeat_ivl_ms / 1000
        for conn in list(self.conns.values()):
            if conn.fd == fd and not self._gone_now(conn):
                self._suspects[conn] = until  # not gone yet in libzmq's tables: again soon
        self._report_gone()

    def _check_suspects(self) -> None:
        now = time.monotonic()
        for conn, until in list(self._suspects.items()):
            if conn.gone or self._gone_now(conn) or now >= until:
                self._suspects.pop(conn, None)  # (_lose has taken a gone one out already)
        self._report_gone()

    def _gone_now(self, conn: RemoteConn) -> bool:
        """Has libzmq closed conn? Asked with one empty message (its process ignores
        it): True, and conn is reported gone, when libzmq has no such connection any
        more; False when the message went or its queue is full."""
        sock = self.sock
        if sock is None or conn.gone:
            return conn.gone
        self._touched = True
        try:
            sock.send(conn.rid, MORE_NOBLOCK)
            sock.send(b"", NOBLOCK)
        except zmq.Again:
            return False  # its queue is full: there, but not reading
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            self._lose(conn)
            return True
        conn.seen = time.time()
        return False

    def _lose(self, conn: RemoteConn) -> None:
        if conn.gone:
            return
        conn.gone = True
        if self.conns.get(conn.rid) is conn:
            del self.conns[conn.rid]
        self._suspects.pop(conn, None)
        self._gone.append(conn)

    def _report_gone(self) -> None:
        gone, self._gone = self._gone, []
        sink = self._sink
        for conn in gone:
            log.info("remote: connection from %s (key %s) closed", conn.address, short(conn.key))
            if sink is not None:
                sink.disconnected(conn)

    # ------------------------------------------------------------------ limits

    def _shed(self, fd: int) -> None:
        """Over remote_connections: close the connection just accepted on fd."""
        self._note("remote-flood", "remote: more than %d connections open; closing new ones "
                   "([kernel] remote_connections)", self.max_connections)
        if any(c.fd == fd for c in self.conns.values()):
            return  # an authenticated connection got that fd meanwhile: not this one
        self._shutdown(fd, None)

    def _shutdown(self, fd: int, address: str | None) -> None:
        """Shut down (not close: libzmq owns it) the TCP connection on fd, if fd is still
        one accepted on our port (and from `address`): libzmq then sees its end."""
        try:
            dup = os.dup(fd)
        except OSError:
            return
        try:
            with socket.socket(fileno=dup) as s:
                if s.family not in (socket.AF_INET, socket.AF_INET6) or s.type != socket.SOCK_STREAM:
                    return
                if s.getsockname()[1] != self.port:
                    return
                if address is not None and s.getpeername()[0] != address:
                    return
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _revoked(self, key: str) -> None:
        for conn in list(self.conns.values()):
            if conn.key == key:
                log.warning("remote: key %s revoked: closing its connection from %s",
                            short(key), conn.address)
                self._lose(conn)
                if conn.fd >= 0:
                    self._shutdown(conn.fd, conn.address)

    def _log_refusals(self) -> None:
        refused = self.ring.refused
        if not refused:
            return
        noted = []
        while refused:
            noted.append(refused.popleft())
        address, key = noted[-1]
        more = f" (and {len(noted) - 1} more since the last report)" if len(noted) > 1 else ""
        log.warning("remote: refused a handshake from %s: %s %s%s; %d refused since start",
                    address, self.ring.why_refused(key), short(key), more, self.ring.refusals)

    def _fail_closed(self) -> None:
        """The ZAP thread died: libzmq would then accept any key. Stop listening."""
        log.error("remote: the ZAP authenticator stopped; closing %s (restart the kernel)",
                  self.endpoint)
        for conn in list(self.conns.values()):
            self._lose(conn)
        self._report_gone()
        self.detach()
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def _note(self, what: str, msg: str, *args: object) -> None:
        if self._sink is not None:
            self._sink.note(what, msg, *args)

    # ------------------------------------------------------------------ writing

    def send(self, conn: Any, frame: Any, blob: Any, bounded: bool = True, fd: int = -1) -> None:
        """Queue [frame] or [frame, blob] to conn. libzmq's queue has one bound
        (SNDHWM): the router's unbounded answers are bounded here too, and fail like
        any send when the process does not read."""
        c: RemoteConn = conn
        if fd >= 0:  # takes_fds is False: the router reads blobs for us
            os.close(fd)
            raise SendFailed("descriptors cannot travel to another machine")
        sock = self.sock
        if c.gone or sock is None:
            raise SendFailed(UNREACHABLE)
        self._touched = True
        try:
            sock.send(c.rid, MORE_NOBLOCK)
            if blob is None:
                sock.send(frame, NOBLOCK)
            else:
                sock.send(frame, MORE_NOBLOCK)
                sock.send(blob, NOBLOCK, copy=len(blob) < _COPY_BELOW)
        except zmq.Again:
            raise SendFailed(FULL) from None
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self._lose(c)
                raise SendFailed(UNREACHABLE) from None
            raise SendFailed(str(exc)) from None

    def take_fd(self, conn: Any) -> int:
        return -1

    def takes_fds(self, conn: Any) -> bool:
        return False

    def peer_pid(self, conn: Any) -> int:
        return 0  # another machine's: nothing to watch

    def describe(self, conn: Any) -> str:
        c: RemoteConn = conn
        return f"{c.rid.hex()} from {c.address} (key {short(c.key)})"

    # ------------------------------------------------------------------ for the router

    def admits(self, conn: Any, process_id: str) -> str:
        c: RemoteConn = conn
        return self.ring.grants(c.key, process_id)

    def alive(self, conn: Any) -> bool:
        c: RemoteConn = conn
        return not self._gone_now(c)

    def remote_info(self, conn: Any) -> tuple[str, float, float]:
        c: RemoteConn = conn
        return c.address, c.since, c.seen
