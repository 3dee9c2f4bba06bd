"""Outgoing WebSocket connections with Tornado's client, on the service's asyncio loop.

docs/kinode.md §6.5 with its defects fixed (D12, docs/kinode.md §9):
- each handshake runs as its own task and is answered when it completes, so a slow
  remote never delays other actions (Kinode awaits it inside its only receive loop);
- connections are keyed by (process, channel id) with generations (`channels`), so a
  re-opened channel is never removed by its predecessor's close;
- frames that arrive between the handshake and the entry being installed are kept and
  delivered after the WebSocketAck, in order, rather than lost;
- Ping/Pong carry their payload both ways (Kinode sends and delivers them empty);
- when the opener's registration ends (the kernel tells us: `AsyncProcess.watch`), its
  connections are closed (Kinode leaves them open, talking to no one);
- the open connections are written down (`record`), so that after a kill -9 the next
  http-client tells their openers `WebSocketClose`; a clean stop tells them at once;
- writes are bounded: a remote that stops reading lets at most `ws_send_queue_bytes`
  pile up here, then its connection is closed (1008) and the opener told, while the
  process's other connections carry on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tornado import httpclient, httputil
from tornado.netutil import DefaultLoopResolver, Resolver
from tornado.websocket import WebSocketClientConnection

from porch.http_client.channels import ChannelTable, Key
from porch.http_client.figures import ClientFigures
from porch.http_client.headers import request_headers
from porch.http_client.policy import OutgoingPolicy
from porch.http_client.record import Opened, WsRecord
from porch.http_client.results import WS_ACK, ClientFailure, failure, ws_close, ws_push
from porch.http_client.validate import parse_absolute_url
from porch.process.message import Blob, Message
from porch.wire import http_pb2

log = logging.getLogger("porch.http_client")

WsType = http_pb2.WsMessageType
TEXT_MIME = "text/plain"
BINARY_MIME = "application/octet-stream"
MAX_CONTROL_PAYLOAD = 125  # RFC 6455 5.5
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_SLOW = 1008  # policy violation: what the http-server sends a client too slow
ABORT_AFTER_S = 1.0  # a remote that does not read will not read our close frame either


@dataclass(eq=False)
class Link:
    """One connection (or handshake) and what its frames need to reach the opener."""

    key: Key
    generation: int
    open_id: int
    url: str
    conn: WebSocketClientConnection | None = None
    installed: bool = False
    ended: bool = False
    denied: str | None = None
    early: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def process(self) -> str:
        return self.key[0]

    @property
    def channel_id(self) -> int:
        return self.key[1]


class _Connection(WebSocketClientConnection):
    """Tornado's client connection, reporting pings and pongs (it only auto-answers)."""

    def __init__(self, request: httpclient.HTTPRequest, link: Link,
                 on_frame: Callable[[Link, int, bytes | None], None],
                 max_message_size: int, resolver: Resolver | None) -> None:
        self._link = link
        self._on_frame = on_frame

        def on_message(message: str | bytes | None) -> None:
            if message is None:
                on_frame(link, 0, None)
            elif isinstance(message, str):
                on_frame(link, WsType.Text, message.encode())
            else:
                on_frame(link, WsType.Binary, message)

        super().__init__(request, on_message_callback=on_message,
                         max_message_size=max_message_size, resolver=resolver)

    def on_ping(self, data: bytes) -> None:
        self._on_frame(self._link, WsType.Ping, data)

    def on_pong(self, data: bytes) -> None:
        self._on_frame(self._link, WsType.Pong, data)


class _PolicyResolver(Resolver):
    """Resolves as Tornado does, then refuses addresses the node's policy forbids; the
    connection is made to the addresses returned here, so what is checked is used."""

    def initialize(self, policy: OutgoingPolicy, link: Link) -> None:
        self.policy = policy
        self.link = link
        self.inner = DefaultLoopResolver()

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
                      ) -> list[tuple[int, Any]]:
        results: list[tuple[int, Any]] = await self.inner.resolve(host, port, family)
        reason = self.policy.check(host, [str(addr[0]) for _, addr in results])
        if reason is not None:
            self.link.denied = reason
            raise OSError(f"refused by the node's outgoing policy: {reason}")
        return results


