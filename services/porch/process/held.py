"""WebSockets a process holds itself (docs/websockets.md).

On a binding made with `direct` the http-server's worker checks and answers each
upgrade as usual, then offers the client's socket to the owner: its WebSocketOpen
names the worker's hand-over socket and a one-time token. The stub takes the socket
before the app sees the open (`HeldSockets.offered`) and from then on speaks the
frames itself (porch.ws.conn, on the process's own loop): a client's message reaches
the app as the same WebSocketPush message it would have got through the kernel, and
the app's pushes and closes (porch.http.server.send_ws_push, close_ws) are written to
the socket. Neither the worker nor the kernel wakes up for a frame.

The worker keeps its own descriptor of the socket, unused, so that it can still
close the socket with 1001 when the process dies; the process tells it when a socket
ends (a WebSocketClose action, as an app closing it would send). The limits are the
worker's, sent with the socket: the largest message (1009), the send queue (a client
that does not take what is pushed is closed 1008) and the ping interval.

A socket that cannot be taken (the worker went away, it already gave up waiting) is
left to the worker, which then serves it as on any binding: the app sees no
difference but speed.

The same hand-over brings the direct HTTP links workers offer for `direct` HTTP
bindings (`HeldSockets.link_offered`, porch.process.direct, docs/direct.md). Offers
are looked for only in what an app (not a node service) gets from the http-server,
and only where a descriptor can come (a process on the node's machine).
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable

from porch.address import HTTP_SERVER
from porch.process.direct import LinkEnd
from porch.process.message import Blob, Message
from porch.wire import http_pb2
from porch.ws.conn import Loop, WsConnection
from porch.ws.deflate import negotiate

log = logging.getLogger("porch.process")

# The first byte of an HttpServerRequest whose oneof is web_socket_open (field 2,
# length-delimited): the one cheap test that spares every other message a parse.
OPEN_TAG_BYTE = b"\x12"
CLOSE_TAG_BYTE = b"\x22"  # ... whose oneof is web_socket_close (field 4)
LINK_TAG_BYTE = b"\x2a"  # ... whose oneof is direct_link (field 5): for the stub only
CLAIM_TIMEOUT_S = 2.0
MAX_RECORD = 256 * 1024
REPORT_S = 1.0  # counts go to the worker at most this often (docs/metrics.md)
MAX_UNTOLD = 10_000  # ends kept for a worker that cannot be told (the kernel away)
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_SLOW = 1008
WsType = http_pb2.WsMessageType


class PushBodies(dict[int, bytes]):
    """The WebSocketPush{channel_id, message_type} bodies of one socket, built once per
    type: every client message reaches its owner with one of these (the payload is
    the blob), from the worker (porch.http_server.websocket) or from the stub here."""

    __slots__ = ("channel_id",)

    def __init__(self, channel_id: int) -> None:
        super().__init__()
        self.channel_id = channel_id

    def __missing__(self, kind: int) -> bytes:
        push = http_pb2.HttpServerRequest()
        push.web_socket_push.channel_id = self.channel_id
        push.web_socket_push.message_type = kind  # type: ignore[assignment]
        body = self[kind] = push.SerializeToString()
        return body


class ClaimFailed(Exception):
    """The worker did not hand the socket over (it says why)."""


def claim(path: str, token: bytes, timeout: float = CLAIM_TIMEOUT_S) -> tuple[socket.socket, dict[str, object]]:
    """Ask the worker at `path` for the socket `token` names: the socket and its
    record (channel_id, limits, the bytes the client sent after its handshake)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        conn.send(token)
        fds = array.array("i")
        data, ancdata, _, _ = conn.recvmsg(MAX_RECORD, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    try:
        record = json.loads(data) if data else {}
        if not isinstance(record, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        # With a socket, the worker counts it as taken: the caller must end it
        # (a record without its fields does).
        record = {} if len(fds) == 1 else {"refused": f"unreadable answer ({exc})"}
    if len(fds) != 1 or "refused" in record:
        for fd in fds:
            socket.close(fd)
        raise ClaimFailed(str(record.get("refused", "no socket came")))
    return socket.socket(fileno=fds[0]), record


class HeldChannel:
    """One socket the process holds: hears its connection (porch.ws.conn.Events)."""

    __slots__ = ("bytes_in", "bytes_out", "conn", "held", "id", "messages_in", "messages_out", "push_bodies",
                 "send_queue_bytes", "told", "why")

    def __init__(self, held: HeldSockets, id_: int, send_queue_bytes: int) -> None:
        self.held = held
        self.id = id_
        self.conn: WsConnection | None = None
        self.send_queue_bytes = send_queue_bytes
        self.push_bodies = PushBodies(id_)
        self.told = False  # the app was told WebSocketClose already (the worker said it)
        self.why: str | None = None  # this side closed it: "app", "slow_reader" (the figures' reasons)
        # Since the last report to the worker (the node's figures).
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0

    def on_message(self, payload: bytes, binary: bool) -> None:
        self.messages_in += 1
        self.bytes_in += len(payload)
        held = self.held
        if not held.report_due:
            held.count_soon()
        held.incoming(self, WsType.Binary if binary else WsType.Text, payload)

    def on_ping(self, payload: bytes) -> None:
        self.held.incoming(self, WsType.Ping, payload)

    def on_pong(self, payload: bytes) -> None:
        if payload:
            self.held.incoming(self, WsType.Pong, payload)

    def on_closed(self, code: int | None, reason: str | None) -> None:
        if self.why is None:  # as the worker counts the closes it sees
            error = self.conn.error_code if self.conn is not None else None
            self.why = "too_big" if error == 1009 else "protocol" if error is not None else "client"
        self.held.ended(self, reason if code is not None else None)


class HeldSockets:
    """The sockets of one process. `deliver(msg)` files a message for the app as if
    the kernel had brought it; `tell_worker(body)` sends an action to the http-server
    (fire and forget)."""

    def __init__(self, our: str, loop: Loop, deliver: Callable[[Message], None],
                 tell_worker: Callable[[bytes], object],
                 lock: threading.RLock | contextlib.nullcontext[None] | None = None,
                 blocking: bool = False) -> None:
        """`lock`: held by the loop while it runs the sockets' callbacks (a blocking
        process's: a push from another of its threads waits for it). `blocking`: the
        process runs no loop of its own between its calls into the stub."""
        self.blocking = blocking
        self.our = our
        self.loop = loop
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.deliver = deliver
        self.tell_worker = tell_worker
        self.channels: dict[int, HeldChannel] = {}
        self.links: set[LinkEnd] = set()  # direct HTTP links, one per worker (docs/direct.md)
        self.report_due = False  # a report of the counts is scheduled
        # Ends the worker could not be told yet (the kernel was away), in order: it
        # holds their descriptors until told. Retried every REPORT_S.
        self.untold: list[bytes] = []

    # ------------------------------------------------------------------ from the worker

    def offered(self, msg: Message) -> None:
        """A WebSocketOpen from the http-server: take the socket it offers, if any.
        The app is given the open after this returns, as always."""
        try:
            opened = http_pb2.HttpServerRequest.FromString(msg.body).web_socket_open
        except Exception:
            return
        if not opened.handoff_socket:
            return
        try:
            sock, record = claim(opened.handoff_socket, opened.handoff_token)
        except TimeoutError:
            # The worker may still answer, and count the socket as taken: end it, so
            # that no client is left connected to nobody.
            log.warning("%s: the http-server did not hand WebSocket %d over in time; closing it",
                        self.our, opened.channel_id)
            self._abandon(opened.channel_id)
            return
        except (OSError, ClaimFailed) as exc:
            log.info("%s: WebSocket %d stays with the http-server (%s)", self.our, opened.channel_id, exc)
            return
        try:
            channel_id = int(record.get("channel_id", -1))  # type: ignore[call-overload]
            if channel_id != opened.channel_id:
                raise ValueError(f"channel {channel_id}, not {opened.channel_id}")
            max_message = int(record["max_message"])  # type: ignore[call-overload]
            send_queue = int(record["send_queue_bytes"])  # type: ignore[call-overload]
            ping_s = float(record.get("ping_interval_s", 0.0))  # type: ignore[arg-type]
            leftover = str(record.get("leftover", "")).encode("latin-1")
            offers = record.get("extensions") or []
            if not isinstance(offers, list):
                raise TypeError("extensions is not a list")
            # The worker's 101 agreed to compression from these offers: the same rule
            # on the same offers agrees the same here.
            deflate = negotiate([str(o) for o in offers]) if offers else None
        except (KeyError, TypeError, ValueError, UnicodeEncodeError) as exc:
            log.warning("%s: a WebSocket hand-over record was unreadable (%s); closing it", self.our, exc)
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the worker keeps a descriptor: close() alone ends nothing
            except OSError:
                pass
            sock.close()
            self._abandon(opened.channel_id)
            return
        channel = HeldChannel(self, channel_id, send_queue)
        self.channels[channel_id] = channel
        channel.conn = WsConnection(sock, channel, max_message=max_message, ping_interval_s=ping_s,
                                    leftover=leftover, loop=self.loop, deflate=deflate)
        log.info("%s: holds WebSocket %d itself", self.our, channel_id)

    def _abandon(self, channel_id: int) -> None:
        """A socket offered to this process that it could not take: the worker is told
        it ended (it lets go of it), and so is the app, after the open it is about to get."""
        closed = http_pb2.HttpServerRequest()
        closed.web_socket_close.channel_id = channel_id
        body = closed.SerializeToString()
        self.loop.call_soon(self.deliver, Message(0, HTTP_SERVER, self.our, True, body))
        action = http_pb2.HttpServerAction()
        action.web_socket_close.channel_id = channel_id
        self._tell(action.SerializeToString(), keep=True)

    def link_offered(self, msg: Message) -> None:
        """A DirectLink offer from a worker: take the link (requests then come on it)."""
        try:
            offer = http_pb2.HttpServerRequest.FromString(msg.body).direct_link
        except Exception:
            return
        if not offer.handoff_socket:
            return
        try:
            sock, _ = claim(offer.handoff_socket, offer.handoff_token)
        except (OSError, ClaimFailed) as exc:
            log.info("%s: no direct link from the http-server (%s); its requests come through the "
                     "kernel", self.our, exc)
            return
        self.links.add(LinkEnd(self.our, sock, self.loop, self.deliver, self.links.discard,
                               blocking_writes=self.blocking))
        log.info("%s: took a direct link from the http-server", self.our)

    def told(self, msg: Message) -> None:
        """Another message from the http-server: a WebSocketClose of a socket held
        here (its path was unbound) closes it, and the app is not told twice."""
        if msg.body[:1] != CLOSE_TAG_BYTE or not self.channels:
            return
        try:
            channel_id = http_pb2.HttpServerRequest.FromString(msg.body).web_socket_close.channel_id
        except Exception:
            return
        channel = self.channels.get(channel_id)
        if channel is not None and channel.conn is not None:
            channel.told = True
            channel.conn.close(CLOSE_GOING_AWAY, "unbound")

    # ------------------------------------------------------------------ from the app

    def holds(self, channel_id: int) -> bool:
        return channel_id in self.channels

    def push(self, channel_id: int, kind: int, data: bytes) -> bool:
        """Write one frame of the app's; False if this process does not hold the socket."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return False
        with self.lock:
            self._push(channel, kind, data)
        return True

    def _push(self, channel: HeldChannel, kind: int, data: bytes) -> None:
        conn = channel.conn
        if conn is None or conn.closing:
            return  # closing: nothing more goes out (the app hears WebSocketClose)
        if kind == WsType.Text:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:  # a text frame must be UTF-8 (as the worker does)
                data = data.decode("utf-8", "replace").encode("utf-8")
            self._send(channel, conn, data, False)
        elif kind == WsType.Binary:
            self._send(channel, conn, data, True)
        elif kind in (WsType.Ping, WsType.Pong):
            if len(data) > 125:  # as the worker: WsPingPongTooLong, nothing sent
                log.info("%s: a %s push of %d bytes to WebSocket %d dropped (at most 125)", self.our,
                         "Ping" if kind == WsType.Ping else "Pong", len(data), channel.id)
            elif kind == WsType.Ping:
                conn.ping(data)
            else:
                conn.pong(data)
        elif kind == WsType.Close:
            channel.why = channel.why or "app"
            conn.close(1000, data.decode("utf-8", "replace") or None)

    def close(self, channel_id: int) -> bool:
        """The app closes a socket it holds (1000); False if it holds no such socket."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return False
        if channel.conn is not None:
            with self.lock:
                channel.why = channel.why or "app"
                channel.conn.close(1000, None)
        return True

    def _send(self, channel: HeldChannel, conn: WsConnection, data: bytes, binary: bool) -> None:
        wire = conn.encode(data, binary)
        if conn.unsent_bytes() + len(wire) > channel.send_queue_bytes:
            log.warning("%s: WebSocket %d: client too slow (%d bytes unsent); closing", self.our,
                        channel.id, conn.unsent_bytes())
            channel.why = channel.why or "slow_reader"
            conn.close(CLOSE_TOO_SLOW, "too slow: send queue full", 1.0)
            return
        channel.messages_out += 1
        channel.bytes_out += len(data)
        if not self.report_due:
            self.count_soon()
        conn.send_encoded(wire)

    # ------------------------------------------------------------------ counts

    def count_soon(self) -> None:
        self.report_due = True
        self.loop.call_later(REPORT_S, self.report)

    def report(self, *ending: HeldChannel) -> None:
        """Tell the worker what went over the sockets since the last report (those in
        `ending` only: they are closing), for the node's figures."""
        if not ending:
            self.report_due = False
        counts = http_pb2.HttpServerAction()
        entries = counts.web_socket_counts.channels
        for channel in ending or self.channels.values():
            if channel.messages_in or channel.messages_out or ending:
                entries.add(channel_id=channel.id, messages_in=channel.messages_in,
                            messages_out=channel.messages_out, bytes_in=channel.bytes_in,
                            bytes_out=channel.bytes_out, closed=(channel.why or "client") if ending else "")
                channel.messages_in = channel.messages_out = channel.bytes_in = channel.bytes_out = 0
        if entries:
            self._tell(counts.SerializeToString(), keep=bool(ending))

    def _tell(self, body: bytes, keep: bool = False) -> None:
        """Send an action to the worker; `keep`: one it must get (a socket's end),
        kept and sent again while the kernel is away."""
        if self.untold and keep:  # behind those still waiting, in order
            self.untold.append(body)
            return
        try:
            self.tell_worker(body)
        except Exception as exc:  # the kernel is away
            if keep and len(self.untold) < MAX_UNTOLD:
                if not self.untold:
                    self.loop.call_later(REPORT_S, self._tell_again)
                self.untold.append(body)
            log.info("%s: could not tell the http-server about its WebSockets (%s)%s", self.our, exc,
                     "; trying again" if keep else "")

    def _tell_again(self) -> None:
        while self.untold:
            try:
                self.tell_worker(self.untold[0])
            except Exception:
                self.loop.call_later(REPORT_S, self._tell_again)
                return
            del self.untold[0]

    # ------------------------------------------------------------------ to the app

    def incoming(self, channel: HeldChannel, kind: int, payload: bytes) -> None:
        self.deliver(Message(0, HTTP_SERVER, self.our, True, channel.push_bodies[kind], Blob(payload)))

    def ended(self, channel: HeldChannel, reason: str | None) -> None:
        """The socket is closed: the app hears it as from the worker (a Close push
        with the client's reason, if it sent a close frame; then WebSocketClose), and
        the worker is told, to let go of its descriptor."""
        if self.channels.pop(channel.id, None) is None:
            return
        if not channel.told:
            if reason is not None and channel.why not in ("app", "slow_reader"):
                # The client's close frame (as the worker tells it): not an answer to ours.
                self.incoming(channel, WsType.Close, reason.encode())
            closed = http_pb2.HttpServerRequest()
            closed.web_socket_close.channel_id = channel.id
            self.deliver(Message(0, HTTP_SERVER, self.our, True, closed.SerializeToString()))
        self.report(channel)
        action = http_pb2.HttpServerAction()
        action.web_socket_close.channel_id = channel.id
        self._tell(action.SerializeToString(), keep=True)
        log.info("%s: WebSocket %d closed", self.our, channel.id)
