"""Server-side WebSockets (docs/kinode.md §1.7-§1.10, §2.6, §4.6), with Kinode's defects
fixed (docs/kinode.md §9):

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

The frames are porch's own (issue 12): after the handshake (`WsHub.admit`, answered
through the HTTP listener) the worker owns the connection's socket
(`porch.ws.conn`, framing in `porch.ws.frames`); Tornado's
WebSocket layer is not used. With `ws_compression` on, a client's permessage-deflate
offer is answered when the socket opens (`porch.ws.deflate`); the limits
hold on inflated messages, and the send queue counts the compressed bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from porch.files import write_atomic
from porch.http_server import actions
from porch.http_server.auth import PROXY_HEADERS, Auth, cross_site, is_local
from porch.http_server.bindings import BindingTable, WsBinding
from porch.http_server.exchange import TEXT, Exchange, Headers, closing_response
from porch.http_server.figures import AppStats, HttpFigures
from porch.http_server.paths import normalize
from porch.http_server.settings import HttpServerSettings
from porch.http_server.upgrade import Refusal, extension_offers, handshake_refusal, switching_protocols
from porch.http_server.worker_figures import is_worker
from porch.http_server.wsdirect import ADOPT_WAIT_S, Offer, Offers, hand_held, successor_path
from porch.http_server.wshandover import HandoverClient, refuse
from porch.process.aio import AsyncProcess
from porch.process.held import PushBodies
from porch.process.message import Blob, Message, Offline, SendError, Timeout
from porch.wire import http_pb2
from porch.ws.conn import WsConnection
from porch.ws.deflate import negotiate
from porch.ws.frames import OP_CLOSE, close_payload, frame

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
# Why a socket its owner held ended, as its owner may report it (porch.process.held).
HELD_CLOSE_REASONS = frozenset({"client", "app", "too_big", "protocol", "slow_reader"})
EXT_VARIANTS = frozenset({
    "Bind", "SecureBind", "Unbind", "WebSocketBind", "WebSocketSecureBind", "WebSocketUnbind",
    "WebSocketOpen", "WebSocketPush", "WebSocketExtPushOutgoing", "WebSocketExtPushData",
    "WebSocketClose",
})


class Channel:
    """One open server-side socket: its owner, its binding, its connection; it hears
    the connection's events (porch.ws.conn.Events) for the hub."""

    __slots__ = ("active", "app", "binding_path", "conn", "extension", "fig", "held", "hub", "id", "opened",
                 "push_bodies", "token")

    def __init__(self, hub: WsHub, id_: int, binding: WsBinding) -> None:
        assert binding.app is not None
        self.hub = hub
        self.id = id_
        self.app = binding.app
        self.binding_path = binding.path
        self.extension = binding.extension
        self.conn: WsConnection | None = None
        # A socket of a direct binding (porch.http_server.wsdirect): the worker's own
        # descriptor, not served, while it is on offer (`token`) and once its owner
        # took it (claimed). The worker serves it (`conn`) if the owner does not.
        self.held: socket.socket | None = None
        self.token: bytes | None = None
        self.active = 0.0  # loop time of its last frame, either way
        self.opened = 0.0  # loop time
        self.fig: AppStats | None = None  # its owner's figures (None: not counting)
        self.push_bodies = PushBodies(id_)  # what each client frame is forwarded with

    @property
    def claimed(self) -> bool:
        """Its owner holds the socket (a direct binding): its frames never pass here."""
        return self.held is not None and self.token is None

    def close(self, code: int, reason: str | None, wait_s: float | None = None) -> None:
        conn = self.conn
        if conn is not None:
            if wait_s is None:
                conn.close(code, reason)
            else:
                conn.close(code, reason, wait_s)
        elif self.held is not None:  # nobody else will close it: the owner is gone, or never came
            self.hub.let_go(self, code, reason)

    # -- the connection's events ------------------------------------------------------

    def on_message(self, payload: bytes, binary: bool) -> None:
        hub = self.hub
        if self.id not in hub.channels:
            return
        fig = self.fig
        if fig is not None:
            fig.ws_in += 1
            fig.ws_bytes_in += len(payload)
        if self.extension and hub._ext_inbound(self, payload):
            return
        hub._push_to_app(self, WsType.Binary if binary else WsType.Text, payload)

    def on_ping(self, payload: bytes) -> None:  # answered by the connection; also told to the app
        if self.id in self.hub.channels:
            self.hub._push_to_app(self, WsType.Ping, payload)

    def on_pong(self, payload: bytes) -> None:
        if payload and self.id in self.hub.channels:
            self.hub._push_to_app(self, WsType.Pong, payload)

    def on_closed(self, code: int | None, reason: str | None) -> None:
        if self.id in self.hub.channels:
            # A limit the server closed for (a protocol error, a message too big) is
            # counted as such in the figures; anything else is the client's doing.
            error = self.conn.error_code if self.conn is not None else None
            why = "too_big" if error == 1009 else "protocol" if error is not None else "client"
            self.hub.client_closed(self, (reason or "") if code is not None else None, why)


