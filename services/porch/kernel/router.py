"""The kernel's message loop: a registry, capabilities, deadlines, over its transports.

Every process connects a DEALER to the kernel's ipc socket (or, on another machine,
to its TCP endpoint: `porch.kernel.remote`) and registers a process id.
For each frame set the kernel:
  - stamps the source from the connection it arrived on (the envelope's own claim is
    overwritten), so no process can speak as another;
  - checks the sender's capability for the target;
  - forwards the envelope and blob frames untouched (re-encoding only a forged source);
  - tracks requests that expect a response and answers the requester itself with
    SendError Timeout at the deadline, or Offline when the target is unknown, full, or
    disconnects with the request pending.
Garbage never stops it: it is counted, logged (rate-limited), and answered with a
KernelError to the connection it came from.

Registration: one live connection per process id. A node service's new process may
take its id over from the live one (Register.takeover, with the service token: the
http-server's restart); the old connection is then "retiring": told Superseded, sent
no new request, but it still sends, answers what it holds and receives the answers to
its own requests, and its end is no exit for the id's watchers. A node service may
also run several processes under one id (Register.member_of: the http-server's
workers, docs/workers.md): the holder receives the id's requests; each member sends
as the id and receives the answers to its own requests; a member's end is no exit,
and the holder's end (or its being superseded) supersedes its members.

The loop is a plain blocking epoll (a blocking loop used ~35% less CPU than
zmq.asyncio: docs/decisions.md §2).

The socket side is a transport (`porch.kernel.transport`): the ZMTP server of
`porch.link.server` always, the TCP + CURVE one of `porch.kernel.remote` when the node
listens for other machines. This module names connections by the transports' opaque
handles, and sends to a connection through the transport it came from (a registered
peer remembers it; an unregistered one is only ever answered while its transport
delivers). The rules are the same for both; a remote peer differs in three: it may
register only the id its proven key is granted (never a reserved one), it has no pid
(its transport says when it is gone), and blobs reach it as frames, not descriptors.

Liveness: at registration the kernel asks the OS which process is on the other end of
the connection (SO_PEERCRED, taken at accept) and watches it with a pidfd, which
becomes readable the moment that process exits: a `kill -9` is noticed at once,
without heartbeats that a busy process would miss (a remote process has no pid here:
libzmq's heartbeats and its transport stand in). A process that closes its
connection on purpose sends Unregister first. The kernel also sees the connection's
EOF and drops the registration at once; the pidfd stays because a connection can
outlive its process (a child forked without exec inherits the socket, so no EOF comes
when the registered process dies) and it costs one fd per process.
"""

from __future__ import annotations

import hmac
import logging
import os
import select
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from porch.address import KERNEL, MAX_NAME, MAX_PUBLISHER, is_reserved, is_valid
from porch.kernel.figures import KernelFigures
from porch.kernel.pending import PendingTable
from porch.kernel.policy import SYSTEM_SENDERS, CapabilityPolicy
from porch.kernel.transport import Conn, RemoteSeam, SendFailed, Transport, now_ms
from porch.link.fds import BadBlobFd, check_blob_fd, read_blob_fd
from porch.link.server import ZmtpServer
from porch.throttle import Every
from porch.wire import PROTOCOL_VERSION, kernel_pb2

log = logging.getLogger("porch.kernel")

Envelope = kernel_pb2.Envelope
parse_envelope = Envelope.FromString
SendErrorKind = kernel_pb2.SendError.Kind
ErrorCode = kernel_pb2.KernelError.Code

# A request's deadline is clamped to this far ahead: the pending table stays bounded.
DEFAULT_MAX_TIMEOUT_MS = 3_600_000
# Requests with expects_response but no deadline get this one.
DEFAULT_TIMEOUT_MS = 30_000
# After a kernel (re)start, a watched process that is not registered yet may simply not
# have re-registered: wait this long before saying it has exited.
WATCH_GRACE_MS = 5_000


class FdBlob:
    """A blob that came as a descriptor (`porch.link.fds`), on its way through."""

    __slots__ = ("fd", "size")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size

    def __len__(self) -> int:
        return self.size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(slots=True)
class Peer:
    process_id: str
    os_pid: int
    registered_at: float
    # The pid the OS reported for the connection (0 if it could not tell).
    verified_pid: int = 0
    # The transport the connection belongs to (sends to it go there).
    transport: Any = None
    # Another registration took its id over (Register.takeover): it receives no new
    # request, but still sends, answers what it holds and gets its own answers.
    retiring: bool = False
    # A member of the id's holder (Register.member_of): sends as the id, gets its own
    # answers, receives no request.
    member: bool = False


