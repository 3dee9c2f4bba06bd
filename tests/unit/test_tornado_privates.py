"""What porch relies on inside Tornado (issue 11 item 6), held here so that a Tornado
upgrade that changes it fails this file before anything misbehaves.

Since issue 12 the http-server does not use Tornado at all: HTTP/1 is porch's own
(`porch.http_server.h1`, parsing by llhttp) and so are WebSocket frames
(`porch.ws.frames`, `wsconn`). What is left is in the http-client's outgoing
WebSockets (Tornado's client), checked on Tornado 6.4.2, 6.5.2 and 6.6.1:
`WebSocketProtocol13._write_frame` (an unsolicited pong, which Tornado has no public
call for) and `IOStream._write_buffer` (the bytes the remote has not taken, for the
slow-reader limit).
"""

from __future__ import annotations

import ast
import inspect
import socket
from pathlib import Path

from tornado import iostream, websocket

import porch.http_server

HTTP_SERVER = Path(porch.http_server.__file__).parent


def test_the_http_server_imports_nothing_of_tornado() -> None:
    for module in sorted(HTTP_SERVER.glob("*.py")):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "tornado" or n.startswith("tornado.") for n in names), module.name


def test_the_http_clients_write_frame_takes_fin_opcode_and_data() -> None:
    params = list(inspect.signature(websocket.WebSocketProtocol13._write_frame).parameters)
    assert params[:4] == ["self", "fin", "opcode", "data"]


def test_the_http_clients_write_buffer_holds_what_is_unsent() -> None:
    a, b = socket.socketpair()
    try:
        stream = iostream.IOStream(a)
        assert len(stream._write_buffer) == 0
        stream.close()
    finally:
        b.close()
    assert "self._write_buffer" in inspect.getsource(iostream.BaseIOStream.write)
