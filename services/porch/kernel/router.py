"""The kernel's message loop: one ROUTER socket, a registry, capabilities, deadlines.

Every process connects a DEALER to the kernel's ipc socket and registers a process id.
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

The loop is a plain blocking epoll (DESIGN.md: a blocking loop used ~35% less CPU than
zmq.asyncio; epoll on the ROUTER's fd makes fewer system calls than zmq.Poller).

Liveness: at registration the kernel asks the OS which process is on the other end of
the connection (SO_PEERCRED on the message's source fd) and watches it with a pidfd,
which becomes readable the moment that process exits: a `kill -9` is noticed at once,
without heartbeats that a busy process would miss. (ZeroMQ's ROUTER_NOTIFY would do
this too, but it is a draft API that pyzmq's wheels do not enable.) A process that
closes its connection on purpose sends Unregister first.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import zmq
from google.protobuf.message import DecodeError

from porch.address import KERNEL, is_valid
from porch.kernel.pending import PendingTable
from porch.kernel.policy import CapabilityPolicy
from porch.wire import PROTOCOL_VERSION, kernel_pb2

log = logging.getLogger("porch.kernel")

Envelope = kernel_pb2.Envelope
parse_envelope = Envelope.FromString
SendErrorKind = kernel_pb2.SendError.Kind
ErrorCode = kernel_pb2.KernelError.Code

HIGH_WATER_MARK = 10_000
# A request's deadline is clamped to this far ahead: the pending table stays bounded.
DEFAULT_MAX_TIMEOUT_MS = 3_600_000
# Requests with expects_response but no deadline get this one.
DEFAULT_TIMEOUT_MS = 30_000
# After a kernel (re)start, a watched process that is not registered yet may simply not
# have re-registered: wait this long before saying it has exited.
WATCH_GRACE_MS = 5_000
# Frame sets handled per wakeup before deadlines and deaths are looked at again.
BATCH = 1000
# Plain ints: pyzmq's flag enums cost a Python-level enum construction per `|`.
NOBLOCK = int(zmq.NOBLOCK)
MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class Peer:
    process_id: str
    os_pid: int
    registered_at: float
    # The pid the OS reported for the connection (0 if it could not tell).
    verified_pid: int = 0


def peer_pid(frame: zmq.Frame) -> int:
    """The pid of the process at the other end of the connection `frame` came on, or 0."""
    try:
        fd = frame.get(zmq.SRCFD)
        with socket.socket(fileno=os.dup(fd)) as conn:
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid: int = struct.unpack("3i", cred)[0]
        return pid
    except (OSError, zmq.ZMQError, AttributeError):
        return 0


@dataclass
class Counters:
    routed: int = 0
    malformed: int = 0
    refused: int = 0
    timeouts: int = 0
    offline: int = 0
    late: int = 0
    spoofed: int = 0
    _last_warn: dict[str, float] = field(default_factory=dict)

    def warn(self, what: str, msg: str, *args: object) -> None:
        """Log at most once a second per kind: a flood must not flood the log."""
        now = time.monotonic()
        if now - self._last_warn.get(what, 0.0) >= 1.0:
            self._last_warn[what] = now
            log.warning(msg, *args)


class Kernel:
    def __init__(
        self,
        endpoint: str,
        node: str,
        policy: CapabilityPolicy,
        *,
        context: zmq.Context[Any] | None = None,
        max_timeout_ms: int = DEFAULT_MAX_TIMEOUT_MS,
    ) -> None:
        self.endpoint = endpoint
        self.node = node
        self.policy = policy
        self.max_timeout_ms = max_timeout_ms
        self.boot_id = uuid.uuid4().hex[:12]
        self.counters = Counters()
        self.peers: dict[bytes, Peer] = {}  # routing identity -> registered peer
        self.idents: dict[str, bytes] = {}  # process id -> routing identity
        self.watched: dict[int, tuple[int, set[bytes]]] = {}  # os pid -> (pidfd, identities)
        self.pending = PendingTable()
        self.watchers: dict[str, set[str]] = {}  # watched process id -> watcher ids
        self.started_ms = now_ms()
        self._watch_checks: list[tuple[str, str]] = []  # (watched, watcher) after the grace
        # The ROUTER's fd (while run() runs) and one pidfd per watched process.
        self._epoll = select.epoll()
        self._running = False
        ctx = context or zmq.Context.instance()
        self.sock: zmq.Socket[bytes] = ctx.socket(zmq.ROUTER)
        for opt, value in (
            (zmq.LINGER, 0),
            (zmq.ROUTER_MANDATORY, 1),
            (zmq.SNDHWM, HIGH_WATER_MARK),
            (zmq.RCVHWM, HIGH_WATER_MARK),
            (zmq.HEARTBEAT_IVL, 1000),
            (zmq.HEARTBEAT_TIMEOUT, 5000),
            (zmq.HEARTBEAT_TTL, 5000),
            (zmq.MAXMSGSIZE, 1 << 30),
        ):
            self.sock.setsockopt(opt, value)

    # ------------------------------------------------------------------ lifecycle

    def bind(self) -> None:
        path = self.endpoint.removeprefix("ipc://")
        if self.endpoint.startswith("ipc://") and os.path.exists(path):
            os.unlink(path)  # stale socket of a previous kernel (the lock proves it)
        old_umask = os.umask(0o077)
        try:
            self.sock.bind(self.endpoint)
        finally:
            os.umask(old_umask)
        log.info("kernel %s for node %s listening on %s (protocol v%d)",
                 self.boot_id, self.node, self.endpoint, PROTOCOL_VERSION)

    def stop(self, *_: object) -> None:
        self._running = False

    def close(self) -> None:
        for pidfd, _ in self.watched.values():
            os.close(pidfd)
        self.watched.clear()
        self._epoll.close()
        self.sock.close(0)
        if self.endpoint.startswith("ipc://"):
            try:
                os.unlink(self.endpoint.removeprefix("ipc://"))
            except FileNotFoundError:
                pass

    def run(self) -> None:
        """Serve until stop() (SIGTERM/SIGINT when run as the service).

        One epoll set holds the ROUTER's notification fd and the pidfds of registered
        processes. ZeroMQ's fd only says "look again", so every sleep comes right after
        a drain that ended with EAGAIN (which also consumed the fd's signal); sends made
        while expiring deadlines or failing a dead process's requests are followed by
        another drain before the next sleep. zmq.Poller did the same with two poll(2)
        calls and two EVENTS checks per wakeup; this is one epoll_wait.
        """
        self._running = True
        zfd = cast(int, self.sock.getsockopt(zmq.FD))
        epoll = self._epoll
        epoll.register(zfd, select.EPOLLIN)
        pending = self.pending
        wait = 0
        try:
            while self._running:
                ready = epoll.poll(wait / 1000)
                # Messages first: on a wakeup they are what someone is waiting for.
                more = self._drain()
                sent = False
                for fd, _ in ready:
                    if fd != zfd:
                        self._pid_exited(fd)
                        sent = True
                deadline = pending.next_deadline()
                if self._watch_checks:
                    grace_end = self.started_ms + WATCH_GRACE_MS
                    deadline = grace_end if deadline is None else min(deadline, grace_end)
                if deadline is not None:
                    now = now_ms()
                    if now >= deadline:
                        self.expire(now)
                        sent = True
                        deadline = pending.next_deadline()
                if sent:
                    # A send may have taken the fd's signal for a message now waiting.
                    more = self._drain() or more
                if more:
                    wait = 0
                elif deadline is None:
                    wait = 1000
                else:
                    wait = max(0, min(1000, deadline - now_ms()))
        finally:
            epoll.unregister(zfd)

    def _drain(self) -> bool:
        """Handle what is waiting, at most BATCH frame sets; True if more may be waiting.

        Frames are read one at a time, not with recv_multipart: pyzmq's multipart
        helpers cost ~2 us per message (an RCVMORE getsockopt per frame, enum flag
        arithmetic). The identity is copied (a small dict key). The envelope comes as a
        zmq.Frame: its .more tells whether a blob follows, and a Register's frame tells
        which connection, hence which pid, sent it. A blob stays a Frame and is
        forwarded without a copy.
        """
        recv = self.sock.recv
        for _ in range(BATCH):
            try:
                ident = recv(NOBLOCK)
            except zmq.Again:
                return False
            # A ROUTER always delivers the identity with at least one frame after it.
            frame = recv(NOBLOCK, copy=False)
            if not frame.more:
                self._handle(ident, frame, None)
                continue
            blob = recv(NOBLOCK, copy=False)
            if not blob.more:
                self._handle(ident, frame, blob)
                continue
            count = 2
            while blob.more:
                blob = recv(NOBLOCK, copy=False)
                count += 1
            self._malformed(ident, 0, f"expected [envelope] or [envelope, blob], got {count} frames")
        return True

    # ------------------------------------------------------------------ routing

    def handle(self, frames: list[Any]) -> None:
        """One incoming frame set: [identity, envelope] or [identity, envelope, blob].

        Frames are zmq.Frame or plain bytes (tests); the loop itself reads frames one by
        one and calls _handle.
        """
        n = len(frames)
        ident = _bytes(frames[0])
        if n not in (2, 3):
            self._malformed(ident, 0, f"expected [envelope] or [envelope, blob], got {n - 1} frames")
            return
        self._handle(ident, frames[1], frames[2] if n == 3 else None)

    def _handle(self, ident: bytes, frame: Any, blob: Any) -> None:
        # A fresh Envelope each time: re-parsing into one upb message leaks, its arena
        # keeps every parse's strings (measured: +190 MB per million messages).
        try:
            env = parse_envelope(frame.bytes if type(frame) is zmq.Frame else bytes(frame))
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
        kind = env.WhichOneof("message")
        peer = self.peers.get(ident)
        if kind == "control":
            self._control(ident, peer, env, frame)
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
            self._route_request(source, env, frame, blob)
        elif kind == "response":
            self._route_response(source, env, frame, blob)
        else:
            self._malformed(ident, env.id, f"processes may not send {kind!r} messages")

    def _forward(self, tident: bytes, frame: Any, blob: Any) -> None:
        """Send [tident, envelope(, blob)]; raises zmq.Again / ZMQError like send_multipart.

        Under ROUTER_MANDATORY an unroutable identity or a full queue fails on the first
        frame, so nothing half-sent is left behind.
        """
        send = self.sock.send
        send(tident, MORE_NOBLOCK)
        if blob is None:
            send(frame, NOBLOCK, copy=False)
        else:
            send(frame, MORE_NOBLOCK, copy=False)
            send(blob, NOBLOCK, copy=False)

    def _route_request(self, source: str, env: kernel_pb2.Envelope, frame: Any, blob: Any) -> None:
        target = env.target
        req = env.request
        reply_to = env.rsvp or source
        expects = req.expects_response
        if not self.policy.allows(source, target):
            self.counters.refused += 1
            self.counters.warn("cap", "%s has no capability to message %s", source, target)
            self._send_error(reply_to, env.id, target, SendErrorKind.NoCapability,
                             f"{source} has no capability to message {target}")
            return
        tident = self.idents.get(target)
        if tident is None:
            self.counters.offline += 1
            if expects:
                self._send_error(reply_to, env.id, target, SendErrorKind.Offline,
                                 f"no process {target} is running")
            return
        if expects:
            now = now_ms()
            deadline = req.deadline_ms or now + DEFAULT_TIMEOUT_MS
            deadline = min(deadline, now + self.max_timeout_ms)
            if deadline <= now:
                self.counters.timeouts += 1
                self._send_error(reply_to, env.id, target, SendErrorKind.Timeout,
                                 "deadline passed before delivery")
                return
            self.pending.add((reply_to, env.id), target, deadline)
        try:
            self._forward(tident, frame, blob)
        except (zmq.Again, zmq.ZMQError) as exc:
            # Gone (EHOSTUNREACH under ROUTER_MANDATORY) or its queue is full.
            self.counters.offline += 1
            if expects:
                self.pending.answer((reply_to, env.id), target)
                self._send_error(reply_to, env.id, target, SendErrorKind.Offline,
                                 f"{target} is not accepting messages ({exc})")
            return
        self.counters.routed += 1

    def _route_response(self, source: str, env: kernel_pb2.Envelope, frame: Any, blob: Any) -> None:
        target = env.target
        if not self.pending.answer((target, env.id), source):
            self.counters.late += 1  # late (after Timeout/Offline) or never asked for
            return
        tident = self.idents.get(target)
        if tident is None:
            return
        try:
            self._forward(tident, frame, blob)
        except (zmq.Again, zmq.ZMQError):
            self.counters.offline += 1
            return
        self.counters.routed += 1

    def expire(self, now: int) -> None:
        if self._watch_checks and now >= self.started_ms + WATCH_GRACE_MS:
            checks, self._watch_checks = self._watch_checks, []
            for watched, watcher in checks:
                if watched not in self.idents:
                    self._send_exited(watcher, watched)
                else:
                    self.watchers.setdefault(watched, set()).add(watcher)
        for (reply_to, id_), responder in self.pending.expire(now):
            self.counters.timeouts += 1
            self._send_error(reply_to, id_, responder, SendErrorKind.Timeout,
                             f"{responder} did not answer before the deadline")

    # ------------------------------------------------------------------ connections

    def _pid_exited(self, pidfd: int) -> None:
        for os_pid, (fd, idents) in list(self.watched.items()):
            if fd == pidfd:
                self._epoll.unregister(fd)
                os.close(fd)
                del self.watched[os_pid]
                for ident in list(idents):
                    self._drop(ident, f"process exited (os pid {os_pid})")
                return

    def _watch(self, os_pid: int, ident: bytes) -> None:
        entry = self.watched.get(os_pid)
        if entry is None:
            try:
                pidfd = os.pidfd_open(os_pid)
            except OSError as exc:
                log.warning("cannot watch os pid %d (%s); its death will show as Offline "
                            "on send and Timeout at deadlines", os_pid, exc)
                return
            entry = self.watched[os_pid] = (pidfd, set())
            self._epoll.register(pidfd, select.EPOLLIN)
        entry[1].add(ident)

    def _unwatch(self, os_pid: int, ident: bytes) -> None:
        entry = self.watched.get(os_pid)
        if entry is None:
            return
        entry[1].discard(ident)
        if not entry[1]:
            self._epoll.unregister(entry[0])
            os.close(entry[0])
            del self.watched[os_pid]

    def _drop(self, ident: bytes, why: str) -> None:
        """Forget a registration; everything pending on it fails Offline at once."""
        peer = self.peers.pop(ident, None)
        if peer is None:
            return
        if self.idents.get(peer.process_id) == ident:
            del self.idents[peer.process_id]
        if peer.verified_pid:
            self._unwatch(peer.verified_pid, ident)
        failed = self.pending.responder_gone(peer.process_id)
        for reply_to, id_ in failed:
            self.counters.offline += 1
            self._send_error(reply_to, id_, peer.process_id, SendErrorKind.Offline,
                             f"{peer.process_id} went away with the request pending",
                             delivered=True)
        for watcher in self.watchers.pop(peer.process_id, ()):
            self._send_exited(watcher, peer.process_id)
        log.info("unregistered %s (os pid %d): %s; %d pending request(s) failed Offline",
                 peer.process_id, peer.os_pid, why, len(failed))

    def _control(self, ident: bytes, peer: Peer | None, env: kernel_pb2.Envelope,
                 frame: Any) -> None:
        ctl = env.control
        which = ctl.WhichOneof("kind")
        if which == "register":
            pid = peer_pid(frame) if isinstance(frame, zmq.Frame) else 0
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
            for p in sorted(self.peers.values(), key=lambda p: p.process_id):
                reg.entries.add(process_id=p.process_id, os_pid=p.os_pid,
                                registered_at=p.registered_at)
            c = self.counters
            reg.routed, reg.malformed, reg.refused = c.routed, c.malformed, c.refused
            reg.timeouts, reg.offline = c.timeouts, c.offline
            self._send(ident, reply)
        else:
            self._malformed(ident, env.id, f"processes may not send control {which!r}")

    def _register(self, ident: bytes, peer: Peer | None, reg: kernel_pb2.Register,
                  verified_pid: int) -> None:
        pid = reg.process_id
        if not is_valid(pid) or pid == KERNEL:
            self.counters.refused += 1
            self._kernel_error(ident, ErrorCode.InvalidProcessId, 0,
                               f"{pid!r} is not a valid process id: name:package:publisher, "
                               "name and package [a-z0-9-]+, publisher [a-z0-9.-]+ "
                               "(kernel:distro:sys is reserved)")
            log.warning("refused registration of %r: invalid process id", pid)
            return
        if peer is not None and peer.process_id != pid:
            self.counters.refused += 1
            self._kernel_error(ident, ErrorCode.AlreadyRegistered, 0,
                               f"this connection is already registered as {peer.process_id}")
            return
        os_pid = verified_pid or reg.os_pid
        holder = self.idents.get(pid)
        if holder is not None and holder != ident:
            held = self.peers[holder]
            if verified_pid and held.verified_pid == verified_pid:
                # The same OS process reconnected (its old connection is gone): take over.
                self._drop(holder, "reconnected")
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
        self.peers[ident] = Peer(pid, os_pid, time.time(), verified_pid)
        self.idents[pid] = ident
        if verified_pid:
            self._watch(verified_pid, ident)
        self._send_registered(ident, pid)
        log.info("registered %s (os pid %d)", pid, os_pid)

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

    def _send_registered(self, ident: bytes, pid: str) -> None:
        reply = Envelope(version=PROTOCOL_VERSION, source=KERNEL, target=pid)
        ack = reply.control.registered
        ack.process_id, ack.node, ack.kernel_boot_id = pid, self.node, self.boot_id
        self._send(ident, reply)

    # ------------------------------------------------------------------ replies

    def _send(self, ident: bytes, env: kernel_pb2.Envelope) -> None:
        try:
            self.sock.send_multipart((ident, env.SerializeToString()), zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            pass  # gone or not reading; nothing is queued for absent peers

    def _send_error(self, to: str, id_: int, target: str, kind: int, detail: str,
                    delivered: bool = False) -> None:
        ident = self.idents.get(to)
        if ident is None:
            return
        env = Envelope(version=PROTOCOL_VERSION, id=id_, source=target, target=to)
        err = env.send_error
        err.kind = kind  # type: ignore[assignment]
        err.target = target
        err.detail = detail
        err.delivered = delivered
        self._send(ident, env)

    def _kernel_error(self, ident: bytes, code: int, id_: int, detail: str) -> None:
        env = Envelope(version=PROTOCOL_VERSION, id=id_, source=KERNEL)
        err = env.control.error
        err.code = code  # type: ignore[assignment]
        err.id = id_
        err.detail = detail
        self._send(ident, env)

    def _malformed(self, ident: bytes, id_: int, detail: str) -> None:
        self.counters.malformed += 1
        self.counters.warn("malformed", "malformed message from %s: %s",
                           self._who(ident), detail)
        self._kernel_error(ident, ErrorCode.Malformed, id_, detail)

    def _who(self, ident: bytes) -> str:
        peer = self.peers.get(ident)
        return peer.process_id if peer else f"unregistered connection {ident.hex()}"


def _bytes(frame: Any) -> bytes:
    return frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)


def install_signal_handlers(kernel: Kernel) -> None:
    signal.signal(signal.SIGTERM, kernel.stop)
    signal.signal(signal.SIGINT, kernel.stop)
