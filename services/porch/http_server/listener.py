"""Tornado glue: HTTP/1.1 connections in, `Exchange`s to the gateway, responses out.

A raw `HTTPServerConnectionDelegate` rather than `tornado.web.Application`: every method
(extension methods too) reaches the gateway, bodies are capped before they are read
(413), and there is no per-request handler object on the hot path. WebSocket upgrades
are handed, headers and all, to a Tornado Application that owns the WebSocket handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tornado import httputil
from tornado.iostream import StreamClosedError

from porch.http_server.exchange import Headers, HttpDate, reason

log = logging.getLogger("porch.http_server")

Dispatch = Callable[["_Exchange"], None]
_DATE = HttpDate()


class Listener(httputil.HTTPServerConnectionDelegate):
    def __init__(self, dispatch: Dispatch, max_body_bytes: int,
                 upgrade: httputil.HTTPServerConnectionDelegate | None = None) -> None:
        self.dispatch = dispatch
        self.max_body_bytes = max_body_bytes
        self.upgrade = upgrade

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _Exchange(self, server_conn, request_conn)


class _Exchange(httputil.HTTPMessageDelegate):
    """One request on one connection; implements gateway.exchange.Exchange."""

    __slots__ = ("_chunks", "_close_cb", "_conn", "_handoff", "_headers", "_listener", "_server_conn",
                 "_size", "body", "done", "method", "path", "peer_ip", "peer_port", "query")

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
        self.done = False
        self.body = b""
        address = getattr(getattr(conn, "context", None), "address", None)
        if isinstance(address, tuple) and len(address) >= 2:
            self.peer_ip: str | None = str(address[0])
            self.peer_port: int | None = int(address[1])
        else:
            self.peer_ip = self.peer_port = None

    # -- tornado.httputil.HTTPMessageDelegate ---------------------------------------

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> None:
        self._headers = headers
        upgrade = self._listener.upgrade
        if upgrade is not None and headers.get("Upgrade", "").lower() == "websocket":
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

    def data_received(self, chunk: bytes) -> None:
        if self._handoff is not None:
            self._handoff.data_received(chunk)
            return
        self._chunks.append(chunk)

    def finish(self) -> None:
        if self._handoff is not None:
            self._handoff.finish()
            return
        self.body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = []
        try:
            self._listener.dispatch(self)
        except Exception:
            log.exception("error handling %s %s", self.method, self.path)
            self.respond(500, [("Content-Type", "text/plain")], b"internal error\n")

    def on_connection_close(self) -> None:
        if self._handoff is not None:
            self._handoff.on_connection_close()
            return
        self._client_gone()

    def _client_gone(self) -> None:
        if not self.done:
            self.done = True
            cb, self._close_cb = self._close_cb, None
            if cb is not None:
                cb()

    # -- Exchange ------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        return self._headers.get(name)

    def header_items(self) -> list[tuple[str, str]]:
        return list(self._headers.get_all())

    def on_close(self, callback: Callable[[], None]) -> None:
        # After the body is read, Tornado reports a closed connection through the
        # connection's close callback, not the delegate's on_connection_close.
        self._close_cb = callback
        self._conn.set_close_callback(self._client_gone)

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        if self.done:
            return
        self.done = True
        if self._close_cb is not None:
            self._close_cb = None
            self._conn.set_close_callback(None)
        out = httputil.HTTPHeaders()
        for name, value in headers:
            out.add(name, value)
        if status not in (204, 304):
            out["Content-Length"] = str(len(body))
        else:
            body = b""
        out["Date"] = _DATE.now()
        if self.method == "HEAD":
            body = b""
        try:
            self._conn.write_headers(httputil.ResponseStartLine("HTTP/1.1", status, reason(status)),
                                     out, body or None)
            self._conn.finish()
        except StreamClosedError:
            pass

    # -- limits ----------------------------------------------------------------------

    def _reject_too_large(self) -> None:
        """413 before reading the body, then close (detaching skips Tornado's body read)."""
        self.done = True
        detach = getattr(self._conn, "detach", None)
        if detach is None:
            return
        stream = detach()
        limit = self._listener.max_body_bytes
        body = f"request body larger than {limit} bytes\n".encode()
        head = (f"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\nDate: {_DATE.now()}\r\n\r\n")
        try:
            stream.write(head.encode() + body).add_done_callback(lambda _: stream.close())
        except StreamClosedError:
            stream.close()
