"""Server-side WebSockets (reference sections 1.7-1.10, 2.6, 4.6), with Kinode's defects
fixed (section 9):

- D1: a pushed Close closes the socket; it never crashes anything.
- D2: a process closing its own socket never stalls the server.
- D10: every socket has a bounded send queue (bytes not yet taken by the client); a
  client too slow to drain it is closed with 1008 and never slows another socket or
  any action, because pushes only append to that socket's buffer.
- D11: an extension push of a type other than Binary is MalformedRequest, not NoBlob.

Also: authenticated upgrades check Origin (cross-site WebSocket hijacking); a refused
upgrade gets a real status (Kinode falls through to the HTTP handler); the sockets of a
process that dies or unbinds are closed with 1001 so clients reconnect and the restarted
process sees fresh opens; the open channels are written down so that a worker that
crashed tells their owners WebSocketClose when it comes back.

No frame vanishes while its socket stays open (issue 10 item 6). An upgrade is answered
503 unless the kernel says the binding's owner is running (as HTTP to the same path
is). A frame that cannot reach the owner closes its socket instead of being dropped:
1012 (service restart) when the kernel is away, 1011 when the kernel reports that the
owner cannot take it (frames go with report_undelivered). When the link to the kernel
is lost, frames inside the kernel may be lost with it: the sockets that carried a frame
since shortly (RECENT_S) before the kernel was last heard from are closed 1012; idle
ones stay open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import tornado.web
import tornado.websocket

from porch.files import write_atomic
from porch.http_server import actions
from porch.http_server.auth import PROXY_HEADERS, Auth, is_local
from porch.http_server.bindings import BindingTable, WsBinding
from porch.http_server.exchange import OWN_HEADERS, last_value
from porch.http_server.figures import AppStats, HttpFigures
from porch.http_server.hosts import same_origin
from porch.http_server.paths import normalize
from porch.http_server.settings import HttpServerSettings
from porch.process.aio import AsyncProcess
from porch.process.message import Blob, Message, Offline, SendError, Timeout
from porch.wire import http_pb2

log = logging.getLogger("porch.http_server")

ErrorKind = http_pb2.HttpServerError.Kind
WsType = http_pb2.WsMessageType
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_SLOW = 1008
CLOSE_UNREACHABLE = 1011  # the owner cannot take frames (not running, or not reading)
CLOSE_SERVICE_RESTART = 1012
# When the kernel link is lost, a socket with a frame less than this before the kernel
# was last heard from may have lost it inside the kernel (which forwards in well under
# a millisecond when it runs).
RECENT_S = 0.25
OWNER_CHECK_S = 2.0  # an upgrade waits this long for the kernel to say the owner runs
EXT_VARIANTS = frozenset({
    "Bind", "SecureBind", "Unbind", "WebSocketBind", "WebSocketSecureBind", "WebSocketUnbind",
    "WebSocketOpen", "WebSocketPush", "WebSocketExtPushOutgoing", "WebSocketExtPushData",
    "WebSocketClose",
})


class Channel:
    """One open server-side socket: its owner, its binding, its send queue."""

    __slots__ = ("active", "app", "binding_path", "fig", "handler", "id", "opened", "push_bodies")

    def __init__(self, id_: int, app: str, binding_path: str, handler: PorchWebSocket) -> None:
        self.id = id_
        self.app = app
        self.binding_path = binding_path
        self.handler = handler
        self.active = 0.0  # loop time of its last frame, either way
        self.opened = 0.0  # loop time
        self.fig: AppStats | None = None  # its owner's figures (None: not counting)
        # WebSocketPush{channel_id, message_type} bodies, built once per type: every
        # client frame is forwarded with one of these (the payload is the blob).
        self.push_bodies: dict[int, bytes] = {}


class WsHub:
    """The node's open WebSockets and the actions processes take on them."""

    def __init__(self, settings: HttpServerSettings, table: BindingTable, auth: Auth,
                 proc: AsyncProcess, state_dir: Path) -> None:
        self.settings = settings
        self.table = table
        self.auth = auth
        self.proc = proc
        self.channels: dict[int, Channel] = {}
        self._watched: set[str] = set()
        # ExtPushOutgoing requests waiting for the extension's answer: id -> request.
        self._ext_requests: dict[int, Message] = {}
        # One record per worker: during a restart two workers have sockets open.
        self._state_dir = state_dir
        self._record = state_dir / f"ws-channels.{os.getpid()}.json"
        self._record_scheduled = False
        self.draining = False  # this worker stops or is replaced: no new sockets
        # Frames, opens and closes for the node's figures and access log (the worker
        # sets one that counts).
        self.figures = HttpFigures(enabled=False)
        self._loop = asyncio.get_running_loop()
        proc.on_undelivered(self._undelivered)
        proc.on_disconnect(self._kernel_lost)

    # ------------------------------------------------------------------ lifecycle

    def application(self) -> tornado.web.Application:
        return tornado.web.Application(
            [(r".*", PorchWebSocket, {"hub": self})],
            websocket_max_message_size=self.settings.ws_max_message_bytes,
            websocket_ping_interval=self.settings.ws_ping_interval_s or None,
        )

    def announce_lost(self) -> None:
        """After a crash of a previous worker: tell owners their sockets are gone. The
        records of workers still running (one finishing a restart) are theirs."""
        told = 0
        for record in self._state_dir.glob("ws-channels*.json"):
            owner = _record_pid(record.name)
            if owner is not None and (owner == os.getpid() or _is_worker(owner)):
                continue
            try:
                lost = json.loads(record.read_bytes())
            except (OSError, ValueError):
                lost = []
            for entry in lost:
                self._send_close(entry["app"], entry["id"])
            told += len(lost)
            try:
                record.unlink(missing_ok=True)
            except OSError as exc:  # a read-only disk: serve anyway (the next write replaces it)
                log.warning("cannot remove %s: %s", record, exc)
        if told:
            log.info("told owners of %d WebSocket(s) lost with a previous worker", told)

    async def owner_refusal(self, app: str) -> str | None:
        """Why an upgrade to a socket of `app` is refused (503), or None: the kernel
        must say that the owner is running, as an HTTP request to it would find out."""
        try:
            registry = await self.proc.registry(OWNER_CHECK_S, app)
        except Offline:
            return "the node's kernel is not reachable"
        except Timeout:
            return "the node's kernel did not answer"
        if not any(e.process_id == app for e in registry.entries):
            return f"{app} is not running"
        return None

    def close_all(self, code: int = CLOSE_SERVICE_RESTART, reason: str = "server restarting") -> None:
        for channel in list(self.channels.values()):
            channel.handler.close(code, reason)
            self._forget(channel, notify=True, why="server_restart")
        self._write_record()

    def _close_channels(self, channels: list[Channel], code: int, reason: str) -> None:
        why = "kernel_restart" if code == CLOSE_SERVICE_RESTART else "undeliverable"
        for channel in channels:
            channel.handler.close(code, reason)
            self._forget(channel, notify=True, why=why)

    def _undelivered(self, error: SendError) -> None:
        """The kernel could not hand a frame (or an open) to its owner: close that
        owner's sockets (1011) rather than let frames vanish."""
        if not isinstance(error, Offline) or error.delivered:
            return
        mine = [c for c in self.channels.values() if c.app == error.target]
        if mine:
            log.warning("%s cannot take WebSocket frames (%s): closed its %d socket(s) with 1011",
                        error.target, error.detail, len(mine))
            self._close_channels(mine, CLOSE_UNREACHABLE, "the app cannot take messages")

    def _kernel_lost(self) -> None:
        """Frames inside the kernel die with it: close the sockets that carried one
        lately (1012); the idle ones lose nothing and stay open."""
        since = min(self._loop.time(), self.proc.last_heard) - RECENT_S
        recent = [c for c in self.channels.values() if c.active >= since]
        if recent:
            log.warning("lost the kernel: closed %d WebSocket(s) with frames since %.1f s before "
                        "it was last heard from with 1012 (%d idle one(s) stay open)", len(recent),
                        RECENT_S, len(self.channels) - len(recent))
            self._close_channels(recent, CLOSE_SERVICE_RESTART, "the node's kernel restarted")

    def _cannot_deliver(self, channel: Channel) -> None:
        """A send to the kernel failed (Offline): the frame cannot go."""
        if channel.id not in self.channels:
            return
        if self.proc.connected:
            code, reason = CLOSE_UNREACHABLE, "the node's kernel is not keeping up"
        else:
            code, reason = CLOSE_SERVICE_RESTART, "the node's kernel is restarting"
        log.info("websocket %d (%s): a frame could not be sent (%s): closing with %d",
                 channel.id, channel.app, reason, code)
        self._close_channels([channel], code, reason)

    def register(self, handler: PorchWebSocket, binding: WsBinding, path: str) -> Channel:
        assert binding.app is not None
        while True:
            id_ = random.getrandbits(32)
            if id_ not in self.channels:
                break
        channel = Channel(id_, binding.app, binding.path, handler)
        channel.opened = self._loop.time()
        channel.fig = self.figures.ws_opened(binding.app, binding.path or "/", id_, handler.peer)
        self.channels[id_] = channel
        if binding.app not in self._watched:
            self._watched.add(binding.app)
            self.proc.watch(binding.app, self._owner_gone)
        self._schedule_record()
        opened = http_pb2.HttpServerRequest()
        opened.web_socket_open.path = path
        opened.web_socket_open.channel_id = id_
        if handler.peer is not None:
            opened.web_socket_open.source_socket_addr = handler.peer
        log.info("websocket %d opened on %s for %s", id_, binding.path or "/", binding.app)
        self._to_app(channel.app, opened, channel=channel)
        return channel

    def _forget(self, channel: Channel, *, notify: bool, why: str, close_reason: str | None = None) -> None:
        """`why`: the reason the figures count the close under."""
        if self.channels.pop(channel.id, None) is None:
            return
        self.figures.ws_closed(channel.app, why, channel.id, self._loop.time() - channel.opened)
        self._schedule_record()
        if notify:
            if close_reason is not None:
                self._push_to_app(channel, WsType.Close, close_reason.encode())
            self._send_close(channel.app, channel.id)
        log.info("websocket %d closed (%s)", channel.id, channel.app)

    def client_closed(self, channel: Channel, reason: str | None, why: str = "client") -> None:
        """The client went away (or closed, or broke a limit: `why`): Kinode's
        push{Close} (if it sent a close frame), then WebSocketClose."""
        self._forget(channel, notify=True, why=why, close_reason=reason)

    def _owner_gone(self, app: str) -> None:
        self._watched.discard(app)
        mine = [c for c in self.channels.values() if c.app == app]
        for channel in mine:
            channel.handler.close(CLOSE_GOING_AWAY, "the app went away")
            self._forget(channel, notify=False, why="owner_died")
        if mine:
            log.info("%s went away: closed its %d WebSocket(s)", app, len(mine))

    def binding_changed(self, path: str) -> None:
        """A WebSocket binding was replaced or unbound: close what was opened on it."""
        current = self.table.ws.get(path)
        for channel in [c for c in self.channels.values() if c.binding_path == path]:
            if current is None or current.app != channel.app:
                channel.handler.close(CLOSE_GOING_AWAY, "unbound")
                self._forget(channel, notify=True, why="unbound")

    # ------------------------------------------------------------------ to the app

    def _to_app(self, app: str, request: http_pb2.HttpServerRequest, blob: Blob | None = None,
                id_: int | None = None, channel: Channel | None = None) -> None:
        """Send to the owner. For a socket's own traffic (`channel`), what cannot be
        delivered closes that socket; a WebSocketClose that cannot go is dropped (the
        owner learns of it when the worker's record is replayed, or never needs to)."""
        try:
            self.proc.send_request(app, request.SerializeToString(), blob=blob, id=id_,
                                   report_undelivered=channel is not None)
        except Offline:
            if channel is not None:
                self._cannot_deliver(channel)
            return
        if channel is not None:
            channel.active = self._loop.time()

    def _send_close(self, app: str, channel_id: int) -> None:
        closed = http_pb2.HttpServerRequest()
        closed.web_socket_close.channel_id = channel_id
        self._to_app(app, closed)

    def _push_to_app(self, channel: Channel, kind: int, payload: bytes) -> None:
        body = channel.push_bodies.get(kind)
        if body is None:
            push = http_pb2.HttpServerRequest()
            push.web_socket_push.channel_id = channel.id
            push.web_socket_push.message_type = kind  # type: ignore[assignment]
            body = channel.push_bodies[kind] = push.SerializeToString()
        try:
            self.proc.send_request(channel.app, body, blob=Blob(payload), report_undelivered=True)
        except Offline:
            self._cannot_deliver(channel)
            return
        channel.active = self._loop.time()

    def from_client(self, channel: Channel, payload: bytes, binary: bool, extension: bool) -> None:
        fig = channel.fig
        if fig is not None:
            fig.ws_in += 1
            fig.ws_bytes_in += len(payload)
        if extension and self._ext_inbound(channel, payload):
            return
        self._push_to_app(channel, WsType.Binary if binary else WsType.Text, payload)

    def _ext_inbound(self, channel: Channel, payload: bytes) -> bool:
        """An extension's frame (reference 1.9). True if it was handled (or dropped)."""
        try:
            decoded = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception:
            return False
        if not (isinstance(decoded, dict) and len(decoded) == 1):
            return False
        ((variant, data),) = decoded.items()
        if variant not in EXT_VARIANTS:
            return False
        if variant != "WebSocketExtPushData" or not isinstance(data, dict):
            log.info("extension on websocket %d sent %s: dropped", channel.id, variant)
            return True
        id_, kind, blob = data.get("id"), data.get("kinode_message_type"), data.get("blob")
        if not isinstance(id_, int) or kind not in ("Request", "Response"):
            log.info("extension on websocket %d sent a malformed WebSocketExtPushData", channel.id)
            return True
        body = bytes(blob) if isinstance(blob, list | bytes) else b""
        push = http_pb2.HttpServerRequest()
        push.web_socket_push.channel_id = channel.id
        push.web_socket_push.message_type = WsType.Binary
        if kind == "Request":
            self._to_app(channel.app, push, Blob(body), id_=id_, channel=channel)
            return True
        request = self._ext_requests.pop(id_, None)
        if request is None or request.source != channel.app:
            log.info("extension answered unknown request %d on websocket %d", id_, channel.id)
            return True
        self.proc.respond(request, push.SerializeToString(), blob=Blob(body))
        return True

    # ------------------------------------------------------------------ from the app

    def on_push(self, msg: Message, which: str, action: http_pb2.HttpServerAction) -> bytes | None:
        """WebSocketPush and WebSocketExtPushOutgoing (and Close, via on_close)."""
        if which == "web_socket_ext_push_outgoing":
            ext = action.web_socket_ext_push_outgoing
            channel_id, kind = ext.channel_id, ext.message_type
        else:
            channel_id, kind = action.web_socket_push.channel_id, action.web_socket_push.message_type
        if msg.blob is None:
            return actions.err(ErrorKind.NoBlob, "a push needs its payload as the blob")
        data = msg.blob.bytes
        if kind == WsType.Close:  # D1: a pushed Close is a close
            return self._close(msg.source, channel_id, data.decode("utf-8", "replace"))
        channel = self.channels.get(channel_id)
        if channel is None or channel.app != msg.source:
            return actions.err(ErrorKind.WsChannelNotFound, f"no channel {channel_id} of {msg.source}")
        channel.active = self._loop.time()
        if which == "web_socket_ext_push_outgoing":
            if kind != WsType.Binary:  # D11: named for what it is
                return actions.err(ErrorKind.MalformedRequest, "extension pushes must be Binary")
            reply_type = ("Response" if ext.desired_reply_type == http_pb2.MESSAGE_TYPE_RESPONSE
                          else "Request")
            envelope = {"WebSocketExtPushData": {"id": msg.id, "kinode_message_type": reply_type,
                                                 "blob": list(data)}}
            self._send(channel, msgpack.packb(envelope), binary=True)
            if msg.expects_response:
                self._ext_requests[msg.id] = msg
                if len(self._ext_requests) > 10_000:  # answers that never came
                    self._ext_requests.pop(next(iter(self._ext_requests)))
            return None  # no ack: the extension answers (reference 1.9)
        if kind == WsType.Text:
            self._send(channel, data.decode("utf-8", "replace"), binary=False)
        elif kind == WsType.Binary:
            self._send(channel, data, binary=True)
        elif kind in (WsType.Ping, WsType.Pong):
            if len(data) > 125:
                return actions.err(ErrorKind.WsPingPongTooLong, f"{len(data)} bytes (at most 125)")
            channel.handler.control(0x9 if kind == WsType.Ping else 0xA, data)
        else:
            return actions.err(ErrorKind.MalformedRequest, "unknown message type")
        return actions.ok()

    def on_close(self, msg: Message, which: str, action: http_pb2.HttpServerAction) -> bytes | None:
        return self._close(msg.source, action.web_socket_close.channel_id, None)

    def _close(self, source: str, channel_id: int, reason: str | None) -> bytes:
        channel = self.channels.get(channel_id)
        if channel is None:
            return actions.ok()  # Kinode: closing an unknown channel is not an error
        if channel.app != source:
            return actions.err(ErrorKind.WsChannelNotFound, f"channel {channel_id} is not {source}'s")
        channel.handler.close(1000, reason or None)
        self._forget(channel, notify=True, why="app")
        return actions.ok()

    def _send(self, channel: Channel, data: str | bytes, binary: bool) -> None:
        """Queue one frame; a client whose unsent bytes pass the limit is closed (1008).

        Tornado writes to the socket at once when it can, so the stream's unsent bytes
        are exactly what this client has not taken yet."""
        queued = channel.handler.unsent_bytes()
        if queued + len(data) > self.settings.ws_send_queue_bytes:
            log.warning("websocket %d (%s): client too slow (%d bytes unsent); closing",
                        channel.id, channel.app, queued)
            channel.handler.close(CLOSE_TOO_SLOW, "too slow: send queue full")
            channel.handler.abort_soon()
            self._forget(channel, notify=True, why="slow_reader")
            return
        fig = channel.fig
        if fig is not None:
            fig.ws_out += 1
            fig.ws_bytes_out += len(data)
        try:
            channel.handler.write_message(data, binary=binary)
        except tornado.websocket.WebSocketClosedError:
            pass

    # ------------------------------------------------------------------ record

    def _schedule_record(self) -> None:
        if not self._record_scheduled:
            self._record_scheduled = True
            asyncio.get_running_loop().call_later(0.5, self._write_record)

    def _write_record(self) -> None:
        self._record_scheduled = False
        entries = [{"id": c.id, "app": c.app} for c in self.channels.values()]
        try:
            if entries:
                write_atomic(self._record, json.dumps(entries).encode())
            else:
                self._record.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot record open WebSockets: %s", exc)