class Admission:
    """An upgrade that passed every check: what opening it needs."""

    __slots__ = ("binding", "key", "offers", "open_path", "peer")

    def __init__(self, binding: WsBinding, open_path: str, peer: str | None, key: str,
                 offers: list[str] | None = None) -> None:
        self.binding = binding
        self.open_path = open_path
        self.peer = peer
        self.key = key
        self.offers = offers or []  # Sec-WebSocket-Extensions values, answered at open


def _refusal(status: int, message: str, *extra: tuple[str, str]) -> Refusal:
    headers: Headers = [TEXT, *extra]
    return status, headers, (message + "\n").encode()


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
        # A member worker hands the sockets it admits to the primary (docs/workers.md),
        # and checks its bindings are the database's before it admits one.
        self.handover: HandoverClient | None = None
        # Where the owners of direct bindings take their sockets (set by the worker
        # that holds WebSockets: the primary, or the only one).
        self.offers: Offers | None = None
        self.refresh: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        proc.on_undelivered(self._undelivered)
        proc.on_disconnect(self._kernel_lost)

    # ------------------------------------------------------------------ lifecycle

    def announce_lost(self) -> None:
        """After a crash of a previous worker: tell owners their sockets are gone. The
        records of workers still running (one finishing a restart) are theirs."""
        told = 0
        for record in self._state_dir.glob("ws-channels*.json"):
            owner = _record_pid(record.name)
            if owner is not None and (owner == os.getpid() or is_worker(owner)):
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

    def start_offering(self, path: Path) -> None:
        """Hand the sockets of direct bindings to their owners through `path` (and take
        the descriptors of held sockets from a worker this one replaces)."""
        self.offers = Offers(path, self._claimed, self._unclaimed, on_adopt=self._adopt, may_adopt=is_worker)

    async def hand_held_on(self) -> int:
        """This worker is replaced: its descriptors of sockets their owners hold go to
        the new worker (which then closes them 1001 should an owner die), once that
        one offers (it may still be starting). How many it took."""
        held = [c for c in self.channels.values() if c.claimed]
        if not held or self.offers is None:
            return 0
        run_dir = self.offers.path.parent
        give_up = self._loop.time() + ADOPT_WAIT_S
        while (path := successor_path(run_dir, os.getpid(), is_worker)) is None:
            if self._loop.time() >= give_up:
                log.info("no new worker took the %d WebSocket(s) their owners hold", len(held))
                return 0
            await asyncio.sleep(0.05)
        entries = [{"id": c.id, "app": c.app, "path": c.binding_path} for c in held]
        taken = hand_held(path, entries, [c.held for c in held if c.held is not None])
        log.info("handed %d WebSocket(s) their owners hold to the new worker", taken)
        return taken

    def _adopt(self, entries: list[Any], socks: list[socket.socket]) -> int:
        """Descriptors of held sockets from the worker this one replaces: kept as that
        worker kept them (for 1001 when an owner dies, and the count)."""
        adopted = 0
        for entry, sock in zip(entries, socks, strict=True):
            id_ = entry.get("id") if isinstance(entry, dict) else None
            app = entry.get("app") if isinstance(entry, dict) else None
            path = entry.get("path") if isinstance(entry, dict) else None
            if not (isinstance(id_, int) and isinstance(app, str) and isinstance(path, str)) \
                    or id_ in self.channels:
                sock.close()
                continue
            channel = Channel(self, id_, WsBinding(path, app, direct=True))
            channel.held = sock
            channel.opened = self._loop.time()
            figures = self.figures
            channel.fig = (figures.apps.get(app) or figures.stats(app)) if figures.enabled else None
            self.channels[id_] = channel
            if app not in self._watched:
                self._watched.add(app)
                self.proc.watch(app, self._owner_gone)
            adopted += 1
        return adopted

    def close_all(self, code: int = CLOSE_SERVICE_RESTART, reason: str = "server restarting") -> None:
        """This worker stops: its sockets are closed (owners told), except those
        their owners hold, which live on without it."""
        offers, self.offers = self.offers, None
        if offers is not None:
            offers.close()  # what waited is served here, and closed with the rest
        for channel in list(self.channels.values()):
            if channel.claimed:  # it lives on in its owner: not a close
                self._forget(channel, notify=False, why="server_restart", count=False)
                continue
            channel.close(code, reason)
            self._forget(channel, notify=True, why="server_restart")
        self._write_record()

    def _close_channels(self, channels: list[Channel], code: int, reason: str) -> None:
        why = "kernel_restart" if code == CLOSE_SERVICE_RESTART else "undeliverable"
        for channel in channels:
            channel.close(code, reason)
            self._forget(channel, notify=True, why=why)

    def _undelivered(self, error: SendError) -> None:
        """The kernel could not hand a frame (or an open) to its owner: close that
        owner's sockets (1011) rather than let frames vanish."""
        if not isinstance(error, Offline) or error.delivered:
            return
        mine = [c for c in self.channels.values() if c.app == error.target and not c.claimed]
        if mine:
            log.warning("%s cannot take WebSocket frames (%s): closed its %d socket(s) with 1011",
                        error.target, error.detail, len(mine))
            self._close_channels(mine, CLOSE_UNREACHABLE, "the app cannot take messages")

    def _kernel_lost(self) -> None:
        """Frames inside the kernel die with it: close the sockets that carried one
        lately (1012); the idle ones lose nothing and stay open."""
        since = min(self._loop.time(), self.proc.last_heard) - RECENT_S
        recent = [c for c in self.channels.values() if c.active >= since and not c.claimed]
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

    # ------------------------------------------------------------------ upgrades

    async def admit(self, ex: Exchange, version: str) -> Refusal | Admission:
        """Whether to open this upgrade: an Admission, or the answer refusing it. The
        checks, in order: a valid handshake; a worker being replaced (503); the socket
        limit (503); a binding (404); login (a secure subdomain's host 403, the cookie
        401); an extension's loopback peer (403); the Origin (403); last, as it costs a
        round trip to the kernel, the owner running (503)."""
        refusal = handshake_refusal(ex.method, version, ex.header)
        if refusal is not None:
            return refusal
        if self.refresh is not None:
            self.refresh()
        if self.draining:
            # A request on a kept-alive connection of a worker being replaced: the next
            # connection reaches the new worker.
            return _refusal(503, "this server process is being replaced; connect again",
                            ("Retry-After", "0"))
        if len(self.channels) >= self.settings.max_websockets:
            log.warning("too many open websockets (%d); refusing an upgrade", len(self.channels))
            return _refusal(503, "too many open websockets")
        path = normalize(ex.path)
        found = self.table.resolve_ws(path)
        if found is None or found[0].app is None:
            return _refusal(404, "no websocket bound here")
        binding = found[0]
        app = binding.app
        assert app is not None
        if binding.authenticated:
            app_scope = None
            if binding.secure_subdomain is not None:
                host = (ex.header("Host") or "").rsplit(":", 1)[0]
                if host.split(".", 1)[0] != binding.secure_subdomain:
                    return _refusal(403, "secure websocket must be opened on its subdomain")
                app_scope = app
            if not self.auth.authorized(ex.header("Cookie"), app_scope):
                return _refusal(401, "authentication required")
        if binding.extension:
            proxied = any(ex.header(h) is not None for h in PROXY_HEADERS)
            if not is_local(ex.peer_ip, proxied):
                return _refusal(403, "extension websockets are local only")
        origin = ex.header("Origin")
        if origin is not None and not self._origin_allowed(binding, origin, ex):
            return _refusal(403, "Cross origin websockets not allowed")
        peer = f"{ex.peer_ip}:{ex.peer_port}" if ex.peer_ip is not None else None
        rest = path.lstrip("/")
        # The path below the app's prefix; homepage's sockets report "/" (docs/kinode.md §2.6).
        rest = rest[len(app):] if rest.startswith(app) else ""
        open_path = "/" + rest.lstrip("/")
        # Last: it asks the kernel (one round trip), and only for an upgrade that
        # passed every other check.
        why = await self.owner_refusal(app)
        if why is not None:
            return _refusal(503, why)
        key = ex.header("Sec-WebSocket-Key")
        assert key is not None  # handshake_refusal checked it
        offers = extension_offers(ex.header_items()) if self.settings.ws_compression else []
        return Admission(binding, open_path, peer, key, offers)

    def _origin_allowed(self, binding: WsBinding, origin: str, ex: Exchange) -> bool:
        """Cross-origin upgrades only for bindings anyone may use; an authenticated one
        must come from the node's own origin, or a cookie-carrying page elsewhere could
        hijack it (cross-site WebSocket hijacking). So must an extension socket: its
        only check is a loopback peer, which any page in the owner's browser is, and
        a page there could pose as the extension (issue 9 item 8). A request without
        Origin is not a browser page (browsers always send one on an upgrade): it must
        present the cookie itself."""
        if not (binding.authenticated or binding.extension):
            return True
        if not cross_site(origin, ex.header("Sec-Fetch-Site"), ex.header("Host")):
            return True
        log.info("refused a websocket upgrade on %s from origin %r", ex.path, origin[:200])
        return False

    def open(self, sock: socket.socket, leftover: bytes, admission: Admission) -> Channel | None:
        """Answer 101 on the socket taken from the HTTP connection, and open the channel
        (its owner is told WebSocketOpen); None if the client is already gone."""
        binding = admission.binding
        if self.handover is not None:  # a member: the primary holds every WebSocket
            record = {"path": binding.path, "app": binding.app, "open_path": admission.open_path,
                      "peer": admission.peer, "key": admission.key, "extensions": admission.offers,
                      "leftover": leftover.decode("latin-1")}
            if self.handover.hand(sock, record):
                sock.close()  # the primary has its own descriptor now
            else:
                refuse(sock, "the server is restarting; connect again")
            return None
        if len(self.channels) >= self.settings.max_websockets:
            refuse(sock, "too many open websockets")
            return None
        if self.draining:  # replaced while the owner check was out: as if refused
            try:
                sock.send(closing_response(503, "this server process is being replaced; connect again",
                                           "Retry-After: 0\r\n"))
            except OSError:
                pass
            sock.close()
            return None
        while True:
            id_ = random.getrandbits(32)
            if id_ not in self.channels:
                break
        channel = Channel(self, id_, binding)
        channel.opened = self._loop.time()
        # The primary answers the offer, with its settings (a member only passed it on).
        deflate = negotiate(admission.offers) if self.settings.ws_compression and admission.offers else None
        greeting = switching_protocols(admission.key, deflate.header if deflate else None)
        offered: bytes | None = None
        if binding.direct and self.offers is not None:
            if not _write_all(sock, greeting):
                sock.close()
                return None
            channel.held = sock
            offered = channel.token = self.offers.offer(sock, {
                "channel_id": id_, "max_message": self.settings.ws_max_message_bytes,
                "send_queue_bytes": self.settings.ws_send_queue_bytes,
                "ping_interval_s": self.settings.ws_ping_interval_s, "leftover": leftover.decode("latin-1"),
                # The compression agreed in the 101: the owner agrees the same from them.
                "extensions": admission.offers if deflate is not None else []})
        else:
            conn = WsConnection(sock, channel, max_message=self.settings.ws_max_message_bytes,
                                ping_interval_s=self.settings.ws_ping_interval_s, greeting=greeting,
                                leftover=leftover, deflate=deflate)
            if conn.closed:
                return None
            channel.conn = conn
        channel.fig = self.figures.ws_opened(channel.app, binding.path or "/", id_, admission.peer)
        self.channels[id_] = channel
        app = channel.app
        if app not in self._watched:
            self._watched.add(app)
            self.proc.watch(app, self._owner_gone)
        self._schedule_record()
        opened = http_pb2.HttpServerRequest()
        opened.web_socket_open.path = admission.open_path
        opened.web_socket_open.channel_id = id_
        if admission.peer is not None:
            opened.web_socket_open.source_socket_addr = admission.peer
        if offered is not None and self.offers is not None:
            opened.web_socket_open.handoff_socket = str(self.offers.path)
            opened.web_socket_open.handoff_token = offered
        log.info("websocket %d opened on %s for %s%s", id_, binding.path or "/", app,
                 " (offered to it)" if offered is not None else "")
        self._to_app(app, opened, channel=channel)
        return channel

    def handed(self, sock: socket.socket, record: dict[str, Any]) -> None:
        """A socket a member worker admitted (porch.http_server.wshandover): open it
        here, if its binding is still what the member saw."""
        path = record.get("path")
        binding = self.table.ws.get(path) if isinstance(path, str) else None
        if binding is None or binding.app is None or binding.app != record.get("app"):
            refuse(sock, "no websocket bound here any more")
            return
        offers = record.get("extensions")
        try:
            admission = Admission(binding, str(record["open_path"]),
                                  None if record.get("peer") is None else str(record["peer"]),
                                  str(record["key"]),
                                  [str(o) for o in offers] if isinstance(offers, list) else [])
            leftover = str(record.get("leftover", "")).encode("latin-1")
        except (KeyError, UnicodeEncodeError):
            refuse(sock, "the server could not open this websocket")
            return
        self.open(sock, leftover, admission)

    # ------------------------------------------------------------------ direct bindings

    def _claimed(self, offer: Offer) -> None:
        channel = self.channels.get(int(offer.record["channel_id"]))
        if channel is None or channel.held is not offer.sock:  # forgotten meanwhile
            return
        channel.token = None
        log.info("websocket %d is held by %s", channel.id, channel.app)

    def _unclaimed(self, offer: Offer) -> None:
        """Its owner did not take the socket: it is served here, as on any binding."""
        channel = self.channels.get(int(offer.record["channel_id"]))
        if channel is None or channel.held is not offer.sock:
            offer.sock.close()
            return
        log.info("websocket %d: %s did not take it; served by the http-server", channel.id, channel.app)
        self._serve(channel, offer.record)

    def _serve(self, channel: Channel, record: dict[str, Any]) -> None:
        """Serve here a socket that was on offer (`record`: what the offer said)."""
        leftover = str(record["leftover"]).encode("latin-1")
        sock = channel.held
        assert sock is not None
        channel.held = channel.token = None
        offers = channel_offers(record)
        conn = WsConnection(sock, channel, max_message=self.settings.ws_max_message_bytes,
                            ping_interval_s=self.settings.ws_ping_interval_s, leftover=leftover,
                            deflate=negotiate(offers) if offers else None)
        if not conn.closed:
            channel.conn = conn

    def let_go(self, channel: Channel, code: int | None = None, reason: str | None = None) -> None:
        """Close the worker's descriptor of a socket of a direct binding; with `code`,
        the client is sent that close frame first (nobody else will: its owner died,
        or never took it)."""
        sock, channel.held = channel.held, None
        if sock is None:
            return
        if channel.token is not None:
            if self.offers is not None:
                self.offers.withdraw(channel.token)
            channel.token = None
        if code is not None:
            try:
                sock.setblocking(False)
                sock.send(frame(OP_CLOSE, close_payload(code, reason)))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        sock.close()

    # ------------------------------------------------------------------ forgetting

    def _forget(self, channel: Channel, *, notify: bool, why: str, close_reason: str | None = None,
                count: bool = True) -> None:
        """`why`: the reason the figures count the close under (unless not `count`)."""
        if self.channels.pop(channel.id, None) is None:
            return
        if channel.held is not None:
            self.let_go(channel)
        if count:
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
            channel.close(CLOSE_GOING_AWAY, "the app went away")
            self._forget(channel, notify=False, why="owner_died")
        if mine:
            log.info("%s went away: closed its %d WebSocket(s)", app, len(mine))

    def binding_changed(self, path: str) -> None:
        """A WebSocket binding was replaced or unbound: close what was opened on it."""
        current = self.table.ws.get(path)
        for channel in [c for c in self.channels.values() if c.binding_path == path]:
            if current is None or current.app != channel.app:
                if not channel.claimed:  # else its owner closes it when told WebSocketClose
                    channel.close(CLOSE_GOING_AWAY, "unbound")
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
        try:
            self.proc.send_request(channel.app, channel.push_bodies[kind], blob=Blob(payload),
                                   report_undelivered=True)
        except Offline:
            self._cannot_deliver(channel)
            return
        channel.active = self._loop.time()

    def _ext_inbound(self, channel: Channel, payload: bytes) -> bool:
        """An extension's frame (docs/kinode.md §1.9). True if it was handled (or dropped)."""
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
        try:
            body: bytes | None = bytes(blob) if isinstance(blob, list | bytes) else b""
        except (TypeError, ValueError):  # a list of other than byte values
            body = None
        # The id is the request's on the kernel: it must fit a message id (u64).
        if (not isinstance(id_, int) or not 0 <= id_ < 1 << 64 or kind not in ("Request", "Response")
                or body is None):
            log.info("extension on websocket %d sent a malformed WebSocketExtPushData", channel.id)
            return True
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
        if channel.claimed:
            return actions.err(ErrorKind.MalformedRequest, f"channel {channel_id} is held by {msg.source} "
                               "itself: push on it there (porch.http.server.send_ws_push)")
        if channel.token is not None and self.offers is not None:  # on offer, but pushed to here
            offer = self.offers.withdraw(channel.token)
            if offer is not None:
                self._serve(channel, offer.record)
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
            return None  # no ack: the extension answers (docs/kinode.md §1.9)
        if kind == WsType.Text:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:  # a text frame must be UTF-8: as Kinode's lossy conversion
                data = data.decode("utf-8", "replace").encode("utf-8")
            self._send(channel, data, binary=False)
        elif kind == WsType.Binary:
            self._send(channel, data, binary=True)
        elif kind in (WsType.Ping, WsType.Pong):
            if len(data) > 125:
                return actions.err(ErrorKind.WsPingPongTooLong, f"{len(data)} bytes (at most 125)")
            conn = channel.conn
            if conn is not None:
                if kind == WsType.Ping:
                    conn.ping(data)
                else:
                    conn.pong(data)
        else:
            return actions.err(ErrorKind.MalformedRequest, "unknown message type")
        return actions.ok()

    def on_counts(self, msg: Message, which: str, action: http_pb2.HttpServerAction) -> bytes | None:
        """What went over sockets their owner holds (porch.process.held), for the
        figures; only the owner's own sockets count."""
        for entry in action.web_socket_counts.channels:
            channel = self.channels.get(entry.channel_id)
            if channel is None or channel.app != msg.source or not channel.claimed:
                continue
            fig = channel.fig
            if fig is not None:
                fig.ws_in += entry.messages_in
                fig.ws_out += entry.messages_out
                fig.ws_bytes_in += entry.bytes_in
                fig.ws_bytes_out += entry.bytes_out
            if entry.closed:  # its last report: counted under the owner's reason (one we know)
                why = entry.closed if entry.closed in HELD_CLOSE_REASONS else "app"
                self._forget(channel, notify=False, why=why)
        return None

    def on_close(self, msg: Message, which: str, action: http_pb2.HttpServerAction) -> bytes | None:
        return self._close(msg.source, action.web_socket_close.channel_id, None)

    def _close(self, source: str, channel_id: int, reason: str | None) -> bytes:
        channel = self.channels.get(channel_id)
        if channel is None:
            return actions.ok()  # Kinode: closing an unknown channel is not an error
        if channel.app != source:
            return actions.err(ErrorKind.WsChannelNotFound, f"channel {channel_id} is not {source}'s")
        if channel.claimed:  # its owner closed it (or its client did): it has been told
            self._forget(channel, notify=False, why="app")
            return actions.ok()
        channel.close(1000, reason or None)
        self._forget(channel, notify=True, why="app")
        return actions.ok()

    def _send(self, channel: Channel, data: bytes, binary: bool) -> None:
        """Queue one frame; a client whose unsent bytes pass the limit is closed (1008).

        The connection writes to the socket at once when it can, so its unsent bytes
        are exactly what this client has not taken yet (frames as sent: compressed,
        when agreed). A client that does not read will not read the close frame
        either: its socket is closed 1 s after it."""
        conn = channel.conn
        if conn is None:
            return
        wire = conn.encode(data, binary)
        queued = conn.unsent_bytes()
        if queued + len(wire) > self.settings.ws_send_queue_bytes:
            log.warning("websocket %d (%s): client too slow (%d bytes unsent); closing",
                        channel.id, channel.app, queued)
            conn.close(CLOSE_TOO_SLOW, "too slow: send queue full", 1.0)
            self._forget(channel, notify=True, why="slow_reader")
            return
        fig = channel.fig
        if fig is not None:
            fig.ws_out += 1
            fig.ws_bytes_out += len(data)
        conn.send_encoded(wire)

    # ------------------------------------------------------------------ record

    def _schedule_record(self) -> None:
        if not self._record_scheduled:
            self._record_scheduled = True
            asyncio.get_running_loop().call_later(0.5, self._write_record)

    def _write_record(self) -> None:
        self._record_scheduled = False
        # A socket its owner holds is not lost with this worker.
        entries = [{"id": c.id, "app": c.app} for c in self.channels.values() if not c.claimed]
        try:
            if entries:
                write_atomic(self._record, json.dumps(entries).encode())
            else:
                self._record.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot record open WebSockets: %s", exc)


def channel_offers(record: dict[str, Any]) -> list[str]:
    """The permessage-deflate offers a hand-over record carries (those the 101 agreed to)."""
    offers = record.get("extensions")
    return [str(o) for o in offers] if isinstance(offers, list) else []


def _write_all(sock: socket.socket, data: bytes) -> bool:
    """Write a short answer (the 101) on a fresh socket: it fits in its buffer."""
    try:
        return sock.send(data) == len(data)
    except OSError:
        return False


def _record_pid(name: str) -> int | None:
    """The worker pid in a record's name (ws-channels.<pid>.json); None for the
    single record of earlier versions (ws-channels.json)."""
    middle = name[len("ws-channels"):-len(".json")].lstrip(".")
    return int(middle) if middle.isdigit() else None

