"""One process's session with the kernel: what both stub APIs (blocking and asyncio)
share, over the link that carries its bytes (`porch.link.Link`: the local
`porch.link.dealer.Dealer` on the node's Unix socket, or `porch.link.remote.RemoteDealer`
over TCP with CURVE from another machine).

`KernelSession` numbers requests, builds envelopes (register, watch, requests,
responses) and decodes what arrives into `Incoming` items, keeping the registration
state. It is the dealer's handler: on every new connection its Register goes out
first (that is how a process survives a kernel restart without doing anything), every
message is decoded and handed to the API's `deliver`, and a lost connection is told to
the API's `lost`. It never waits; the blocking and asyncio layers decide how to wait.

Over a remote link two things differ, and are handled here: blobs never travel as
descriptors (the link's `takes_fds` is False: they go inline), and deadlines are
absolute times on the kernel's clock, which may not be ours: the Registered answer
carries the kernel's time, and deadlines are converted both ways with the offset
(accurate to the round trip).
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

from porch.address import KERNEL, is_reserved, validate
from porch.link import Link
from porch.link.fds import FD_BLOB_MIN, BadBlobFd, BlobFile, memfd_blob, read_blob_fd
from porch.node.home import ENV_KERNEL, ENV_PROCESS, kernel_endpoint
from porch.node.keys import ENV_KEYS, ClientKeys, KeyFileError, read_client
from porch.node.service_token import ENV_SERVICE_TOKEN
from porch.process.message import (
    SEND_ERRORS,
    Blob,
    KernelRefused,
    Message,
    Offline,
    PorchError,
    SendError,
)
from porch.wire import PROTOCOL_VERSION, kernel_pb2, now_ms

log = logging.getLogger("porch.process")
Envelope = kernel_pb2.Envelope
OFFLINE = "kernel not reachable (not running or not keeping up)"


def expired(msg: Message) -> bool:
    """A request whose requester has already been told Timeout."""
    return msg.expects_response and 0 < msg.deadline_ms < now_ms()


@dataclass(slots=True)
class Registered:
    node: str
    boot_id: str
    took_over: bool = False


@dataclass(slots=True)
class Superseded:
    """Another process took this id over (Register.takeover): nothing new comes."""

    process_id: str


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


Incoming = Message | Reply | Registered | Refused | Exited | Superseded | None
Deliver = Callable[[Incoming], object]


KeysArg = str | os.PathLike[str] | ClientKeys | None


def resolve(process_id: str | None, home: str | os.PathLike[str] | None,
            endpoint: str | None, keys: KeysArg = None) -> tuple[str, str, ClientKeys | None]:
    """Who connects where, with which keys.

    The endpoint: the argument, $PORCH_KERNEL, the key file's `kernel`, else the home's
    socket. A tcp:// endpoint (a kernel on another machine) needs keys: the argument (a
    key file or ClientKeys) or the key file $PORCH_KEYS names (`porch keys new`). The id:
    the argument, $PORCH_PROCESS, else the key file's `process`."""
    client: ClientKeys | None = None
    if endpoint:
        where = endpoint
    elif home is not None:
        where = kernel_endpoint(home)  # that home's own socket
    else:
        where = os.environ.get(ENV_KERNEL, "")
        if not where:
            client = _client_keys(keys)
            where = (client.kernel if client is not None else "") or kernel_endpoint(None)
    if where.startswith("tcp://"):
        client = client or _client_keys(keys)
        if client is None:
            raise PorchError(f"the kernel at {where} is on another machine: pass keys= (a key "
                             f"file) or set ${ENV_KEYS} (`porch keys new ID` writes one)")
    else:
        client = None  # the node's own socket: no keys
    pid = process_id or os.environ.get(ENV_PROCESS) or (client.process if client else "")
    if not pid:
        raise PorchError("no process id: pass one or set $" + ENV_PROCESS)
    return pid, where, client


def _client_keys(keys: KeysArg) -> ClientKeys | None:
    if isinstance(keys, ClientKeys):
        return keys
    path = keys if keys is not None else os.environ.get(ENV_KEYS)
    if not path:
        return None
    try:
        return read_client(path)
    except KeyFileError as exc:
        raise PorchError(str(exc)) from None


def remote_settings(keys: ClientKeys) -> dict[str, str]:
    """What a remote link is built with (porch.link.remote.RemoteDealer)."""
    return {"server_key": keys.server, "public_key": keys.public, "secret_key": keys.secret}