def _record_pid(name: str) -> int | None:
    """The worker pid in a record's name (ws-channels.<pid>.json); None for the
    single record of earlier versions (ws-channels.json)."""
    middle = name[len("ws-channels"):-len(".json")].lstrip(".")
    return int(middle) if middle.isdigit() else None


def _is_worker(pid: int) -> bool:
    """Whether pid is a running http-server worker (and not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"porch.http_server" in cmdline and b"--worker-fd" in cmdline


class PorchWebSocket(tornado.websocket.WebSocketHandler):
    """One client connection; checks happen in prepare(), before the upgrade."""

    hub: WsHub
    binding: WsBinding
    channel: Channel | None
    peer: str | None

    def initialize(self, hub: WsHub) -> None:
        self.hub = hub
        self.channel = None
        self.peer = None
        self.open_path = "/"

    async def prepare(self) -> None:
        hub = self.hub
        if hub.draining:
            # A request on a kept-alive connection of a worker being replaced: the next
            # connection reaches the new worker.
            self.set_header("Retry-After", "0")
            self._refuse(503, "this server process is being replaced; connect again")
            return
        if len(hub.channels) >= hub.settings.max_websockets:
            log.warning("too many open websockets (%d); refusing an upgrade", len(hub.channels))
            self._refuse(503, "too many open websockets")
            return
        path = normalize(self.request.path)
        found = hub.table.resolve_ws(path)
        if found is None or found[0].app is None:
            self._refuse(404, "no websocket bound here")
            return
        binding = found[0]
        self.binding = binding
        headers = self.request.headers
        if binding.authenticated:
            app_scope = None
            if binding.secure_subdomain is not None:
                host = (last_value(headers, "Host") or "").rsplit(":", 1)[0]
                if host.split(".", 1)[0] != binding.secure_subdomain:
                    self._refuse(403, "secure websocket must be opened on its subdomain")
                    return
                app_scope = binding.app
            if not hub.auth.authorized(last_value(headers, "Cookie"), app_scope):
                self._refuse(401, "authentication required")
                return
        if binding.extension:
            proxied = any(headers.get(h) is not None for h in PROXY_HEADERS)
            if not is_local(self.request.remote_ip, proxied):
                self._refuse(403, "extension websockets are local only")
                return
        ip = self.request.remote_ip
        port = getattr(self.request.connection, "context", None)
        address = getattr(port, "address", None)
        self.peer = f"{ip}:{address[1]}" if isinstance(address, tuple) else None
        app = binding.app
        assert app is not None
        rest = path.lstrip("/")
        # The path below the app's prefix; homepage's sockets report "/" (reference 2.6).
        rest = rest[len(app):] if rest.startswith(app) else ""
        self.open_path = "/" + rest.lstrip("/")
        # Last: it asks the kernel (one round trip), and only for an upgrade that
        # passed every other check.
        refusal = await hub.owner_refusal(app)
        if refusal is not None:
            self._refuse(503, refusal)

    def _refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(message + "\n")

    def set_default_headers(self) -> None:
        # Refusals (and the 101) are porch's own answers (issue 9 item 15).
        for name, value in OWN_HEADERS:
            self.set_header(name, value)

    def check_origin(self, origin: str) -> bool:
        """Cross-origin upgrades only for bindings anyone may use; an authenticated one
        must come from the node's own origin, or a cookie-carrying page elsewhere could
        hijack it (cross-site WebSocket hijacking). So must an extension socket: its
        only check is a loopback peer, which any page in the owner's browser is, and
        a page there could pose as the extension.

        The Origin == Host comparison is porch's own (hosts.same_origin), so that it
        holds on every Tornado this package allows: 6.6 compares before calling this,
        6.4 and 6.5 leave it all to this method (issue 9 item 8). A request without
        Origin never gets here: browsers always send one on an upgrade; a client that
        sends none is not a browser page, and must present the cookie itself."""
        if not (self.binding.authenticated or self.binding.extension):
            return True
        headers = self.request.headers
        fetch_site = (last_value(headers, "Sec-Fetch-Site") or "same-origin").strip().lower()
        if fetch_site in ("same-origin", "none") and same_origin(origin, last_value(headers, "Host") or ""):
            return True
        log.info("refused a websocket upgrade on %s from origin %r",
                 self.request.path, origin[:200])
        return False

    def get_compression_options(self) -> dict[str, Any] | None:
        return None

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if type(protocol) is tornado.websocket.WebSocketProtocol13:
            protocol.__class__ = MaskedFramesOnly
        return protocol

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.channel = self.hub.register(self, self.binding, self.open_path)

    def on_message(self, message: str | bytes) -> None:
        channel = self.channel
        if channel is None or channel.id not in self.hub.channels:
            return
        if isinstance(message, str):
            self.hub.from_client(channel, message.encode(), False, self.binding.extension)
        else:
            self.hub.from_client(channel, message, True, self.binding.extension)

    def on_ping(self, data: bytes) -> None:  # answered by Tornado; also told to the app
        if self.channel is not None and self.channel.id in self.hub.channels:
            self.hub._push_to_app(self.channel, WsType.Ping, data)

    def on_pong(self, data: bytes) -> None:
        if self.channel is not None and self.channel.id in self.hub.channels and data:
            self.hub._push_to_app(self.channel, WsType.Pong, data)

    def on_close(self) -> None:
        channel = self.channel
        if channel is not None and channel.id in self.hub.channels:
            reason = self.close_reason or "" if self.close_code is not None else None
            limit = getattr(self, "porch_limit", None)  # set by MaskedFramesOnly.close
            why = "too_big" if limit == 1009 else "protocol" if limit == 1002 else "client"
            self.hub.client_closed(channel, reason, why)

    def control(self, opcode: int, data: bytes) -> None:
        """Send a ping or an unsolicited pong (Tornado has no public pong)."""
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            return
        if opcode == 0x9:
            self.ping(data)
        else:
            write_frame: Callable[..., object] | None = getattr(conn, "_write_frame", None)
            if write_frame is not None:
                write_frame(True, 0xA, data)

    def unsent_bytes(self) -> int:
        """Bytes written to the stream that the client has not taken yet (Tornado keeps
        them in the IOStream's private _write_buffer; tests/integration/test_websockets
        fails if a Tornado upgrade renames it)."""
        stream = getattr(self.ws_connection, "stream", None)
        buffer = getattr(stream, "_write_buffer", None)
        return len(buffer) if buffer is not None else 0

    def abort_soon(self, delay: float = 1.0) -> None:
        """A client that does not read will not read the close frame either: tear the
        connection down shortly after instead of waiting Tornado's 5 s."""
        conn = self.ws_connection
        abort = getattr(conn, "_abort", None)
        if abort is not None:
            asyncio.get_running_loop().call_later(delay, abort)


