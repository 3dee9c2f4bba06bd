"""Tornado glue: HTTP/1.1 connections in, `Exchange`s to the gateway, responses out.

A raw `HTTPServerConnectionDelegate` rather than `tornado.web.Application`: every method
(extension methods too) reaches the gateway, bodies are capped before they are read
(413), and there is no per-request handler object on the hot path. WebSocket upgrades
are handed, headers and all, to a Tornado Application that owns the WebSocket handlers.
`Server` is Tornado's HTTPServer answering 431 to a request head over the limit.

Draining (a worker that stops or is replaced, docs/restarts.md): `Listener.begin_drain`
makes every answer not yet started the connection's last (`Connection: close`, then
close), and `close_idle` closes the kept-alive connections that are between requests
with nothing of a next one received. A request that arrives meanwhile on a kept-alive
connection is still answered (with `Connection: close`): closing a connection the
client may be writing to loses its request.
"""

from __future__ import annotations

import logging
import socket
import time
from asyncio import Future
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError, UnsatisfiableReadError

from porch.http_server.accept import Acceptor
from porch.http_server.exchange import (
    DATE,
    TEXT,
    Headers,
    closing_response,
    last_value,
    reason,
    with_own_headers,
)

log = logging.getLogger("porch.http_server")

Dispatch = Callable[["_Exchange"], None]
# (exchange, status, body bytes) after each answer: the figures and access log
# (porch.http_server.figures); None when neither is on.
Record = Callable[["_Exchange", int, int], None]
# (HTTP version, every Host value, peer address) -> why to answer 400, or None.
FrontCheck = Callable[[str, list[str], str | None], str | None]


class Listener(httputil.HTTPServerConnectionDelegate):
    """`body_timeout_s`: a request body not complete this long after its head is
    answered 408 and its connection closed (give Tornado's own body_timeout more: it
    closes without an answer)."""

    def __init__(self, dispatch: Dispatch, max_body_bytes: int,
                 upgrade: httputil.HTTPServerConnectionDelegate | None = None,
                 body_timeout_s: float | None = None, front: FrontCheck | None = None) -> None:
        self.dispatch = dispatch
        self.max_body_bytes = max_body_bytes
        self.upgrade = upgrade
        self.body_timeout_s = body_timeout_s
        # Checked on every request head before anything else sees it (the Host rules,
        # porch.http_server.hosts): a refused one is answered 400, never routed or upgraded.
        self.front = front
        self.draining = False
        # The exchange each open connection is on now (the next request's, between them).
        self.current: dict[object, _Exchange] = {}
        self.record: Record | None = None

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        ex = _Exchange(self, server_conn, request_conn)
        self.current[server_conn] = ex
        return ex

    def forget(self, server_conn: object) -> None:
        """The connection closed."""
        self.current.pop(server_conn, None)

    def begin_drain(self) -> None:
        """From now on every answer is its connection's last: `Connection: close`."""
        self.draining = True
        for ex in self.current.values():
            if ex.begun and not ex.done:
                ex.last_on_connection()

    def close_idle(self) -> int:
        """Close the connections between requests that hold no byte of a next one;
        how many."""
        closed = 0
        for server_conn, ex in list(self.current.items()):
            if ex.begun:
                continue
            stream: Any = getattr(server_conn, "stream", None)
            if stream is None or stream.closed() or _has_input(stream):
                continue
            stream.close()
            closed += 1
        return closed


def _has_input(stream: Any) -> bool:
    """Whether bytes of a next request arrived: in the stream's buffer (Tornado's
    private _read_buffer_size, 0 if renamed) or still in the socket."""
    if getattr(stream, "_read_buffer_size", 0):
        return True
    sock = getattr(stream, "socket", None)
    if sock is None:
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False
    except OSError:
        return False


