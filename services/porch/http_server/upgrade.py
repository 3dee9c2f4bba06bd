"""The WebSocket opening handshake (RFC 6455 4.2), and taking the socket from Tornado.

The request head arrives through Tornado's HTTP/1 server like any other
(`porch.http_server.listener`). An upgrade is first checked as a handshake
(`handshake_refusal`: GET, HTTP/1.1, `Connection: upgrade`, version 13, a 16-byte
key), then by the WebSocket hub (binding, login, origin, the owner running). A refusal
is an ordinary HTTP answer on the kept-alive connection. An admitted upgrade takes the
connection away from Tornado with public calls only (`take_socket`), and the 101 and
every frame after it are porch's (`porch.http_server.wsconn`).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from tornado.iostream import IOStream, StreamClosedError

from porch.http_server.exchange import DATE, OWN_HEADERS, TEXT, Headers
from porch.http_server.frames import accept_key, valid_key

Refusal = tuple[int, Headers, bytes]


def _text(status: int, message: str, *extra: tuple[str, str]) -> Refusal:
    return status, [TEXT, *extra], (message + "\n").encode()


def handshake_refusal(method: str, version: str, header: Any) -> Refusal | None:
    """Why this is not a WebSocket opening handshake a server can accept, as the
    answer to give; None if it is one. `header(name)` is the last value of a header."""
    if method != "GET":
        return _text(405, "a WebSocket is opened with GET", ("Allow", "GET"))
    if version != "HTTP/1.1":
        return _text(400, "a WebSocket is opened over HTTP/1.1")
    tokens = {t.strip().lower() for t in (header("Connection") or "").split(",")}
    if "upgrade" not in tokens:
        return _text(400, '"Connection" must include "Upgrade"')
    if (header("Sec-WebSocket-Version") or "").strip() != "13":
        return _text(426, "WebSocket version 13 only", ("Sec-WebSocket-Version", "13"))
    if not valid_key(header("Sec-WebSocket-Key")):
        return _text(400, "missing or invalid Sec-WebSocket-Key")
    return None


def switching_protocols(key: str) -> bytes:
    """The 101 answer: no subprotocol, no extension (compression is off)."""
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept_key(key)}", f"Date: {DATE.now()}"]
    lines += [f"{name}: {value}" for name, value in OWN_HEADERS]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def take_socket(stream: IOStream) -> tuple[socket.socket, bytes] | None:
    """The connection's socket, taken from a detached Tornado stream, and the bytes the
    stream had already read past the request head (a client may send its first frames
    before it reads the 101); None if the client is gone.

    Public calls only: a partial read hands over what the stream holds (at once, when
    it holds anything), a duplicate descriptor keeps the connection open while the
    stream closes its own (which also takes it off the loop)."""
    if stream.closed():
        return None
    try:
        fut: Any = stream.read_bytes(1 << 30, partial=True)
    except StreamClosedError:
        return None
    fut.add_done_callback(_retrieve)  # unless done now, it fails when the stream closes
    leftover = fut.result() if fut.done() and not fut.exception() else b""
    sock = stream.fileno()
    fd = sock if isinstance(sock, int) else sock.fileno()
    try:
        copy = socket.socket(fileno=os.dup(fd))
    except OSError:
        stream.close()
        return None
    stream.close()
    copy.setblocking(False)
    try:
        copy.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # frames leave at once
    except OSError:
        pass  # not TCP (a test's Unix socket)
    return copy, bytes(leftover)


def _retrieve(fut: Any) -> None:
    if not fut.cancelled():
        fut.exception()