class _Unmasked(Exception):
    pass


class MaskedFramesOnly(tornado.websocket.WebSocketProtocol13):
    """RFC 6455 5.1: a client's frame must be masked; on one that is not, the server
    closes the connection (1002, protocol error). Tornado accepts unmasked frames.

    Tornado has no public hook for a frame's header, so this reaches two privates of
    WebSocketProtocol13, checked on Tornado 6.4.2, 6.5.2 and 6.6.1: `_receive_frame`
    (reads one frame) and `_read_bytes` (every read of it; the first, 2 bytes, is the
    header). tests/unit/test_ws_frames.py fails if either disappears, and
    tests/integration/test_security_front.py if the behaviour changes."""

    _frame_head_next = False

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Tornado closes on its own for a limit (1009, a message too big) as this class
        does for an unmasked frame (1002): the handler learns which, for the figures."""
        if code in (1002, 1009) and not self.server_terminated and self.handler is not None:
            self.handler.porch_limit = code  # type: ignore[attr-defined]
        super().close(code, reason)

    async def _receive_frame(self) -> None:
        self._frame_head_next = True
        try:
            await super()._receive_frame()
        except _Unmasked:
            log.info("websocket client sent an unmasked frame: closing with 1002")
            # Read nothing more; with the client counted as terminated, close() writes
            # the close frame and then closes the stream (no 5 s wait for an answer).
            self.client_terminated = True
            self.close(1002, "client frames must be masked")

    async def _read_bytes(self, n: int) -> bytes:
        data = await super()._read_bytes(n)
        if self._frame_head_next:
            self._frame_head_next = False
            if len(data) == 2 and not data[1] & 0x80:
                raise _Unmasked
        return data