class _Exchange(httputil.HTTPMessageDelegate):
    """One request on one connection; implements gateway.exchange.Exchange."""

    __slots__ = ("_body_timer", "_chunks", "_close_cb", "_conn", "_handoff", "_headers", "_listener",
                 "_refusal", "_server_conn", "_size", "app", "begun", "body", "bound", "done", "forwarded",
                 "method", "path", "peer_ip", "peer_port", "query", "rid", "started")

    def __init__(self, listener: Listener, server_conn: object,
                 conn: httputil.HTTPConnection) -> None:
        self._listener = listener
        self._server_conn = server_conn
        # An HTTP1Connection: the HTTPConnection interface lacks set_close_callback/detach.
        self._conn: Any = conn
        self._handoff: httputil.HTTPMessageDelegate | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._close_cb: Callable[[], None] | None = None
        self._body_timer: object | None = None
        self._refusal: str | None = None
        self.method = "GET"
        self.done = False
        self.begun = False  # its request head arrived
        self.body = b""
        # For the figures and the access log: the owning process and bound path (set by
        # the gateway; "" for porch's own answers), the request id, when the head came
        # and when the request went to its process.
        self.app = self.bound = self.rid = ""
        self.started = self.forwarded = 0.0
        address = getattr(getattr(conn, "context", None), "address", None)
        if isinstance(address, tuple) and len(address) >= 2:
            self.peer_ip: str | None = str(address[0])
            self.peer_port: int | None = int(address[1])
        else:
            self.peer_ip = self.peer_port = None

    # -- tornado.httputil.HTTPMessageDelegate ---------------------------------------

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> None:
        self._headers = headers
        self.begun = True
        self.started = time.monotonic()
        if self._listener.draining:
            self.last_on_connection()
        front = self._listener.front
        if front is not None:
            self._refusal = front(start_line.version, headers.get_list("Host"), self.peer_ip)
        upgrade = self._listener.upgrade
        if (upgrade is not None and self._refusal is None
                and headers.get("Upgrade", "").lower() == "websocket"):
            self._handoff = upgrade.start_request(self._server_conn, self._conn)
            self._handoff.headers_received(start_line, headers)
            return
        self.method = start_line.method
        target = start_line.path
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self._listener.max_body_bytes:
            self._reject_too_large()
            return
        timeout = self._listener.body_timeout_s
        if timeout and ((length is not None and length != "0")
                        or "chunked" in headers.get("Transfer-Encoding", "").lower()):
            self._body_timer = IOLoop.current().call_later(timeout, self._body_timed_out)

    def data_received(self, chunk: bytes) -> None:
        if self._handoff is not None:
            self._handoff.data_received(chunk)
            return
        if not self.done:  # done: answered already (408, 413), what follows is dropped
            self._chunks.append(chunk)

    def finish(self) -> None:
        if self._handoff is not None:
            self._handoff.finish()
            return
        if self.done:
            return
        if self._body_timer is not None:
            IOLoop.current().remove_timeout(self._body_timer)
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

    def on_connection_close(self) -> None:
        if self._handoff is not None:
            self._handoff.on_connection_close()
            return
        self._client_gone()

    def _body_timed_out(self) -> None:
        """The body did not arrive in time: 408, then close (the app never sees it)."""
        self._body_timer = None
        stream = getattr(self._conn, "stream", None)
        if self.done or stream is None or stream.closed():
            return
        self.done = True
        log.info("request body from %s not complete after %.0f s (body_timeout_s): 408",
                 self.peer_ip, self._listener.body_timeout_s)
        if self._listener.record is not None:
            self._listener.record(self, 408, 0)
        try:
            written = stream.write(closing_response(408, "request body not received in time"))
        except StreamClosedError:
            return

        def linger(_: object) -> None:
            # Half-close, and let Tornado read (and us drop) what the client still sends
            # for a moment: closing at once, with its bytes unread, would reset the
            # connection before the client has read the 408.
            try:
                stream.socket.shutdown(socket.SHUT_WR)
            except (OSError, AttributeError):
                pass
            IOLoop.current().call_later(_LINGER_S, stream.close)

        written.add_done_callback(linger)

    def _client_gone(self) -> None:
        if self._body_timer is not None:
            IOLoop.current().remove_timeout(self._body_timer)
            self._body_timer = None
        if not self.done:
            self.done = True
            cb, self._close_cb = self._close_cb, None
            if cb is not None:
                cb()
            if self.begun and self._handoff is None and self._listener.record is not None:
                self._listener.record(self, 499, 0)  # the client left before its answer

    def last_on_connection(self) -> None:
        """Answer with `Connection: close` and close the connection after it. Tornado
        decides this per request in HTTP1Connection._disconnect_on_finish (private; set
        after it read the head, read when it writes ours: checked on Tornado 6.4-6.6,
        tests/integration/test_restart_graceful.py fails if that changes)."""
        if self._handoff is None and hasattr(self._conn, "_disconnect_on_finish"):
            self._conn._disconnect_on_finish = True

    # -- Exchange ------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        return last_value(self._headers, name)

    def header_items(self) -> list[tuple[str, str]]:
        return list(self._headers.get_all())

    def on_close(self, callback: Callable[[], None]) -> None:
        # After the body is read, Tornado reports a closed connection through the
        # connection's close callback, not the delegate's on_connection_close.
        self._close_cb = callback
        self._conn.set_close_callback(self._client_gone)

    def respond(self, status: int, headers: Headers, body: bytes, *, own: bool = True) -> None:
        if self.done:
            return
        self.done = True
        if self._close_cb is not None:
            self._close_cb = None
            self._conn.set_close_callback(None)
        if own:
            headers = with_own_headers(headers)
        record = self._listener.record
        if record is not None:
            record(self, status, len(body))
        try:
            self._write(status, headers, body)
        except StreamClosedError:
            pass
        except Exception as exc:
            # A header HTTP cannot carry (Tornado refuses it in HTTPHeaders.add or when
            # encoding the head as Latin-1): nothing was written yet, so the client
            # still gets an answer instead of a connection left hanging (issue 9 item 6).
            log.error("cannot send the %d answer to %s %s (%s); answered 500 instead",
                      status, self.method, getattr(self, "path", "?"), exc)
            try:
                self._write(500, with_own_headers([TEXT]), b"internal error: invalid response header\n")
            except Exception:
                self._conn.close()

    def _write(self, status: int, headers: Headers, body: bytes) -> None:
        out = httputil.HTTPHeaders()
        for name, value in headers:
            out.add(name, value)
        if status not in (204, 304):
            out["Content-Length"] = str(len(body))
        else:
            body = b""
        out["Date"] = DATE.now()
        if self.method == "HEAD":
            body = b""
        self._conn.write_headers(httputil.ResponseStartLine("HTTP/1.1", status, reason(status)),
                                 out, body or None)
        self._conn.finish()

    # -- limits ----------------------------------------------------------------------

    def _reject_too_large(self) -> None:
        """413 before reading the body, then close (detaching skips Tornado's body read)."""
        self.done = True
        if self._listener.record is not None:
            self._listener.record(self, 413, 0)
        detach = getattr(self._conn, "detach", None)
        if detach is None:
            return
        stream = detach()
        answer = closing_response(413, f"request body larger than {self._listener.max_body_bytes} bytes")
        try:
            stream.write(answer).add_done_callback(lambda _: stream.close())
        except StreamClosedError:
            stream.close()


