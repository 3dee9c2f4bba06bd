"""porch's own WebSocket layer (issue 12 item 1) on a real node: the opening handshake,
fragments, control frames, the close handshake and malformed frames, with the
`websockets` library as the client and raw sockets for what no library sends.

The framing itself is held to the `websockets` library's parser in
tests/unit/test_ws_frames.py; here the whole path is: client -> http-server worker
(the frames are porch's since Tornado's WebSocket layer went) -> kernel -> app."""

from __future__ import annotations

import base64
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import porch
from porch.wire import http_pb2
from support.node import Node, free_port

NODE = "wsp.os"
APP = "wsp:pkg:pub.os"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class Site:
    def __init__(self) -> None:
        self.node = Node(f'node = "{NODE}"\n[http_server]\nws_max_message_bytes = 100000\n'
                         f'[[process]]\nid = "{APP}"\ncapabilities = ["http-server:distro:sys"]\n')
        self.port = free_port()
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": "pw"})
        self.app = self.node.process(APP)
        action = http_pb2.HttpServerAction()
        action.web_socket_bind.path = "/ws"
        action.web_socket_bind.authenticated = False
        reply = self.app.send_and_await_response("http-server:distro:sys", action.SerializeToString())
        assert http_pb2.HttpServerResult.FromString(reply.body).WhichOneof("result") == "ok"

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/{APP}/ws"

    def event(self, timeout: float = 10) -> tuple[str, Any, porch.Message]:
        msg = self.app.await_message(timeout=timeout)
        req = http_pb2.HttpServerRequest.FromString(msg.body)
        which = req.WhichOneof("request") or ""
        return which, getattr(req, which), msg

    def opened(self) -> int:
        which, data, _ = self.event()
        assert which == "web_socket_open", which
        return int(data.channel_id)

    def push(self, channel: int, kind: str, blob: bytes) -> None:
        action = http_pb2.HttpServerAction()
        action.web_socket_push.channel_id = channel
        action.web_socket_push.message_type = http_pb2.WsMessageType.Value(kind)  # type: ignore[assignment]
        self.app.send_request("http-server:distro:sys", action.SerializeToString(), blob=blob)

    def raw(self, request: bytes) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(request)
        return s


@pytest.fixture(scope="module")
def site_once() -> Iterator[Site]:
    s = Site()
    try:
        yield s
    finally:
        s.node.close()


@pytest.fixture
def site(site_once: Site) -> Iterator[Site]:
    """The module's node, with what a test left unread in the app's queue (a failed
    test's close event) dropped first, so that one failure does not fail the next."""
    while True:
        try:
            site_once.app.await_message(timeout=0.05)
        except porch.Timeout:
            break
    yield site_once