class KernelSession:
    """One process's session with the kernel over `link`: request ids, envelopes built
    and decoded, registration state. `start(deliver, lost)` starts the link."""

    def __init__(self, process_id: str, endpoint: str, link: Link, *, takeover: bool = False,
                 member_of: int = 0) -> None:
        self.process_id = validate(process_id)
        self.endpoint = endpoint
        self.link = link
        self.node = ""
        self.kernel_boot_id = ""
        self.registered = False
        # The kernel's clock minus ours, in ms (0 for a local link: one clock).
        self.clock_offset_ms = 0
        # A node service's new process taking its id over from a live one (reserved ids).
        self.takeover = takeover
        # A node service's process joining the live holder of its id (that OS pid) as a
        # member (Register.member_of; the http-server's workers, docs/workers.md).
        self.member_of = member_of
        # Superseded: this process no longer registers (not even after a kernel restart).
        self.retired = False
        # Ids are unique per requester; a random start keeps a restarted process from
        # reusing the ids of its previous life while those may still be pending.
        self._ids = itertools.count(random.getrandbits(62) + 1)
        self._deliver: Deliver = _ignore
        self._lost: Callable[[], None] = _nothing

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def closed(self) -> bool:
        return self.link.closed

    def bind(self, deliver: Deliver, lost: Callable[[], None]) -> None:
        """Where decoded items go and who hears of a lost connection (before the link
        starts)."""
        self._deliver = deliver
        self._lost = lost

    def send_envelope(self, env: kernel_pb2.Envelope, blob: Blob | BlobFile | None) -> None:
        """Send without blocking; a kernel that is away or full is an Offline error.

        A blob of FD_BLOB_MIN bytes or more (and a BlobFile, always) goes as a sealed
        memfd beside the message, not through the kernel's queues (porch.link.fds),
        when the link takes descriptors; else as a frame."""
        if blob is None:
            sent = self.link.send(env.SerializeToString())
        elif not self.link.takes_fds:
            sent = self.link.send(env.SerializeToString(), _inline(blob))
        elif isinstance(blob, BlobFile):
            sent = self._send_fd(env, blob.detach(), blob.size)
        elif len(blob.bytes) >= FD_BLOB_MIN:
            sent = self._send_fd(env, memfd_blob(blob.bytes), len(blob.bytes))
        else:
            sent = self.link.send(env.SerializeToString(), blob.bytes)
        if not sent:
            raise Offline(env.target, env.id, OFFLINE)

    def _send_fd(self, env: kernel_pb2.Envelope, fd: int, size: int) -> bool:
        env.blob_fd = True
        env.blob_size = size
        if self.link.send(env.SerializeToString(), None, fd):
            return True
        os.close(fd)
        return False

    def close(self) -> None:
        """Unregister (so the kernel fails what is pending on us at once) and close."""
        self.link.close(self.unregister_envelope() if self.registered else None)
        self.registered = False

    # ------------------------------------------------------------------ the link's handler

    def on_connected(self) -> None:
        self.registered = False
        if not self.retired:
            self._send_register()

    def on_message(self, frames: list[bytes]) -> None:
        item = self.decode(frames)
        if item is not None:
            self._deliver(item)

    def on_lost(self) -> None:
        self.registered = False
        self._lost()

    def on_refused(self, detail: str) -> None:
        """The kernel refused our key (remote link): as a refused registration."""
        self.registered = False
        self._deliver(Refused("KeyRefused", detail, 0))

    # ------------------------------------------------------------------ control

    def _send_register(self) -> None:
        env = Envelope(version=PROTOCOL_VERSION, source=self.process_id, target=KERNEL)
        reg = env.control.register
        reg.process_id = self.process_id
        reg.os_pid = os.getpid()
        if is_reserved(self.process_id):  # only a node's service has the token
            reg.service_token = os.environ.get(ENV_SERVICE_TOKEN, "")
            reg.takeover = self.takeover
        reg.member_of = self.member_of  # (the kernel refuses it for any other id)
        self.send_envelope(env, None)

    def register_again(self) -> None:
        """A member refused because its holder is not (yet, or again) registered: try
        again, if still connected and unregistered."""
        if self.link.connected and not self.registered and not self.retired:
            try:
                self._send_register()
            except Offline:
                pass  # the connection is going: the next one registers

    def unregister_envelope(self) -> bytes:
        env = Envelope(version=PROTOCOL_VERSION, source=self.process_id, target=KERNEL)
        env.control.unregister.SetInParent()
        return env.SerializeToString()

    def send_watch(self, process_id: str) -> None:
        env = Envelope(version=PROTOCOL_VERSION, source=self.process_id, target=KERNEL)
        env.control.watch.process_id = process_id
        self.send_envelope(env, None)

    def send_registry_query(self, process_id: str = "", metrics: bool = False) -> int:
        env = Envelope(version=PROTOCOL_VERSION, id=next(self._ids),
                       source=self.process_id, target=KERNEL)
        env.control.registry_query.SetInParent()
        if process_id:
            env.control.registry_query.process_id = process_id
        env.control.registry_query.metrics = metrics
        self.send_envelope(env, None)
        return env.id

    # ------------------------------------------------------------------ sending

    def new_request(
        self,
        target: str,
        body: bytes,
        *,
        blob: Blob | BlobFile | None = None,
        timeout: float | None = None,
        metadata: str | None = None,
        rsvp: str | None = None,
        id: int | None = None,
        report_undelivered: bool = False,
    ) -> kernel_pb2.Envelope:
        env = Envelope(version=PROTOCOL_VERSION, id=next(self._ids) if id is None else id,
                       source=self.process_id, target=target)
        req = env.request
        req.body = body
        if timeout is not None:
            req.expects_response = True
            req.deadline_ms = now_ms() + self.clock_offset_ms + max(0, int(timeout * 1000))
        elif report_undelivered:
            req.report_undelivered = True
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
        blob: Blob | BlobFile | None = None,
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
        mime = env.blob_mime if env.HasField("blob_mime") else None
        if env.blob_fd:
            blob = self._read_fd_blob(env, mime)
            if blob is None:
                return None
        else:
            blob = Blob(frames[1], mime) if len(frames) > 1 else None
        kind = env.WhichOneof("message")
        if kind == "request":
            req = env.request
            deadline = req.deadline_ms
            if deadline and self.clock_offset_ms:
                deadline = max(1, deadline - self.clock_offset_ms)  # on our clock
            msg = Message(
                env.id, env.source, env.target, True, req.body, blob,
                req.metadata if req.HasField("metadata") else None,
                req.expects_response, deadline, env.rsvp,
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

    def _read_fd_blob(self, env: kernel_pb2.Envelope, mime: str | None) -> Blob | None:
        fd = self.link.take_fd()
        if fd < 0:
            log.error("%s: message %d from %s announced a blob descriptor that never came",
                      self.process_id, env.id, env.source)
            return None
        try:
            return Blob(read_blob_fd(fd, env.blob_size), mime)
        except (BadBlobFd, OSError) as exc:
            log.error("%s: blob of message %d from %s refused: %s", self.process_id, env.id,
                      env.source, exc)
            return None
        finally:
            os.close(fd)

    def _decode_control(self, env: kernel_pb2.Envelope) -> Incoming:
        ctl = env.control
        which = ctl.WhichOneof("kind")
        if which == "registered":
            self.registered = True
            self.node = ctl.registered.node
            self.kernel_boot_id = ctl.registered.kernel_boot_id
            if self.link.remote and ctl.registered.kernel_time_ms:
                self.clock_offset_ms = ctl.registered.kernel_time_ms - now_ms()
            return Registered(self.node, self.kernel_boot_id, ctl.registered.took_over)
        if which == "error":
            err = ctl.error
            code = kernel_pb2.KernelError.Code.Name(err.code)
            if code == "NotRegistered":
                # We raced a reconnection: register again; the message that was refused
                # fails like any message sent while the kernel was away.
                try:
                    if not self.retired:
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
        if which == "superseded":
            self.retired = True
            return Superseded(ctl.superseded.process_id)
        if which == "registry":
            msg = Message(env.id, env.source, env.target, False,
                          ctl.registry.SerializeToString())
            return Reply(env.id, msg, None)
        return None


def _inline(blob: Blob | BlobFile) -> bytes:
    """A blob's bytes, for a link that cannot pass descriptors (a BlobFile is read and
    closed: sending hands it over)."""
    if isinstance(blob, Blob):
        return blob.bytes
    fd = blob.detach()
    try:
        return read_blob_fd(fd, blob.size)
    finally:
        os.close(fd)


def refused_error(refused: Refused) -> KernelRefused:
    return KernelRefused(refused.code, refused.detail)


def _ignore(item: Incoming) -> None:
    pass


def _nothing() -> None:
    pass