# ---------------------------------------------------------------------- request heads


class Server(HTTPServer):
    """Tornado's HTTPServer, except that a request head larger than `max_header_size`
    is answered 431 instead of a silent close (or, with bytes left unread, a reset), and
    connections are accepted within `max_connections` (`porch.http_server.accept`)."""

    max_connections = 10_000

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        listener = self.request_callback
        if isinstance(listener, Listener):
            listener.forget(server_conn)

    @property
    def open_connections(self) -> int:
        """HTTP connections open now (an upgraded WebSocket is no longer one)."""
        return len(self._connections)

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            acceptor = Acceptor(sock, self._handle_connection, lambda: len(self._connections),
                                self.max_connections)
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = acceptor.stop
            acceptor.start()

    def handle_stream(self, stream: IOStream, address: tuple[str, int]) -> None:
        _HeadLimit(stream)
        super().handle_stream(stream, address)


_LINGER_S = 2.0  # how long a 431'd client may keep sending before it is reset
_LINGER_BYTES = 1024 * 1024


class _HeadLimit:
    """Answers 431 on one connection when Tornado gives up on a request head.

    Tornado reads each request head with `read_until_regex(..., max_bytes=limit)`; past
    the limit the stream closes itself (UnsatisfiableReadError) and the client is left
    with no status. We note when a head is being read, and take the socket over just
    before the stream would close it: write the 431, stop writing, and read and discard
    what the client still sends (bounded) so that closing does not reset the connection
    before the client has read the answer. Other oversized reads (a chunk-size line)
    keep Tornado's plain close.
    """

    __slots__ = ("close_fd", "head", "read_until_regex", "stream")

    def __init__(self, stream: IOStream) -> None:
        self.stream = stream
        self.read_until_regex = stream.read_until_regex
        self.close_fd = stream.close_fd
        self.head: Awaitable[bytes] | None = None  # the pending (or last) head read
        stream.read_until_regex = self._read_head  # type: ignore[method-assign]
        stream.close_fd = self._close_fd  # type: ignore[method-assign]

    def _read_head(self, regex: bytes, max_bytes: int | None = None) -> Awaitable[bytes]:
        # The HTTP/1 server reads nothing but request heads with a regex. The read may
        # fail (and close the stream) before it returns: `head` is unset meanwhile.
        self.head = None
        self.head = self.read_until_regex(regex, max_bytes)
        return self.head

    def _close_fd(self) -> None:
        stream, head = self.stream, self.head
        reading_head = head is None or not (isinstance(head, Future) and head.done())
        sock = stream.socket
        if sock is None or not reading_head or not isinstance(stream.error, UnsatisfiableReadError):
            self.close_fd()
            return
        stream.socket = None  # type: ignore[assignment]
        _Answer431(sock)


class _Answer431:
    """Write the 431 on a socket taken from its stream, then close it gracefully."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.drained = 0
        self.closed = False
        answer = closing_response(431, "request head (request line and headers) too large")
        try:
            sock.send(answer)  # a few bytes into an empty send buffer
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self.loop = IOLoop.current()
        self.loop.add_handler(sock, self._drain, IOLoop.READ)
        self.timer = self.loop.call_later(_LINGER_S, self._close)

    def _drain(self, _fd: object, _events: int) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.drained += len(data)
        if not data or self.drained > _LINGER_BYTES:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_handler(self.sock)
        self.loop.remove_timeout(self.timer)
        self.sock.close()