def head_of(s: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    return head


def upgrade_request(*extra: str, method: str = "GET", version: str = "13", key: str = KEY,
                    connection: str = "Upgrade") -> bytes:
    lines = [f"{method} /{APP}/ws HTTP/1.1", "Host: localhost", "Upgrade: websocket",
             f"Connection: {connection}", f"Sec-WebSocket-Version: {version}", *extra]
    if key:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def masked(b0: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([b0, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_close(s: socket.socket) -> int:
    data = b""
    while len(data) < 4:
        chunk = s.recv(64)
        assert chunk, f"closed without a close frame (got {data!r})"
        data += chunk
    assert data[0] == 0x88, data
    return int(struct.unpack("!H", data[2:4])[0])


@pytest.mark.parametrize(("request_", "status", "header"), ids=[
    "version-8", "no-key", "short-key", "post", "no-upgrade-token"], argvalues=[
    (upgrade_request(version="8"), 426, b"Sec-WebSocket-Version: 13"),
    (upgrade_request(key=""), 400, b""),
    (upgrade_request(key=base64.b64encode(b"x" * 15).decode()), 400, b""),
    (upgrade_request(method="POST"), 405, b"Allow: GET"),
    (upgrade_request(connection="keep-alive"), 400, b""),
])
def test_a_bad_handshake_is_refused_with_its_status(site: Site, request_: bytes, status: int,
                                                    header: bytes) -> None:
    """Issue 12 item 1: RFC 6455 4.2.1's rules, checked by porch before anything else."""
    with site.raw(request_) as s:
        head = head_of(s)
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    assert header.lower() in head.lower()


def test_the_101_and_a_frame_sent_with_the_handshake(site: Site) -> None:
    """A client may send frames right behind its request, before it read the 101: they
    were read with the head, and porch hands them to the socket's new owner."""
    frame = masked(0x81, b"early bird")
    with site.raw(upgrade_request() + frame) as s:
        head = head_of(s)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        assert b"X-Frame-Options: DENY" in head
        channel = site.opened()
        which, data, msg = site.event()
        assert which == "web_socket_push" and msg.blob is not None and msg.blob.bytes == b"early bird"
        assert data.channel_id == channel
    assert site.event()[0] == "web_socket_close"


def test_fragments_pings_and_the_close_handshake_with_a_websockets_client(site: Site) -> None:
    with connect(site.url(), open_timeout=10, compression=None) as client:
        channel = site.opened()
        client.send(iter(["frag", "mented ", "text"]))  # three frames, one message
        which, _, msg = site.event()
        assert which == "web_socket_push" and msg.blob is not None and msg.blob.bytes == b"fragmented text"
        client.send(iter([b"\x00\x01", b"\x02"]))
        which, data, msg = site.event()
        assert http_pb2.WsMessageType.Name(data.message_type) == "Binary"
        assert msg.blob is not None and msg.blob.bytes == b"\x00\x01\x02"
        assert client.ping(b"are you there").wait(10)  # answered by the server
        which, data, msg = site.event()
        assert http_pb2.WsMessageType.Name(data.message_type) == "Ping"
        site.push(channel, "Text", "héllo".encode())
        assert client.recv(timeout=10) == "héllo"
        site.push(channel, "Text", b"\xffbad")  # the app's invalid UTF-8 is made valid
        assert client.recv(timeout=10) == "\ufffdbad"
        site.push(channel, "Binary", b"x" * 70_000)  # a 64-bit length
        assert client.recv(timeout=10) == b"x" * 70_000
        client.close(4000, "custom")
        assert client.close_code == 4000  # echoed by the server
    which, _, msg = site.event()
    assert which == "web_socket_push" and msg.blob is not None and msg.blob.bytes == b"custom"
    assert site.event()[0] == "web_socket_close"


@pytest.mark.parametrize(("frame", "code"), [
    (masked(0xC1, b"rsv1"), 1002),
    (masked(0x83, b"op3"), 1002),
    (masked(0x81, b"\xff\xfe"), 1007),
    (masked(0x80, b"no start"), 1002),
    (masked(0x09, b"fragmented ping"), 1002),
    (masked(0x88, b"\x03"), 1002),
    (bytes([0x82, 0xFF]) + (200_000).to_bytes(8, "big"), 1009),  # announced over the limit
], ids=["rsv1", "opcode-3", "bad-utf8", "lone-continuation", "fragmented-ping", "close-1-byte", "too-big"])
def test_malformed_frames_close_with_their_code_and_reach_nobody(site: Site, frame: bytes, code: int) -> None:
    with site.raw(upgrade_request()) as s:
        assert head_of(s).startswith(b"HTTP/1.1 101 ")
        site.opened()
        s.sendall(frame)
        assert read_close(s) == code
        s.settimeout(10)
        while s.recv(64):  # then the server closes the connection
            pass
    which, _, _ = site.event()
    assert which == "web_socket_close", "the frame never reached the app"


def test_a_message_over_the_limit_arriving_in_pieces_is_refused_1009(site: Site) -> None:
    with connect(site.url(), open_timeout=10, compression=None, max_size=None) as client:
        site.opened()
        with pytest.raises(ConnectionClosed):
            # 120 000 > 100 000, in two frames. The server closes at the second frame's
            # header: the close may arrive while the client still sends (send raises).
            client.send(iter(["x" * 60_000, "x" * 60_000]))
            client.recv(timeout=10)
        assert client.close_code == 1009
    assert site.event()[0] == "web_socket_close"


def test_an_upgrade_pipelined_behind_a_request_is_taken_after_its_answer(site: Site) -> None:
    """A request, the upgrade and a first frame in one packet: the request is answered,
    then the upgrade, and the frame reaches the app (the upgrade waited its turn)."""
    first = b"GET /our HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with site.raw(first + upgrade_request() + masked(0x81, b"behind")) as s:
        head = head_of(s)
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = b""
        while len(body) < length:
            body += s.recv(length - len(body))
        assert body == NODE.encode()
        assert head_of(s).startswith(b"HTTP/1.1 101 ")
        site.opened()
        which, _, msg = site.event()
        assert which == "web_socket_push" and msg.blob is not None and msg.blob.bytes == b"behind"
    assert site.event()[0] == "web_socket_close"
