"""The connection to the kernel that both stub APIs (blocking and asyncio) share.

`CoreBase` is the part that does not depend on how bytes reach the kernel: it numbers
requests, builds envelopes (register, watch, requests, responses) and decodes what
arrives, keeping the registration state. Two transports send and receive for it:

- `Core` owns one ZeroMQ DEALER socket and a monitor on it (either stub with transport
  "libzmq"). It (re)registers whenever a connection to the kernel is established:
  that is how a process survives a kernel restart without doing anything. It never
  waits; the blocking and asyncio layers decide how to wait.
- `porch.process.zmtp_client.ZmtpClient` speaks ZMTP itself on the kernel's Unix
  socket, driven by the asyncio loop (`ZmtpCore`) or by the blocking calls
  (`porch.process.zmtp_blocking.BlockingZmtpCore`): both stubs' default.

`Core`'s socket options follow DESIGN.md "Failure semantics": IMMEDIATE (nothing is queued while
the kernel is away: a send fails at once instead), bounded high-water marks, a short LINGER,
fast reconnects, and ZMTP heartbeats so a hung kernel is noticed.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import zmq
from zmq.utils.monitor import parse_monitor_message

from porch.address import KERNEL, validate
from porch.node.home import ENV_PROCESS, kernel_endpoint
from porch.process.message import (
    SEND_ERRORS,
    Blob,
    KernelRefused,
    Message,
    Offline,
    PorchError,
    SendError,
)
from porch.wire import PROTOCOL_VERSION, kernel_pb2

Envelope = kernel_pb2.Envelope

# Outgoing and incoming queues are bounded: a process that stops reading must not make
# the kernel (or itself) grow without limit.
HIGH_WATER_MARK = 10_000
# Plain ints on the hot path: pyzmq's enums build a new enum object per `|` or `&`.
NOBLOCK = int(zmq.NOBLOCK)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
MONITOR_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


def now_ms() -> int:
    return int(time.time() * 1000)


def expired(msg: Message) -> bool:
    """A request whose requester has already been told Timeout."""
    return msg.expects_response and 0 < msg.deadline_ms < now_ms()


@dataclass(slots=True)
class Registered:
    node: str
    boot_id: str


@dataclass(slots=True)
class Refused:
    """A KernelError about registration or about the connection as a whole."""

    code: str
    detail: str
    id: int


@dataclass(slots=True)
class Exited:
    """The kernel's answer to a watch: that process's registration ended."""

    process_id: str


@dataclass(slots=True)
class Reply:
    """The outcome of a request this process sent: a Response or a SendError."""

    id: int
    message: Message | None
    error: SendError | None


Incoming = Message | Reply | Registered | Refused | Exited | None


ENV_TRANSPORT = "PORCH_STUB_TRANSPORT"
TRANSPORTS = ("zmtp", "libzmq")
DEFAULT_TRANSPORT = "zmtp"


def stub_transport(requested: str | None, endpoint: str) -> str:
    """The transport a stub (blocking or asyncio) uses: the one asked for, else
    $PORCH_STUB_TRANSPORT, else the default; "libzmq" for an endpoint the zmtp
    transport cannot reach (not ipc://)."""
    name = requested or os.environ.get(ENV_TRANSPORT) or DEFAULT_TRANSPORT
    if name not in TRANSPORTS:
        raise ValueError(f"unknown stub transport {name!r} (choose from {', '.join(TRANSPORTS)})")
    if name == "zmtp" and not endpoint.startswith("ipc://"):
        return "libzmq"
    return name


def resolve(process_id: str | None, home: str | os.PathLike[str] | None,
            endpoint: str | None) -> tuple[str, str]:
    """The id from the argument or $PORCH_PROCESS; the endpoint from the argument,
    $PORCH_KERNEL, or the home's socket (every transport starts here)."""
    pid = process_id or os.environ.get(ENV_PROCESS)
    if not pid:
        raise PorchError("no process id: pass one or set $" + ENV_PROCESS)
    return pid, endpoint or kernel_endpoint(home)


class CoreBase:
    """One process's session with the kernel, whatever carries its bytes: request ids,
    envelopes built and decoded, registration state. A transport subclasses it and
    implements `send_envelope` (and calls `_send_register` once connected)."""

    def __init__(self, process_id: str, endpoint: str) -> None:
        self.process_id = validate(process_id)
        self.endpoint = endpoint
        self.node = ""
        self.kernel_boot_id = ""
        self.connected = False
        self.registered = False
        # Ids are unique per requester; a random start keeps a restarted process from
        # reusing the ids of its previous life while those may still be pending.
        self._ids = itertools.count(random.getrandbits(62) + 1)

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def send_envelope(self, env: kernel_pb2.Envelope, blob: Blob | None) -> None:
        """Send without blocking; a kernel that is away or full is an Offline error."""
        raise NotImplementedError

    def close(self) -> None:
        """Unregister (so the kernel fails what is pending on us at once) and close."""
        raise NotImplementedError

    # ------------------------------------------------------------------ control

    def _send_register(self) -> None:
        env = Envelope(version=PROTOCOL_VERSION, source=self.process_id, target=KERNEL)
        env.control.register.process_id = self.process_id
        env.control.register.os_pid = os.getpid()
        self.send_envelope(env, None)

    def unregister_envelope(self) -> bytes:
        env = Envelope(version=PROTOCOL_VERSION, source=self.process_id, target=KERNEL)
        env.control.unregister.SetInParent()
        return env.SerializeToString()

    def send_watch(self, process_id: str) -> None:
        env = Envelope(version=PROTOCOL_VERSION, source=self.process_id, target=KERNEL)
        env.control.watch.process_id = process_id
        self.send_envelope(env, None)

    def send_registry_query(self) -> int:
        env = Envelope(version=PROTOCOL_VERSION, id=next(self._ids),
                       source=self.process_id, target=KERNEL)
        env.control.registry_query.SetInParent()
        self.send_envelope(env, None)
        return env.id

    # ------------------------------------------------------------------ sending

    def new_request(
        self,
        target: str,
        body: bytes,
        *,
        blob: Blob | None = None,
        timeout: float | None = None,
        metadata: str | None = None,
        rsvp: str | None = None,
        id: int | None = None,
    ) -> kernel_pb2.Envelope:
        env = Envelope(version=PROTOCOL_VERSION, id=next(self._ids) if id is None else id,
                       source=self.process_id, target=target)
        req = env.request
        req.body = body
        if timeout is not None:
            req.expects_response = True
            req.deadline_ms = now_ms() + max(0, int(timeout * 1000))
        if metadata is not None:
            req.metadata = metadata
        if rsvp:
            env.rsvp = rsvp
        if blob is not None and blob.mime is not None:
            env.blob_mime = blob.mime
        return env

    def send_response(
        self,
        to: Message,
        body: bytes,
        *,
        blob: Blob | None = None,
        metadata: str | None = None,
    ) -> None:
        env = Envelope(version=PROTOCOL_VERSION, id=to.id,
                       source=self.process_id, target=to.reply_to)
        resp = env.response
        resp.body = body
        if metadata is not None:
            resp.metadata = metadata
        if blob is not None and blob.mime is not None:
            env.blob_mime = blob.mime
        self.send_envelope(env, blob)

    # ------------------------------------------------------------------ receiving

    def decode(self, frames: list[bytes]) -> Incoming:
        env = Envelope()
        try:
            env.ParseFromString(frames[0])
        except Exception:  # DecodeError; the kernel never sends junk, but be safe
            return None
        blob = Blob(frames[1], env.blob_mime if env.HasField("blob_mime") else None) \
            if len(frames) > 1 else None
        kind = env.WhichOneof("message")
        if kind == "request":
            req = env.request
            msg = Message(
                env.id, env.source, env.target, True, req.body, blob,
                req.metadata if req.HasField("metadata") else None,
                req.expects_response, req.deadline_ms, env.rsvp,
            )
            return None if expired(msg) else msg  # never work on it late
        if kind == "response":
            resp = env.response
            msg = Message(env.id, env.source, env.target, False, resp.body, blob,
                          resp.metadata if resp.HasField("metadata") else None)
            return Reply(env.id, msg, None)
        if kind == "send_error":
            err = env.send_error
            name = kernel_pb2.SendError.Kind.Name(err.kind)
            cls = SEND_ERRORS.get(name, Offline)
            return Reply(env.id, None, cls(err.target, env.id, err.detail, err.delivered))
        if kind == "control":
            return self._decode_control(env)
        return None

    def _decode_control(self, env: kernel_pb2.Envelope) -> Incoming:
        ctl = env.control
        which = ctl.WhichOneof("kind")
        if which == "registered":
            self.registered = True
            self.node = ctl.registered.node
            self.kernel_boot_id = ctl.registered.kernel_boot_id
            return Registered(self.node, self.kernel_boot_id)
        if which == "error":
            err = ctl.error
            code = kernel_pb2.KernelError.Code.Name(err.code)
            if code == "NotRegistered":
                # We raced a reconnection: register again; the message that was refused
                # fails like any message sent while the kernel was away.
                try:
                    self._send_register()
                except Offline:
                    pass  # the connection is going: the next one registers
                return Reply(err.id, None, Offline(env.source, err.id, err.detail))
            if err.id:
                # About one message of ours (e.g. undecodable): fail that request.
                return Reply(err.id, None, Offline(env.source, err.id, f"{code}: {err.detail}"))
            return Refused(code, err.detail, err.id)
        if which == "process_exited":
            return Exited(ctl.process_exited.process_id)
        if which == "registry":
            msg = Message(env.id, env.source, env.target, False,
                          ctl.registry.SerializeToString())
            return Reply(env.id, msg, None)
        return None


class Core(CoreBase):
    """One process's connection to the kernel over a libzmq DEALER. Not thread-safe
    (ZeroMQ sockets never are)."""

    def __init__(
        self,
        process_id: str,
        endpoint: str,
        *,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        super().__init__(process_id, endpoint)
        self._ctx = context or zmq.Context.instance()
        self.sock: zmq.Socket[bytes] = self._ctx.socket(zmq.DEALER)
        for opt, value in (
            # Long enough for a response sent just before the process exits to leave (the
            # ZMTP transport's EXIT_LINGER_S);
            # IMMEDIATE keeps it from waiting for a kernel that is not there.
            (zmq.LINGER, 500),
            (zmq.IMMEDIATE, 1),
            (zmq.SNDHWM, HIGH_WATER_MARK),
            (zmq.RCVHWM, HIGH_WATER_MARK),
            (zmq.RECONNECT_IVL, 100),
            (zmq.RECONNECT_IVL_MAX, 1000),
            (zmq.HEARTBEAT_IVL, 1000),
            (zmq.HEARTBEAT_TIMEOUT, 5000),
            (zmq.HEARTBEAT_TTL, 5000),
        ):
            self.sock.setsockopt(opt, value)
        self.monitor: zmq.Socket[bytes] = self.sock.get_monitor_socket(MONITOR_EVENTS)
        self.sock.connect(endpoint)

    @property
    def closed(self) -> bool:
        return bool(self.sock.closed)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Unregister (so the kernel fails what is pending on us at once) and close."""
        if self.sock.closed:
            return
        linger = 200 if self.registered else 0
        if self.registered:
            try:
                self.sock.send(self.unregister_envelope(), zmq.NOBLOCK)
            except zmq.ZMQError:
                linger = 0
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)
        self.sock.close(linger)
        self.registered = False

    def take_monitor_events(self) -> tuple[bool, bool]:
        """Drain the monitor. Returns (connected_now, disconnected_now).

        On a new connection the Register goes out before anything else, so the kernel
        sees it first (ZeroMQ keeps the order of one pipe).
        """
        up = down = False
        while True:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            event = parse_monitor_message(frames)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                up = True
                self.connected = True
                self.registered = False
                self._send_register()
            elif event == zmq.EVENT_DISCONNECTED:
                down = True
                self.connected = False
                self.registered = False
        return up, down

    # ------------------------------------------------------------------ sending

    def send_envelope(self, env: kernel_pb2.Envelope, blob: Blob | None) -> None:
        """Send without blocking; a kernel that is away or full is an Offline error."""
        data = env.SerializeToString()
        try:
            if blob is None:
                self.sock.send(data, zmq.NOBLOCK)
            else:
                self.sock.send_multipart((data, blob.bytes), zmq.NOBLOCK)
        except zmq.Again:
            raise Offline(env.target, env.id, "kernel not reachable (not running or not keeping up)") from None

    # ------------------------------------------------------------------ receiving

    def has_input(self) -> bool:
        """A message is waiting (and the fd's signal, if any, has been consumed)."""
        return bool(cast(int, self.sock.get(EVENTS)) & POLLIN)

    def monitor_has_input(self) -> bool:
        return bool(cast(int, self.monitor.get(EVENTS)) & POLLIN)

    @property
    def fd(self) -> int:
        """The socket's edge-triggered notification fd (for loop.add_reader)."""
        return cast(int, self.sock.getsockopt(zmq.FD))

    @property
    def monitor_fd(self) -> int:
        return cast(int, self.monitor.getsockopt(zmq.FD))

    def recv_nowait(self) -> Incoming | Literal[False]:
        """Read one message. False when nothing is waiting; None when the frames were
        consumed but there is nothing for the caller (an expired request, junk)."""
        # Frame by frame: recv_multipart costs ~1 µs more (an RCVMORE getsockopt per
        # frame, enum flags). Frame.more says whether a blob follows.
        recv = self.sock.recv
        try:
            frame = recv(NOBLOCK, copy=False)
        except zmq.Again:
            return False
        frames = [frame.bytes]
        while frame.more:
            frame = recv(NOBLOCK, copy=False)
            frames.append(frame.bytes)
        return self.decode(frames)


def refused_error(refused: Refused) -> KernelRefused:
    return KernelRefused(refused.code, refused.detail)