@dataclass
class Counters:
    routed: int = 0
    malformed: int = 0
    refused: int = 0
    timeouts: int = 0
    offline: int = 0
    late: int = 0
    spoofed: int = 0
    undeliverable: int = 0
    _throttles: dict[str, Every] = field(default_factory=dict)

    def warn(self, what: str, msg: str, *args: object) -> None:
        """Log at most once a second per kind: a flood must not flood the log."""
        throttle = self._throttles.get(what)
        if throttle is None:
            throttle = self._throttles[what] = Every()
        if throttle.due():
            log.warning(msg, *args)


class Kernel:
    def __init__(
        self,
        endpoint: str,
        node: str,
        policy: CapabilityPolicy,
        *,
        max_timeout_ms: int = DEFAULT_MAX_TIMEOUT_MS,
        transport: Transport | None = None,
        service_token: str = "",
        remote: RemoteSeam | None = None,
        metrics: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.node = node
        self.policy = policy
        self.max_timeout_ms = max_timeout_ms
        # Required to register a reserved id (porch.node.service_token); "" refuses them all.
        self.service_token = service_token
        self.boot_id = uuid.uuid4().hex[:12]
        self.counters = Counters()
        self.peers: dict[Conn, Peer] = {}  # connection -> registered peer
        self.idents: dict[str, Conn] = {}  # process id -> connection
        # process id -> connections that held it before a takeover and are finishing
        # their work (their answers still reach them); usually empty.
        self.retiring: dict[str, list[Conn]] = {}
        # process id -> the members of its holder (Register.member_of); usually empty.
        self.members: dict[str, list[Conn]] = {}
        self.watched: dict[int, tuple[int, set[Conn]]] = {}  # os pid -> (pidfd, connections)
        self._pidfds: dict[int, int] = {}  # pidfd -> os pid
        self.pending = PendingTable()
        self.watchers: dict[str, set[str]] = {}  # watched process id -> watcher ids
        self.started_ms = now_ms()
        self._watch_checks: list[tuple[str, str]] = []  # (watched, watcher) after the grace
        # The transport's fds (while run() runs) and one pidfd per watched process.
        self._epoll = select.epoll()
        self._running = False
        self.transport: Transport = transport if transport is not None else ZmtpServer(endpoint)
        # Processes on other machines (porch.kernel.remote), when the node listens for them.
        self.remote = remote
        self.transports: list[Transport] = [self.transport] + ([remote] if remote is not None else [])
        # The transport now delivering (or timing, or flushing): an unregistered
        # connection is answered through it.
        self._current: Transport = self.transport
        # The figures the node's scrape asks for (porch.kernel.figures); `pairs` is the
        # messages routed per (source, target), counted inline on the hot path (None:
        # [metrics] enabled = false).
        self.figures = KernelFigures(self)
        self.pairs: dict[tuple[str, ...], Any] | None = self.figures.routed.series if metrics else None

    # ------------------------------------------------------------------ lifecycle

    def bind(self) -> None:
        self.transport.bind()
        log.info("kernel %s for node %s listening on %s (protocol v%d)",
                 self.boot_id, self.node, self.endpoint, PROTOCOL_VERSION)
        log.info("kernel transport: %s", self.transport.name)
        if self.remote is not None:
            try:
                self.remote.bind()
            except OSError:
                self.transport.close()
                raise
            log.info("kernel also listening on %s for processes on other machines "
                     "(CURVE; docs/remote.md)", self.remote.endpoint)

    def stop(self, *_: object) -> None:
        self._running = False

    def close(self) -> None:
        for pidfd, _ in self.watched.values():
            os.close(pidfd)
        self.watched.clear()
        self._pidfds.clear()
        for transport in self.transports:
            transport.close()
        self._epoll.close()

    def run(self) -> None:
        """Serve until stop() (SIGTERM/SIGINT when run as the service).

        One epoll set holds the transports' fds and the pidfds of registered processes.
        Each wakeup: the transports' events first (messages are what someone is waiting
        for), then deaths, then deadlines and the transports' timers; then the
        transports write what all of that queued.
        """
        self._running = True
        local = self.transport
        transports = self.transports
        epoll = self._epoll
        for transport in transports:
            transport.attach(epoll, self)
        on_events = local.on_events
        others = transports[1:]
        pending = self.pending
        pidfds = self._pidfds
        wait = 0
        try:
            while self._running:
                ready = epoll.poll(wait / 1000)
                more = on_events(ready)
                for transport in others:
                    self._current = transport
                    more = transport.on_events(ready) or more
                    self._current = local
                if pidfds:
                    for fd, _ in ready:
                        if fd in pidfds:
                            self._pid_exited(fd)
                deadline = pending.next_deadline()
                if self._watch_checks:
                    grace_end = self.started_ms + WATCH_GRACE_MS
                    deadline = grace_end if deadline is None else min(deadline, grace_end)
                tick = self._next_timer()
                wake = _earliest(deadline, tick)
                if wake is not None:
                    now = now_ms()
                    if now >= wake:
                        if deadline is not None and now >= deadline:
                            self.expire(now)
                            deadline = pending.next_deadline()
                        if tick is not None and now >= tick:
                            self._on_timers(now)
                            tick = self._next_timer()
                        wake = _earliest(deadline, tick)
                more = local.flush() or more
                for transport in others:
                    self._current = transport
                    more = transport.flush() or more
                    self._current = local
                if more:
                    wait = 0
                elif wake is None:
                    wait = 1000
                else:
                    wait = max(0, min(1000, wake - now_ms()))
        finally:
            for transport in transports:
                transport.detach()

    def _next_timer(self) -> int | None:
        tick = None
        for transport in self.transports:
            tick = _earliest(tick, transport.next_timer())
        return tick

    def _on_timers(self, now: int) -> None:
        """Run the timers that are due. Each transport says when on the clock of the
        moment it is asked (now plus what is left): compare with that clock too."""
        for transport in self.transports:
            tick = transport.next_timer()
            if tick is not None and max(now, now_ms()) >= tick:
                self._current = transport
                try:
                    transport.on_timer(now)
                finally:
                    self._current = self.transport

    def _transport_of(self, conn: Conn) -> Transport:
        """The transport conn belongs to: its peer's, else the one delivering now."""
        peer = self.peers.get(conn)
        if peer is not None and peer.transport is not None:
            t: Transport = peer.transport
            return t
        return self._current

    # ------------------------------------------------------------------ routing

    # ------------------------------------------------------------------ from the transport

    def wrong_frame_count(self, ident: Conn, count: int) -> None:
        self._malformed(ident, 0, f"expected [envelope] or [envelope, blob], got {count} frames")

    def disconnected(self, ident: Conn) -> None:
        self._drop(ident, "connection closed")

    def refused_connection(self, who: str, reason: str) -> None:
        self.counters.malformed += 1
        self.counters.warn("zmtp", "closed connection %s: %s", who, reason)

    def note(self, what: str, msg: str, *args: object) -> None:
        self.counters.warn(what, msg, *args)

    def deliver(self, ident: Conn, frame: Any, blob: Any) -> None:
        """A message from a connection: [envelope] (blob None) or [envelope, blob]."""
        # A fresh Envelope each time: re-parsing into one upb message leaks, its arena
        # keeps every parse's strings (measured: +190 MB per million messages).
        try:
            env = parse_envelope(frame)
        except DecodeError:
            self._malformed(ident, 0, "frame is not a porch.v1.Envelope")
            return
        if env.version != PROTOCOL_VERSION:
            self.counters.malformed += 1
            self._kernel_error(ident, ErrorCode.VersionMismatch, env.id,
                               f"kernel speaks porch protocol v{PROTOCOL_VERSION}, "
                               f"this message is v{env.version}; upgrade porch on both sides")
            self.counters.warn("version", "protocol v%d message from %s refused",
                               env.version, self._who(ident))
            return
        if env.blob_fd:
            fd_blob = self._take_fd_blob(ident, env, blob)
            if fd_blob is None:
                return
            try:
                self._route(ident, env, frame, fd_blob)
            finally:
                fd_blob.close()  # unless handed over to the target's queue
            return
        self._route(ident, env, frame, blob)

    def _route(self, ident: Conn, env: kernel_pb2.Envelope, frame: Any, blob: Any) -> None:
        kind = env.WhichOneof("message")
        peer = self.peers.get(ident)
        if kind == "control":
            self._control(ident, peer, env)
            return
        if peer is None:
            self._kernel_error(ident, ErrorCode.NotRegistered, env.id,
                               "register a process id before sending messages")
            return
        source = peer.process_id
        if env.source != source:
            if env.source:
                self.counters.spoofed += 1
                self.counters.warn("spoof", "%s claimed to be %r; stamped as itself",
                                   source, env.source)
            env.source = source
            frame = env.SerializeToString()
        if kind == "request":
            self._route_request(ident, source, env, frame, blob)
        elif kind == "response":
            self._route_response(ident, source, env, frame, blob)
        else:
            self._malformed(ident, env.id, f"processes may not send {kind!r} messages")

    def _take_fd_blob(self, ident: Conn, env: kernel_pb2.Envelope, blob: Any) -> FdBlob | None:
        """The descriptor that came with a blob_fd message, checked (a sealed regular
        file of the announced size: nothing else is passed on); None after refusing."""
        fd = self._current.take_fd(ident)
        problem = ""
        if fd < 0:
            problem = "blob_fd is set but no descriptor came with the message"
        elif blob is not None:
            problem = "a message has a blob frame or a blob descriptor, not both"
        else:
            try:
                check_blob_fd(fd, env.blob_size)
            except (BadBlobFd, OSError) as exc:
                problem = f"blob descriptor refused: {exc}"
        if problem:
            if fd >= 0:
                os.close(fd)
            self._malformed(ident, env.id, problem)
            return None
        return FdBlob(fd, env.blob_size)

    def _forward(self, conn: Conn, frame: Any, blob: Any) -> None:
        """Queue a message to conn (raises SendFailed). A blob descriptor is handed to
        a peer that takes them, else (a libzmq peer, a remote one) read and sent as a
        frame."""
        transport = self._transport_of(conn)
        if type(blob) is not FdBlob:
            transport.send(conn, frame, blob)
        elif transport.takes_fds(conn):
            transport.send(conn, frame, None, fd=blob.fd)
            blob.fd = -1  # the queue owns it now
        else:
            try:
                data = read_blob_fd(blob.fd, blob.size)
            except (BadBlobFd, OSError) as exc:
                raise SendFailed(f"cannot read the blob: {exc}") from None
            env = parse_envelope(frame)
            env.blob_fd = False
            env.ClearField("blob_size")
            transport.send(conn, env.SerializeToString(), data)

    def _route_request(self, ident: Conn, source: str, env: kernel_pb2.Envelope, frame: Any,
                       blob: Any) -> None:
        target = env.target
        req = env.request
        expects = req.expects_response
        requester = ident
        if env.rsvp and env.rsvp != source:
            # Where the answer goes is part of what a sender claims: only a system service
            # (acting for someone who passed the checks already) may name another process,
            # and only one it may message. Anyone else could aim answers, Timeouts and
            # Offlines at a stranger.
            rsvp = env.rsvp
            if source not in SYSTEM_SENDERS or not self.policy.allows(source, rsvp):
                self.counters.refused += 1
                self.counters.warn("rsvp", "%s may not have answers sent to %s", source, rsvp)
                self._send_error(ident, env.id, target, SendErrorKind.NoCapability,
                                 f"{source} may not have answers sent to {rsvp} (rsvp)")
                return
            rident = self.idents.get(rsvp)
            if rident is None:
                self.counters.offline += 1
                self._send_error(ident, env.id, target, SendErrorKind.Offline,
                                 f"no process {rsvp} is running to receive the answer (rsvp)")
                return
            requester = rident
        if not self.policy.allows(source, target):
            self.counters.refused += 1
            self.counters.warn("cap", "%s has no capability to message %s", source, target)
            self._send_error(requester, env.id, target, SendErrorKind.NoCapability,
                             f"{source} has no capability to message {target}")
            return
        tident = self.idents.get(target)
        if tident is None:
            self.counters.offline += 1
            if expects or req.report_undelivered:
                self._send_error(requester, env.id, target, SendErrorKind.Offline,
                                 f"no process {target} is running")
            return
        if expects:
            now = now_ms()
            deadline = req.deadline_ms or now + DEFAULT_TIMEOUT_MS
            deadline = min(deadline, now + self.max_timeout_ms)
            if deadline <= now:
                self.counters.timeouts += 1
                self._send_error(requester, env.id, target, SendErrorKind.Timeout,
                                 "deadline passed before delivery")
                return
            if not self.pending.add(requester, env.id, tident, target, deadline):
                self._malformed(ident, env.id, f"request id {env.id} is already pending; "
                                "ids must be unique among a requester's requests")
                return
        try:
            self._forward(tident, frame, blob)
        except SendFailed as exc:
            # Gone, or its queue is full.
            self.counters.offline += 1
            self.counters.warn("full", "a request from %s to %s could not be delivered: %s",
                               source, target, exc)
            if expects:
                self.pending.answer(requester, env.id, tident)
            if expects or req.report_undelivered:
                self._send_error(requester, env.id, target, SendErrorKind.Offline,
                                 f"{target} is not accepting messages ({exc})")
            return
        self.counters.routed += 1
        pairs = self.pairs
        if pairs is not None:
            key = (source, target)
            n = pairs.get(key)
            if n is None:
                self.figures.routed.inc(key)  # bounded there
            else:
                pairs[key] = n + 1

    def _route_response(self, ident: Conn, source: str, env: kernel_pb2.Envelope, frame: Any,
                        blob: Any) -> None:
        target = env.target
        tident = self.idents.get(target)
        if tident is None or not self.pending.answer(tident, env.id, ident):
            tident = self._retiring_requester(target, env.id, ident)
            if tident is None:
                self.counters.late += 1  # late (after Timeout/Offline), never asked for, or not ours
                return
        try:
            self._forward(tident, frame, blob)
        except SendFailed as exc:
            # The requester's queue cannot take it (too much unread): the requester is
            # told at once, never left to wait for its deadline.
            self.counters.undeliverable += 1
            size = len(frame) + (len(blob) if blob is not None else 0)
            log.warning("the answer of %s to %s (request %d, %d bytes) could not be delivered: %s",
                        source, target, env.id, size, exc)
            self._send_error(tident, env.id, source, SendErrorKind.Offline,
                             f"the answer of {source} ({size} bytes) could not be delivered: "
                             f"{target} has too much unread ({exc})", delivered=True, pending=True)
            return
        self.counters.routed += 1
        pairs = self.pairs
        if pairs is not None:
            key = (source, target)
            n = pairs.get(key)
            if n is None:
                self.figures.routed.inc(key)
            else:
                pairs[key] = n + 1

    def _retiring_requester(self, target: str, id_: int, responder: Conn) -> Conn | None:
        """The member or superseded connection of `target` that asked request id_, if
        any (and its entry answered): the answers to their requests reach them."""
        for group in (self.members, self.retiring):
            for conn in group.get(target, ()):
                if self.pending.answer(conn, id_, responder):
                    return conn
        return None

    def expire(self, now: int) -> None:
        if self._watch_checks and now >= self.started_ms + WATCH_GRACE_MS:
            checks, self._watch_checks = self._watch_checks, []
            for watched, watcher in checks:
                if watched not in self.idents:
                    self._send_exited(watcher, watched)
                else:
                    self.watchers.setdefault(watched, set()).add(watcher)
        for waiting in self.pending.expire(now):
            self.counters.timeouts += 1
            self._send_error(waiting.requester, waiting.id, waiting.target, SendErrorKind.Timeout,
                             f"{waiting.target} did not answer before the deadline", pending=True)

    # ------------------------------------------------------------------ connections

    def _pid_exited(self, pidfd: int) -> None:
        # The event may be stale: this wakeup's earlier work can have closed that pidfd
        # and reused its number (for another pidfd or a connection). Believe it only if
        # the fd is still one of ours and is readable now.
        os_pid = self._pidfds.get(pidfd)
        if os_pid is None or not select.select([pidfd], [], [], 0)[0]:
            return
        _, idents = self.watched.pop(os_pid)
        del self._pidfds[pidfd]
        self._epoll.unregister(pidfd)
        os.close(pidfd)
        for ident in list(idents):
            self._drop(ident, f"process exited (os pid {os_pid})")

    def _watch(self, os_pid: int, ident: Conn) -> None:
        entry = self.watched.get(os_pid)
        if entry is None:
            try:
                pidfd = os.pidfd_open(os_pid)
            except OSError as exc:
                log.warning("cannot watch os pid %d (%s); its death will show as Offline "
                            "on send and Timeout at deadlines", os_pid, exc)
                return
            entry = self.watched[os_pid] = (pidfd, set())
            self._pidfds[pidfd] = os_pid
            self._epoll.register(pidfd, select.EPOLLIN)
        entry[1].add(ident)

    def _unwatch(self, os_pid: int, ident: Conn) -> None:
        entry = self.watched.get(os_pid)
        if entry is None:
            return
        entry[1].discard(ident)
        if not entry[1]:
            self._epoll.unregister(entry[0])
            os.close(entry[0])
            del self._pidfds[entry[0]]
            del self.watched[os_pid]

    def _drop(self, ident: Conn, why: str) -> None:
        """Forget a registration; everything pending on it fails Offline at once."""
        peer = self.peers.pop(ident, None)
        if peer is None:
            return
        current = self.idents.get(peer.process_id) == ident
        if current:
            del self.idents[peer.process_id]
            for member in self.members.pop(peer.process_id, []):
                self._supersede(member, self.peers[member], 0, quiet=True)
        elif peer.member:
            group = self.members.get(peer.process_id, [])
            if ident in group:
                group.remove(ident)
            if not group:
                self.members.pop(peer.process_id, None)
        elif peer.retiring:
            others = self.retiring.get(peer.process_id, [])
            if ident in others:
                others.remove(ident)
            if not others:
                self.retiring.pop(peer.process_id, None)
        if peer.verified_pid:
            self._unwatch(peer.verified_pid, ident)
        failed = self.pending.responder_gone(ident)
        for waiting in failed:
            self.counters.offline += 1
            self._send_error(waiting.requester, waiting.id, waiting.target, SendErrorKind.Offline,
                             f"{waiting.target} went away with the request pending",
                             delivered=True, pending=True)
        self.pending.requester_gone(ident)
        if current:  # a superseded connection ending is no exit: its id lives on
            for watcher in self.watchers.pop(peer.process_id, ()):
                self._send_exited(watcher, peer.process_id)
        log.info("unregistered %s%s (os pid %d): %s; %d pending request(s) failed Offline",
                 peer.process_id, "" if current else " (superseded)", peer.os_pid, why, len(failed))

    def _control(self, ident: Conn, peer: Peer | None, env: kernel_pb2.Envelope) -> None:
        ctl = env.control
        which = ctl.WhichOneof("kind")
        if which == "register":
            pid = self._current.peer_pid(ident)
            self._register(ident, peer, ctl.register, pid)
        elif which == "unregister":
            self._drop(ident, "closed its connection")
        elif which == "watch":
            if peer is None:
                self._kernel_error(ident, ErrorCode.NotRegistered, env.id,
                                   "register a process id before watching")
                return
            self._watch_process(ctl.watch.process_id, peer.process_id)
        elif which == "registry_query":
            if peer is None:
                self._kernel_error(ident, ErrorCode.NotRegistered, env.id,
                                   "register a process id before querying the registry")
                return
            reply = Envelope(version=PROTOCOL_VERSION, id=env.id, source=KERNEL,
                             target=peer.process_id)
            reg = reply.control.registry
            reg.node = self.node
            reg.kernel_boot_id = self.boot_id
            reg.kernel_pid = os.getpid()
            only = ctl.registry_query.process_id
            if only:
                held = self.idents.get(only)
                listed = [(held, self.peers[held])] if held is not None else []
            else:
                listed = sorted(((c, p) for c, p in self.peers.items() if not (p.retiring or p.member)),
                                key=lambda cp: cp[1].process_id)
            for conn, p in listed:
                entry = reg.entries.add(process_id=p.process_id, os_pid=p.os_pid,
                                        registered_at=p.registered_at)
                if self.remote is not None and p.transport is self.remote:
                    entry.address, entry.connected_at, entry.last_heartbeat = \
                        self.remote.remote_info(conn)
            c = self.counters
            reg.routed, reg.malformed, reg.refused = c.routed, c.malformed, c.refused
            reg.timeouts, reg.offline = c.timeouts, c.offline
            if ctl.registry_query.metrics and is_reserved(peer.process_id):
                # Who talks to whom is the node's services' business (the scrape), not
                # every process's.
                reg.metrics = self.figures.snapshot()
            self._send(ident, reply)
        else:
            self._malformed(ident, env.id, f"processes may not send control {which!r}")

    def _register(self, ident: Conn, peer: Peer | None, reg: kernel_pb2.Register,
                  verified_pid: int) -> None:
        pid = reg.process_id
        if not is_valid(pid) or pid == KERNEL:
            self.counters.refused += 1
            shown = pid if len(pid) <= 100 else f"{pid[:100]}... ({len(pid)} characters)"
            self._kernel_error(ident, ErrorCode.InvalidProcessId, 0,
                               f"{shown!r} is not a valid process id: name:package:publisher, "
                               f"name and package [a-z0-9-]{{1,{MAX_NAME}}}, publisher "
                               f"[a-z0-9.-]{{1,{MAX_PUBLISHER}}} (kernel:distro:sys is reserved)")
            self.counters.warn("invalid-id", "refused registration of %r: invalid process id", shown)
            return
        remote = self.remote is not None and self._current is self.remote
        if remote and not self._admit_remote(ident, pid):
            return
        if is_reserved(pid) and not (self.service_token and hmac.compare_digest(
                reg.service_token.encode(), self.service_token.encode())):
            self.counters.refused += 1
            self._kernel_error(ident, ErrorCode.ReservedProcessId, 0,
                               f"{pid} is reserved for the node's services (distro:sys): "
                               "registering it takes the node's service token")
            self.counters.warn("reserved", "refused registration of %s by os pid %d: "
                               "no valid service token", pid, verified_pid or reg.os_pid)
            return
        if peer is not None and peer.process_id != pid:
            self.counters.refused += 1
            self._kernel_error(ident, ErrorCode.AlreadyRegistered, 0,
                               f"this connection is already registered as {peer.process_id}")
            return
        os_pid = verified_pid or reg.os_pid
        holder = self.idents.get(pid)
        if reg.member_of:
            if not is_reserved(pid):
                self.counters.refused += 1
                self._kernel_error(ident, ErrorCode.ReservedProcessId, 0,
                                   f"{pid}: only a node service's id (distro:sys) may have members")
                return
            self._register_member(ident, peer, pid, reg.member_of, os_pid, verified_pid)  # token checked
            return
        took_over = False
        if holder is not None and holder != ident:
            held = self.peers[holder]
            if verified_pid and held.verified_pid == verified_pid:
                # The same OS process reconnected (its old connection is gone): take over.
                self._drop(holder, "reconnected")
            elif self.remote is not None and held.transport is self.remote \
                    and not self.remote.alive(holder):
                # A remote holder whose connection libzmq has closed (not reported yet).
                self._drop(holder, "its connection is gone")
            elif reg.takeover and peer is None and is_reserved(pid):  # the token was checked above
                self._supersede(holder, held, os_pid)
                took_over = True
            else:
                self.counters.refused += 1
                self._kernel_error(ident, ErrorCode.AlreadyRegistered, 0,
                                   f"{pid} is already registered by a live process "
                                   f"(os pid {held.os_pid})")
                log.warning("refused registration of %s (os pid %d): already held by os pid %d",
                            pid, os_pid, held.os_pid)
                return
        if peer is not None:  # the same connection registering again: idempotent
            self._send_registered(ident, pid)
            return
        self.peers[ident] = Peer(pid, os_pid, time.time(), verified_pid, self._current)
        self.idents[pid] = ident
        if verified_pid:
            self._watch(verified_pid, ident)
        self._send_registered(ident, pid, took_over)
        if remote:
            log.info("registered %s from another machine: %s", pid, self._current.describe(ident))
        else:
            log.info("registered %s (os pid %d)%s", pid, os_pid, " by takeover" if took_over else "")

    def _admit_remote(self, ident: Conn, pid: str) -> bool:
        """A registration from another machine: the proven key must be granted this id
        (porch.toml), and a reserved id never is, whatever token comes with it."""
        assert self.remote is not None
        if is_reserved(pid):
            self.counters.refused += 1
            self._kernel_error(ident, ErrorCode.ReservedProcessId, 0,
                               f"{pid} is reserved for the node's services (distro:sys), "
                               "which never run on another machine")
            self.counters.warn("reserved", "refused registration of %s from another machine "
                               "(%s): reserved id", pid, self.remote.describe(ident))
            return False
        why = self.remote.admits(ident, pid)
        if why:
            self.counters.refused += 1
            self._kernel_error(ident, ErrorCode.NotGranted, 0, f"may not register {pid}: {why}")
            self.counters.warn("not-granted", "refused registration of %s from another machine "
                               "(%s): %s", pid, self.remote.describe(ident), why)
            return False
        return True

    def _register_member(self, ident: Conn, peer: Peer | None, pid: str, member_of: int,
                         os_pid: int, verified_pid: int) -> None:
        """Register.member_of: join the holder of pid, if its OS pid is member_of."""
        holder = self.idents.get(pid)
        held = self.peers.get(holder) if holder is not None else None
        if peer is not None and peer.member and held is not None:
            self._send_registered(ident, pid)  # the same connection again: idempotent
            return
        if held is None or peer is not None or member_of not in (held.verified_pid, held.os_pid):
            self.counters.refused += 1
            self._kernel_error(ident, ErrorCode.AlreadyRegistered, 0,
                               f"{pid} is not held by os pid {member_of}: cannot join it as a member")
            return
        self.peers[ident] = Peer(pid, os_pid, time.time(), verified_pid, self._current, member=True)
        self.members.setdefault(pid, []).append(ident)
        if verified_pid:
            self._watch(verified_pid, ident)
        self._send_registered(ident, pid)
        log.info("registered %s (os pid %d) as a member of os pid %d", pid, os_pid, member_of)

    def _supersede(self, holder: Conn, held: Peer, by_pid: int, quiet: bool = False) -> None:
        """A node service's new process takes the id over (Register.takeover): the
        holder (and each of its members) keeps its connection to finish what it holds,
        and is told. Also for the members of a holder that went away (by_pid 0)."""
        pid = held.process_id
        if held.member:
            held.member = False
        elif self.idents.get(pid) == holder:
            del self.idents[pid]
            for member in self.members.pop(pid, []):
                self._supersede(member, self.peers[member], by_pid, quiet=True)
        held.retiring = True
        self.retiring.setdefault(pid, []).append(holder)
        env = Envelope(version=PROTOCOL_VERSION, source=KERNEL, target=pid)
        env.control.superseded.process_id = pid
        self._send(holder, env, bounded=False)
        if not quiet:
            log.info("%s: os pid %d takes over from os pid %d, which finishes what it holds",
                     pid, by_pid, held.os_pid)
        else:
            log.info("%s: member os pid %d superseded with its holder; it finishes what it holds",
                     pid, held.os_pid)

    def _watch_process(self, watched: str, watcher: str) -> None:
        if watched in self.idents:
            self.watchers.setdefault(watched, set()).add(watcher)
        elif now_ms() < self.started_ms + WATCH_GRACE_MS:
            self._watch_checks.append((watched, watcher))
        else:
            self._send_exited(watcher, watched)

    def _send_exited(self, watcher: str, watched: str) -> None:
        ident = self.idents.get(watcher)
        if ident is None:
            return
        env = Envelope(version=PROTOCOL_VERSION, source=KERNEL, target=watcher)
        env.control.process_exited.process_id = watched
        self._send(ident, env)

    def _send_registered(self, ident: Conn, pid: str, took_over: bool = False) -> None:
        reply = Envelope(version=PROTOCOL_VERSION, source=KERNEL, target=pid)
        ack = reply.control.registered
        ack.process_id, ack.node, ack.kernel_boot_id = pid, self.node, self.boot_id
        ack.kernel_time_ms = now_ms()
        ack.took_over = took_over
        self._send(ident, reply)

    # ------------------------------------------------------------------ replies

    def _send(self, ident: Conn, env: kernel_pb2.Envelope, bounded: bool = True) -> None:
        try:
            self._transport_of(ident).send(ident, env.SerializeToString(), None, bounded=bounded)
        except SendFailed:
            pass  # gone or not reading; nothing is queued for absent peers

    def _send_error(self, to: Conn, id_: int, target: str, kind: int, detail: str,
                    delivered: bool = False, pending: bool = False) -> None:
        """A SendError about request id_ (for target) to the connection that waits.

        `pending`: the end of a tracked request (Timeout, a death, an answer that could
        not be delivered), which its requester must hear even past its queue's bound:
        one small message per request it made. Refusals of what a sender just sent stay
        bounded: a peer that floods without reading cannot grow the kernel."""
        peer = self.peers.get(to)
        if peer is None:
            return
        self.figures.send_error(kind, target)
        env = Envelope(version=PROTOCOL_VERSION, id=id_, source=target, target=peer.process_id)
        err = env.send_error
        err.kind = kind  # type: ignore[assignment]
        err.target = target
        err.detail = detail
        err.delivered = delivered
        self._send(to, env, bounded=not pending)

    def _kernel_error(self, ident: Conn, code: int, id_: int, detail: str) -> None:
        env = Envelope(version=PROTOCOL_VERSION, id=id_, source=KERNEL)
        err = env.control.error
        err.code = code  # type: ignore[assignment]
        err.id = id_
        err.detail = detail
        self._send(ident, env)

    def _malformed(self, ident: Conn, id_: int, detail: str) -> None:
        self.counters.malformed += 1
        self.counters.warn("malformed", "malformed message from %s: %s",
                           self._who(ident), detail)
        self._kernel_error(ident, ErrorCode.Malformed, id_, detail)

    def _who(self, ident: Conn) -> str:
        peer = self.peers.get(ident)
        return peer.process_id if peer else f"unregistered connection {self._current.describe(ident)}"


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


def install_signal_handlers(kernel: Kernel) -> None:
    signal.signal(signal.SIGTERM, kernel.stop)
    signal.signal(signal.SIGINT, kernel.stop)
