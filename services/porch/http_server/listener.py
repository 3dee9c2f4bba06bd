"""HTTP/1.1 connections in, `Exchange`s to the gateway, responses out.

Every method (extension methods too) reaches the gateway, bodies are capped before
they are read (413, by Content-Length; a chunked body at the limit), a body that does
not arrive in time is answered 408, and there is no per-request handler object or
coroutine on the hot path. A WebSocket upgrade is checked by the `Upgrader` (the
WebSocket hub): refused with an ordinary answer, or admitted, when the connection's
socket is handed to it. The bytes are porch's own (`porch.http_server.h1`, parsing by
llhttp): Tornado is no longer on the HTTP path (issue 12), and none of its private
names is used (issue 11 item 6).

`Server` accepts within `max_connections` (`porch.http_server.accept`) and holds the
open connections. Draining (a worker that stops or is replaced, docs/restarts.md):
`Server.begin_drain` makes every answer not yet started the connection's last
(`Connection: close`, then close), and `close_idle` closes the kept-alive connections
that are between requests with nothing of a next one received. A request that arrives
meanwhile on a kept-alive connection is still answered (with `Connection: close`):
closing a connection the client may be writing to loses its request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from porch.http_server.accept import Acceptor
from porch.http_server.exchange import (
    TEXT,
    Exchange,
    Headers,
    closing_response,
    with_own_headers,
)
from porch.http_server.h1 import BadHeader, H1Connection

log = logging.getLogger("porch.http_server")

Dispatch = Callable[["_Exchange"], None]
# (exchange, status, body bytes) after each answer: the figures and access log
# (porch.http_server.figures); None when neither is on.
Record = Callable[["_Exchange", int, int], None]
# (HTTP version, every Host value, peer address) -> why to answer 400, or None.
FrontCheck = Callable[[str, list[str], str | None], str | None]


def absolute_target(target: str) -> tuple[str, str]:
    """("/path?query", "authority") of an absolute-form request target such as
    "http://host:8080/path?query" (no user info: "user@" stays in the authority, which
    the Host rules then refuse)."""
    rest = target.partition("://")[2]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    return ("/" + tail if not tail.startswith("/") else tail), authority


class Upgrader(Protocol):
    """Who takes WebSocket upgrades (porch.http_server.websocket.WsHub)."""

    async def admit(self, ex: Exchange, version: str) -> Any:
        """An admission (opaque here), or the refusal to answer: (status, headers, body)."""

    def open(self, sock: socket.socket, leftover: bytes, admission: Any) -> object:
        """Open the admitted socket (write the 101, and so on)."""


class Listener:
    """What the server does with requests: `body_timeout_s`: a request body not
    complete this long after its head is answered 408 and its connection closed."""

    def __init__(self, dispatch: Dispatch, max_body_bytes: int,
                 upgrade: Upgrader | None = None,
                 body_timeout_s: float | None = None, front: FrontCheck | None = None) -> None:
        self.dispatch = dispatch
        self.max_body_bytes = max_body_bytes
        self.upgrade = upgrade
        self.body_timeout_s = body_timeout_s
        # Checked on every request head before anything else sees it (the Host rules,
        # porch.http_server.hosts): a refused one is answered 400, never routed or upgraded.
        self.front = front
        self._upgrades: set[asyncio.Future[None]] = set()
        self.record: Record | None = None


class _Exchange:
    """One request on one connection; implements gateway.exchange.Exchange."""

    __slots__ = ("_body_timer", "_chunks", "_close_cb", "_conn", "_headers", "_listener",
                 "_refusal", "_upgrading", "app", "body", "bound", "done", "forwarded", "method",
                 "path", "peer_ip", "peer_port", "query", "rid", "started", "version")

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._conn: H1Connection | None = None
        self._chunks: list[bytes] = []
        self._close_cb: Callable[[], None] | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._refusal: str | None = None
        self._upgrading = False
        self._headers: list[tuple[str, str]] = []
        self.method = "GET"
        self.path = "/"
        self.query = ""
        self.version = "HTTP/1.1"
        self.done = False
        self.body = b""
        self.peer_ip: str | None = None
        self.peer_port: int | None = None
        # For the figures and the access log: the owning process and bound path (set by
        # the gateway; "" for porch's own answers), the request id, when the head came
        # and when the request went to its process.
        self.app = self.bound = self.rid = ""
        self.started = self.forwarded = 0.0

    # -- porch.http_server.h1.Handler -------------------------------------------------

    def headers_received(self, conn: H1Connection, method: str, target: str, version: str,
                         headers: list[tuple[str, str]]) -> None:
        self._conn = conn
        self._headers = headers
        self.started = time.monotonic()
        self.method = method
        self.version = version
        address = conn.peer
        if isinstance(address, tuple) and len(address) >= 2:
            self.peer_ip, self.peer_port = str(address[0]), int(address[1])
        if not target.startswith("/") and "://" in target[:8]:
            # The absolute form (RFC 9112 3.2.2), sent to proxies and accepted by servers:
            # its authority is the request's Host, whatever Host header came with it.
            target, authority = absolute_target(target)
            headers = self._headers = [(n, v) for n, v in headers if n.lower() != "host"]
            headers.append(("Host", authority))
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        listener = self._listener
        if listener.front is not None:
            hosts = [v for n, v in headers if n.lower() == "host"]
            self._refusal = listener.front(version, hosts, self.peer_ip)
        if (listener.upgrade is not None and self._refusal is None
                and (self.header("Upgrade") or "").lower() == "websocket"):
            self._upgrading = True
            task = asyncio.ensure_future(self._upgrade(listener.upgrade))
            listener._upgrades.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(listener._upgrades.discard)
            return
        length = self.header("Content-Length")
        if length is not None and length.isdigit() and int(length) > listener.max_body_bytes:
            self.done = True
            if listener.record is not None:
                listener.record(self, 413, 0)
            conn.answer_and_close(closing_response(
                413, f"request body larger than {listener.max_body_bytes} bytes"))
            return
        timeout = listener.body_timeout_s
        if timeout and ((length is not None and length != "0")
                        or "chunked" in (self.header("Transfer-Encoding") or "").lower()):
            self._body_timer = conn.loop.call_later(timeout, self._body_timed_out)

    def data_received(self, chunk: bytes) -> None:
        if not self.done:  # done: answered already, what follows is dropped
            self._chunks.append(chunk)

    def finish(self) -> None:
        if self.done or self._upgrading:
            return
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self.body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = []
        if self._refusal is not None:
            self.respond(400, [TEXT], (self._refusal + "\n").encode())
            return
        try:
            self._listener.dispatch(self)
        except Exception:
            log.exception("error handling %s %s", self.method, self.path)
            self.respond(500, [TEXT], b"internal error\n")

    def client_gone(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if not self.done:
            self.done = True
            cb, self._close_cb = self._close_cb, None
            if cb is not None:
                cb()
            if not self._upgrading and self._listener.record is not None:
                self._listener.record(self, 499, 0)  # the client left before its answer

    # -- upgrades -------------------------------------------------------------------

    async def _upgrade(self, upgrader: Upgrader) -> None:
        """Admitted: the socket goes to the upgrader. Refused: answered on the
        kept-alive connection."""
        try:
            verdict = await upgrader.admit(self, self.version)
        except Exception:
            log.exception("error checking a websocket upgrade on %s", self.path)
            verdict = (500, [TEXT], b"internal error\n")
        conn = self._conn
        if self.done or conn is None or conn.closed:
            return  # the client went away meanwhile
        if isinstance(verdict, tuple):
            self._upgrading = False
            self.respond(*verdict)
            return
        self.done = True
        sock, leftover = conn.detach()
        upgrader.open(sock, leftover, verdict)

    def _body_timed_out(self) -> None:
        """The body did not arrive in time: 408, then close (the app never sees it)."""
        self._body_timer = None
        conn = self._conn
        if self.done or conn is None or conn.closed:
            return
        self.done = True
        log.info("request body from %s not complete after %.0f s (body_timeout_s): 408",
                 self.peer_ip, self._listener.body_timeout_s)
        if self._listener.record is not None:
            self._listener.record(self, 408, 0)
        conn.answer_and_close(closing_response(408, "request body not received in time"))

    # -- Exchange ------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        """The last value (Kinode takes the last; joining repeated ones with commas
        would hide a cookie behind an earlier Cookie header)."""
        lname = name.lower()
        for key, value in reversed(self._headers):
            if key.lower() == lname:
                return value
        return None

    def header_items(self) -> list[tuple[str, str]]:
        return list(self._headers)

    def on_close(self, callback: Callable[[], None]) -> None:
        self._close_cb = callback

    def respond(self, status: int, headers: Headers, body: bytes, *, own: bool = True) -> None:
        if self.done:
            return
        self.done = True
        self._close_cb = None
        conn = self._conn
        if conn is None or conn.closed:
            return
        record = self._listener.record
        if record is not None:
            record(self, status, len(body))
        if own:
            headers = with_own_headers(headers)
        head_only = self.method == "HEAD"
        body_allowed = status not in (204, 304) and status >= 200
        try:
            conn.respond(status, headers, body, head_only=head_only, body_allowed=body_allowed)
        except BadHeader as exc:
            # A header HTTP cannot carry: nothing was written yet, so the client still
            # gets an answer instead of a connection left hanging (issue 9 item 6).
            log.error("cannot send the %d answer to %s %s (%s); answered 500 instead",
                      status, self.method, self.path, exc)
            conn.respond(500, with_own_headers([TEXT]), b"internal error: invalid response header\n",
                         head_only=head_only, body_allowed=True)


# ---------------------------------------------------------------------- connections


class Server:
    """Accepts connections within `max_connections` (`porch.http_server.accept`) and
    serves each with the listener."""

    max_connections = 10_000

    def __init__(self, listener: Listener, *, max_header_size: int, max_body_size: int,
                 idle_connection_timeout: float) -> None:
        self.listener = listener
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.idle_connection_timeout = idle_connection_timeout
        self.connections: set[H1Connection] = set()
        self._acceptors: list[tuple[Acceptor, socket.socket]] = []
        self.draining = False

    @property
    def open_connections(self) -> int:
        """HTTP connections open now (an upgraded WebSocket is no longer one)."""
        return len(self.connections)

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            acceptor = Acceptor(sock, self._connected, lambda: len(self.connections), self.max_connections)
            self._acceptors.append((acceptor, sock))
            acceptor.start()

    def stop(self) -> None:
        """Stop accepting and close this process's copies of the listening sockets (the
        keeper keeps its own)."""
        acceptors, self._acceptors = self._acceptors, []
        for acceptor, sock in acceptors:
            acceptor.stop()
            sock.close()

    def _connected(self, sock: socket.socket, address: Any) -> None:
        listener = self.listener
        conn = H1Connection(sock, address, lambda: _Exchange(listener),
                            max_header_bytes=self.max_header_size, max_body_bytes=self.max_body_size,
                            idle_timeout_s=self.idle_connection_timeout, on_closed=self.connections.discard)
        if self.draining:
            conn.draining = True
        if not conn.closed:
            self.connections.add(conn)

    def begin_drain(self) -> None:
        """From now on every answer is its connection's last: `Connection: close`."""
        self.draining = True
        for conn in self.connections:
            conn.draining = True

    def close_idle(self) -> int:
        """Close the connections between requests that hold no byte of a next one;
        how many."""
        return sum(conn.close_if_idle() for conn in list(self.connections))

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()