def _ignore_result(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a write to a closed socket is not worth a log line


class WsClients:
    """The WebSocketOpen / Push / Close actions and the frames coming back."""

    def __init__(
        self,
        respond: Callable[[Message, bytes], None],
        send: Callable[[str, bytes, Blob | None, int], bool],
        watch: Callable[[str, Callable[[str], None]], None],
        *,
        policy: OutgoingPolicy,
        max_connections: int,
        max_message_bytes: int,
        send_queue_bytes: int,
        deadline_s: Callable[[Message], float],
        record: WsRecord | None = None,
    ) -> None:
        self._respond = respond
        self._send = send  # True if the kernel took the message
        self._watch = watch
        self.policy = policy
        self.max_connections = max_connections
        self.max_message_bytes = max_message_bytes
        self.send_queue_bytes = send_queue_bytes
        self._deadline_s = deadline_s
        self.record = record
        self.table: ChannelTable[Link] = ChannelTable()
        # Counts frames each way for the node's figures (None: metrics off).
        self.figures: ClientFigures | None = None
        self._watched: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ actions

    def handle(self, msg: Message, action: http_pb2.HttpClientAction) -> None:
        which = action.WhichOneof("action")
        try:
            if which == "web_socket_open":
                self.open(msg, action.web_socket_open)
                return
            if which == "web_socket_push":
                self.push(msg, action.web_socket_push)
            else:
                self.close(msg, action.web_socket_close.channel_id)
        except ClientFailure as exc:
            self._respond(msg, failure(exc))
            return
        self._respond(msg, WS_ACK)  # always sent, as Kinode does

    def open(self, msg: Message, op: http_pb2.HttpClientAction.WebSocketOpen) -> None:
        url = op.url
        parsed = parse_absolute_url(url)
        if parsed is None:
            raise ClientFailure("BadUrl", url=url)
        if parsed.scheme not in ("ws", "wss"):
            raise ClientFailure("WsOpenFailed", url=url, message="not a ws:// or wss:// URL")
        reason = self.policy.check(parsed.host)
        if reason is not None:
            log.warning("denied WebSocket open by %s to %s: %s", msg.reply_to, url, reason)
            raise ClientFailure("Denied", url=url, message=reason)
        if len(self.table) >= self.max_connections:
            log.warning("refused WebSocket open by %s to %s: %d connections open (max_ws_connections)",
                        msg.reply_to, url, len(self.table))
            raise ClientFailure("WsOpenFailed", url=url,
                                message=f"too many open WebSocket connections (max {self.max_connections})")
        key = (msg.reply_to, op.channel_id)
        headers = httputil.HTTPHeaders()
        for name, value in request_headers((h.name, h.value) for h in op.headers)[0]:
            headers.add(name, value)
        link = Link(key, self.table.begin(key), msg.id, url)
        self._ensure_watch(key[0])
        self._spawn(self._open(msg, link, headers))

    async def _open(self, msg: Message, link: Link, headers: httputil.HTTPHeaders) -> None:
        timeout = max(0.001, self._deadline_s(msg))
        request = httpclient.HTTPRequest(link.url, headers=headers, connect_timeout=timeout,
                                         request_timeout=timeout)
        # What websocket_connect does: fill in the defaults _HTTPConnection reads.
        request = httpclient._RequestProxy(request, httpclient.HTTPRequest._DEFAULTS)  # type: ignore[assignment]
        resolver = _PolicyResolver(policy=self.policy, link=link) if self.policy.needs_addresses else None
        conn = _Connection(request, link, self._frame, self.max_message_bytes, resolver)
        try:
            await conn.connect_future
        except Exception as exc:
            self.table.fail(link.key)
            if link.denied is not None:
                log.warning("denied WebSocket open by %s to %s: %s", link.process, link.url, link.denied)
                self._respond(msg, failure(ClientFailure("Denied", url=link.url, message=link.denied)))
            else:
                log.info("WebSocket open by %s (channel %d) to %s failed: %s",
                         link.process, link.channel_id, link.url, exc)
                self._respond(msg, failure(ClientFailure("WsOpenFailed", url=link.url, message=str(exc))))
            return
        link.conn = conn
        entry, replaced = self.table.complete(link.key, link.generation, link, link.open_id, link.url)
        if entry is None:
            conn.close()
            log.info("WebSocket to %s for %s channel %d dropped: closed, re-opened or the process "
                     "exited during the handshake", link.url, link.process, link.channel_id)
            self._respond(msg, failure(ClientFailure(
                "WsOpenFailed", url=link.url,
                message="the channel was closed or re-opened before the handshake completed")))
            return
        if replaced is not None and replaced.conn.conn is not None:
            replaced.conn.conn.close()  # as Kinode: the old one goes without a WebSocketClose
        self._changed()
        self._respond(msg, WS_ACK)
        log.info("WebSocket open: %s channel %d -> %s", link.process, link.channel_id, link.url)
        self._activate(link)

    def _activate(self, link: Link) -> None:
        """The entry is installed and acknowledged: deliver what came before, in order."""
        link.installed = True
        early, link.early = link.early, []
        for mtype, data in early:
            self._frame(link, mtype, data)
        if link.ended:
            self._frame(link, 0, None)

    def push(self, msg: Message, op: http_pb2.HttpClientAction.WebSocketPush) -> None:
        key = (msg.reply_to, op.channel_id)
        entry = self.table.get(key)
        if entry is None or entry.conn.conn is None:
            raise ClientFailure("WsPushUnknownChannel", channel_id=op.channel_id)
        conn = entry.conn.conn
        mtype = op.message_type
        data = msg.blob.bytes if msg.blob is not None else None
        if self.figures is not None:
            self.figures.frame(key[0], "out")
        try:
            if mtype == WsType.Text:
                if data is None:
                    raise ClientFailure("WsPushNoBlob")
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise ClientFailure("WsPushBadText") from None
                self._check_queue(entry.conn, conn, len(data))
                conn.write_message(text).add_done_callback(_ignore_result)
            elif mtype == WsType.Binary:
                if data is None:
                    raise ClientFailure("WsPushNoBlob")
                self._check_queue(entry.conn, conn, len(data))
                conn.write_message(data, binary=True).add_done_callback(_ignore_result)
            elif mtype in (WsType.Ping, WsType.Pong):
                payload = data or b""
                if len(payload) > MAX_CONTROL_PAYLOAD:
                    raise ClientFailure("BuildRequestFailed",
                                        message=f"a {WsType.Name(mtype)} payload is at most 125 bytes")
                self._check_queue(entry.conn, conn, len(payload))
                if mtype == WsType.Ping:
                    conn.ping(payload)
                elif conn.protocol is not None:
                    # Tornado has no public unsolicited pong (RFC 6455 allows one).
                    conn.protocol._write_frame(True, 0xA, payload)  # type: ignore[attr-defined]
            elif mtype == WsType.Close:
                code, reason = _close_payload(data)
                conn.close(code, reason)  # the entry stays until the close completes (Kinode)
            else:
                raise ClientFailure("MalformedRequest")
        except ClientFailure:
            raise
        except Exception as exc:  # the socket is closing: ignored, as Kinode does
            log.debug("push to %s channel %d failed: %s", key[0], key[1], exc)

    def _check_queue(self, link: Link, conn: WebSocketClientConnection, size: int) -> None:
        """Before a write: if the remote has left so much unsent that this frame would
        take the queue past `send_queue_bytes`, close the connection (1008), tell the
        opener WebSocketClose, and fail the push.

        A frame larger than the cap still goes out when nothing is waiting: the queue is
        then bounded by the cap plus one message, which the process already had to pass
        through the kernel whole."""
        queued = _unsent_bytes(conn)
        if not queued or queued + size <= self.send_queue_bytes:
            return
        log.warning("WebSocket %s channel %d (%s): the remote is not reading (%d bytes unsent, "
                    "ws_send_queue_bytes %d); closing it (1008)", link.process, link.channel_id,
                    link.url, queued, self.send_queue_bytes)
        self.table.remove_if_current(link.key, link.generation)
        self._changed()
        protocol = conn.protocol  # close() forgets it; the abort below needs it
        conn.close(CLOSE_TOO_SLOW, "too slow: send queue full")
        abort = getattr(protocol, "_abort", None)
        if abort is not None:
            asyncio.get_running_loop().call_later(ABORT_AFTER_S, abort)
        self._send(link.process, ws_close(link.channel_id), None, link.open_id)
        # The push is answered with ExecuteRequestFailed, Kinode's variant for an action
        # that passed every check yet failed when carried out on the connection; the
        # Ws* variants each name a mistake of the caller's (WsPushUnknownChannel would
        # claim the channel never existed), and this is the remote's doing. The opener
        # learns the channel is gone from the WebSocketClose just sent.
        raise ClientFailure("ExecuteRequestFailed", message=(
            f"WebSocket channel {link.channel_id} closed: the remote stopped reading and "
            f"{queued} bytes were waiting (ws_send_queue_bytes = {self.send_queue_bytes})"))

    def close(self, msg: Message, channel_id: int) -> None:
        key = (msg.reply_to, channel_id)
        entry, cancelled = self.table.remove(key)
        if entry is None and not cancelled:
            raise ClientFailure("WsCloseFailed", channel_id=channel_id)
        if entry is not None:
            self._changed()
        if entry is not None and entry.conn.conn is not None:
            entry.conn.conn.close()
            log.info("WebSocket closed by %s: channel %d (%s)", key[0], channel_id, entry.url)

    # ------------------------------------------------------------------ frames in

    def _frame(self, link: Link, mtype: int, data: bytes | None) -> None:
        """A frame (mtype != 0) or the end of the connection (data None)."""
        if not link.installed:
            if data is None:
                link.ended = True
            else:
                link.early.append((mtype, data))
            return
        if data is None:
            if self.table.remove_if_current(link.key, link.generation) is not None:
                self._changed()
                code = link.conn.close_code if link.conn is not None else None
                log.info("WebSocket closed by the remote: %s channel %d (%s, code %s)",
                         link.process, link.channel_id, link.url, code)
                self._send(link.process, ws_close(link.channel_id), None, link.open_id)
            return
        if not self.table.is_current(link.key, link.generation):
            return  # closed or replaced: late frames are dropped (as Kinode)
        mime = TEXT_MIME if mtype == WsType.Text else BINARY_MIME
        if self.figures is not None:
            self.figures.frame(link.process, "in")
        self._send(link.process, ws_push(link.channel_id, mtype), Blob(data, mime), link.open_id)

    # ------------------------------------------------------------------ lifecycle

    def _ensure_watch(self, process: str) -> None:
        if process not in self._watched:
            self._watched.add(process)
            self._watch(process, self._process_exited)

    def _process_exited(self, process: str) -> None:
        self._watched.discard(process)
        removed = self.table.remove_process(process)
        for entry in removed:
            if entry.conn.conn is not None:
                entry.conn.conn.close()
        if removed:
            self._changed()
            log.info("%s exited: closed its %d WebSocket connection(s)", process, len(removed))

    def close_all(self) -> None:
        """The service is stopping: close every connection and tell its opener, as a
        remote close would. An opener the kernel could not take the message for (it is
        away) stays in the record, for the next start to tell."""
        untold: list[Opened] = []
        for entry in self.table.entries():
            self.table.remove(entry.key)
            if entry.conn.conn is not None:
                entry.conn.conn.close(CLOSE_GOING_AWAY, "http-client stopping")
            if not self._send(entry.key[0], ws_close(entry.key[1]), None, entry.open_id):
                untold.append(Opened(entry.key[0], entry.key[1], entry.open_id))
        for task in self._tasks:
            task.cancel()
        if self.record is not None:
            self.record.write_now(untold)

    def announce_lost(self) -> int:
        """At start, before serving: tell the openers of the connections the previous
        life of the service left open (it was killed) that they are gone. Returns how
        many were announced."""
        if self.record is None:
            return 0
        lost = self.record.take()
        for opened in lost:
            self._send(opened.process, ws_close(opened.channel_id), None, opened.open_id)
        if lost:
            log.info("told openers of %d WebSocket connection(s) lost with the previous "
                     "http-client: WebSocketClose sent", len(lost))
        return len(lost)

    def opened(self) -> list[Opened]:
        return [Opened(e.key[0], e.key[1], e.open_id) for e in self.table.entries()]

    def _changed(self) -> None:
        if self.record is not None:
            self.record.schedule(self.opened)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _unsent_bytes(conn: WebSocketClientConnection) -> int:
    """Bytes written to the connection that the remote has not taken yet. Tornado writes
    to the socket at once when it can and keeps the rest in the IOStream's private
    _write_buffer; read defensively, as the http-server does (its test and ours fail if
    a Tornado upgrade renames it)."""
    stream = getattr(conn.protocol, "stream", None)
    buffer = getattr(stream, "_write_buffer", None)
    try:
        return len(buffer) if buffer is not None else 0
    except TypeError:
        return 0


def _close_payload(data: bytes | None) -> tuple[int | None, str | None]:
    """A Close push's blob read as a close frame's payload: 2-byte code, UTF-8 reason."""
    if data is None or len(data) < 2:
        return None, None
    (code,) = struct.unpack(">H", data[:2])
    if not 1000 <= code <= 4999:
        return None, None
    return code, data[2:].decode("utf-8", errors="replace") or None

