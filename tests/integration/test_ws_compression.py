"""permessage-deflate on a real node (issue 12 item 1: "permessage-deflate off or on by
setting, and the same limits"): one node with `ws_compression = true`, one without,
each with an echo process behind its WebSocket; the `websockets` library as the
client, compressing or not, and raw sockets for what no library sends (bombs, RSV1
misuse, data that is not deflate). client -> http-server worker -> kernel -> echo
process -> kernel -> worker -> client."""

from __future__ import annotations

import json
import os
import socket
import struct
import zlib
from collections.abc import Iterator

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import ClientConnection, connect

from support.node import Node, free_port, wait_for

APP = "zecho:pkg:pub.os"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
LIMIT = 100_000
QUEUE = 1 << 20

ECHO = """
import porch
from porch.http.server import HttpServer, WsBindingConfig, send_ws_push
proc = porch.Process()
server = HttpServer(proc)
server.bind_ws_path("/ws", WsBindingConfig(authenticated=False))
print("READY", flush=True)

def echo(channel, kind, blob):
    if blob is None or kind not in ("Text", "Binary"):
        return
    data = blob.bytes
    if kind == "Text" and data.startswith(b"big:"):  # a push larger than anything a client may send
        send_ws_push(proc, channel, "Text", b"x" * int(data[4:]))
    else:
        send_ws_push(proc, channel, kind, data)

while True:
    server.handle_request(proc.await_message(), lambda req: None, echo)
"""


class Site:
    def __init__(self, compression: bool, workers: int = 1) -> None:
        self.compression = compression
        self.node = Node(f'node = "zws.os"\n[http_server]\nws_max_message_bytes = {LIMIT}\n'
                         f"ws_send_queue_bytes = {QUEUE}\nws_compression = {str(compression).lower()}\n"
                         f"workers = {workers}\n"
                         f'[[process]]\nid = "{APP}"\ncapabilities = ["http-server:distro:sys"]\n')
        self.port = free_port()
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": "pw"})
        wait_for(lambda: self.node.log("http-server").count("serving http on") >= workers, 30,
                 what=f"{workers} workers serving")
        self.node.spawn(APP, ECHO)
        self.node.wait_log(APP, "READY")

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/{APP}/ws"

    def client(self, **kw: object) -> ClientConnection:
        kw.setdefault("open_timeout", 10)
        kw.setdefault("max_size", None)
        return connect(self.url(), **kw)  # type: ignore[arg-type]

    def raw(self, *extra: str, on: socket.socket | None = None) -> tuple[socket.socket, bytes]:
        """A raw upgrade with `extra` header lines (on a new connection, or `on`): the
        socket and the 101's head."""
        lines = [f"GET /{APP}/ws HTTP/1.1", "Host: localhost", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {KEY}", *extra]
        s = on or socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head
        return s, head


def _site(compression: bool) -> Iterator[Site]:
    s = Site(compression)
    try:
        yield s
    finally:
        s.node.close()


@pytest.fixture(scope="module")
def on() -> Iterator[Site]:
    yield from _site(True)


@pytest.fixture(scope="module")
def off() -> Iterator[Site]:
    yield from _site(False)


def extensions_of(head: bytes) -> str | None:
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            return value.strip()
    return None


def masked(b0: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    key = (mask * (n // 4 + 1))[:n]
    return bytes([b0]) + length + mask + bytes(a ^ b for a, b in zip(payload, key, strict=True))


def deflated(data: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def read_frame(s: socket.socket) -> tuple[int, bytes]:
    """One server frame: (its first byte, payload)."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            assert chunk, f"closed after {data!r}"
            data += chunk
        return data
    b0, b1 = exactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    return b0, exactly(n)


def close_code(s: socket.socket) -> int:
    b0, payload = read_frame(s)
    while b0 & 0x0F != 0x8:  # an echo or a ping before it
        b0, payload = read_frame(s)
    return int(struct.unpack("!H", payload[:2])[0])


JSONISH = b'{"id": 1, "name": "a process", "state": "running", "values": [1, 2, 3]} ' * 1300


@pytest.mark.parametrize("client_compression", ["deflate", None])
@pytest.mark.parametrize("setting", ["on", "off"])
def test_echo_round_trips_with_compression_on_or_off(setting: str, client_compression: str | None,
                                                     request: pytest.FixtureRequest) -> None:
    """Text and binary, small and up to the limit, compressible or not: what the client
    sends comes back, whichever side compresses; the extension is agreed exactly when
    the node's setting is on and the client offers it."""
    site: Site = request.getfixturevalue(setting)
    with site.client(compression=client_compression) as client:
        agreed = extensions_of(str(client.response.headers).encode()) if client.response else None
        if site.compression and client_compression:
            assert agreed == "permessage-deflate; client_max_window_bits=12"
            assert [e.name for e in client.protocol.extensions] == ["permessage-deflate"]
        else:
            assert agreed is None and client.protocol.extensions == []
        random_bytes = os.urandom(LIMIT)
        for message in ("hi", "héllo " * 50, JSONISH[:LIMIT].decode(), b"\x00\x01", random_bytes,
                        JSONISH[:LIMIT], "x" * LIMIT):
            client.send(message)
            assert client.recv(timeout=10) == message
        client.send(iter(["frag", "mented " * 20, "text"]))
        assert client.recv(timeout=10) == "frag" + "mented " * 20 + "text"


def test_the_server_compresses_what_it_sends_and_reads_what_it_is_sent(on: Site) -> None:
    """On the wire (raw socket, offering permessage-deflate with context takeover): a
    compressed message is echoed compressed (RSV1), the second copy of a message costs
    a few bytes (context kept), a short one goes uncompressed."""
    s, head = on.raw("Sec-WebSocket-Extensions: permessage-deflate")
    with s:
        assert extensions_of(head) == "permessage-deflate"
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        inflate = zlib.decompressobj(-15)
        message = b'{"type": "update", "state": "running"} ' * 20
        sizes = []
        for _ in range(2):
            s.sendall(masked(0xC1, (z.compress(message) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]))
            b0, payload = read_frame(s)
            assert b0 == 0xC1  # FIN, RSV1, text
            assert inflate.decompress(payload + b"\x00\x00\xff\xff") == message
            sizes.append(len(payload))
        assert sizes[1] < sizes[0] // 3, sizes
        s.sendall(masked(0x81, b"short"))  # uncompressed from the client
        assert read_frame(s) == (0x81, b"short")  # and too short to be worth compressing


def test_a_message_that_inflates_past_the_limit_is_closed_1009(on: Site, off: Site) -> None:
    """ws_max_message_bytes holds on inflated bytes: 200 000 bytes that compress to a few
    hundred close the socket 1009, as the same message uncompressed does."""
    for site, compression in ((on, "deflate"), (off, "deflate"), (on, None)):
        with site.client(compression=compression) as client:
            client.send("a" * (2 * LIMIT))
            with pytest.raises(ConnectionClosed):
                client.recv(timeout=10)
            assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1009


def test_a_bomb_is_closed_1009_and_the_server_goes_on(on: Site) -> None:
    """64 MiB of zeros compressed to 64 KiB, as one frame: closed 1009 (the worker stops
    inflating at the limit), and the next client is served as before."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    bomb = b"".join(z.compress(chunk) for _ in range(64)) + z.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(bomb) < LIMIT
    s, head = on.raw("Sec-WebSocket-Extensions: permessage-deflate")
    with s:
        assert extensions_of(head) == "permessage-deflate"
        s.sendall(masked(0xC2, bomb))
        assert close_code(s) == 1009
    with on.client(compression="deflate") as client:
        client.send("still here")
        assert client.recv(timeout=10) == "still here"


@pytest.mark.parametrize(("offer", "frame", "code"), [
    (None, masked(0xC1, deflated(b"hello")), 1002),
    ("permessage-deflate", masked(0xC9, b"ping"), 1002),
    ("permessage-deflate", masked(0x41, deflated(b"ab")) + masked(0xC0, deflated(b"cd")), 1002),
    ("permessage-deflate", masked(0xE1, deflated(b"rsv2")), 1002),
    ("permessage-deflate", masked(0xC1, b"\xff\xff\xff\xff"), 1007),
    ("permessage-deflate", masked(0xC1, deflated(b"\xff\xfe")), 1007),
], ids=["rsv1-not-agreed", "rsv1-ping", "rsv1-continuation", "rsv1-rsv2", "not-deflate", "inflated-bad-utf8"])
def test_compressed_frames_misused_close_with_their_code(on: Site, offer: str | None, frame: bytes,
                                                        code: int) -> None:
    s, head = on.raw(*([f"Sec-WebSocket-Extensions: {offer}"] if offer else []))
    with s:
        assert (extensions_of(head) is not None) == (offer is not None)
        s.sendall(frame)
        assert close_code(s) == code


@pytest.mark.parametrize(("offer", "answer"), [
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate; unknown=1, "
     'permessage-deflate; client_max_window_bits="10"; server_no_context_takeover',
     "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"),
    ("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=15; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    ("permessage-deflate; client_max_window_bits=16", None),
    ('permessage-deflate; client_max_window_bits="1', None),  # does not parse
    ("x-webkit-deflate-frame", None),
], ids=["first-acceptable", "window-answered", "repeated", "bits-16", "unparsable", "other"])
def test_odd_offers_are_answered_or_declined_never_refused(on: Site, off: Site, offer: str,
                                                          answer: str | None) -> None:
    """RFC 7692 7.1: the first acceptable offer is answered; offers that are not
    acceptable (or a header that does not parse) are declined and the socket opens
    without compression; a node with compression off answers none."""
    for site, expected in ((on, answer), (off, None)):
        s, head = site.raw(f"Sec-WebSocket-Extensions: {offer}")
        with s:
            assert extensions_of(head) == expected
            s.sendall(masked(0x81, b"open"))
            assert read_frame(s) == (0x81, b"open")


@pytest.mark.parametrize("settings", [
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": 9, "client_max_window_bits": 9},
    {"server_max_window_bits": 15, "client_max_window_bits": None, "compress_settings": {"memLevel": 1}},
], ids=["no-context-both-ways", "small-windows", "no-client-window"])
def test_a_websockets_client_with_odd_parameters_round_trips(on: Site, settings: dict[str, object]) -> None:
    factory = ClientPerMessageDeflateFactory(**settings)  # type: ignore[arg-type]
    with on.client(compression=None, extensions=[factory]) as client:
        assert [e.name for e in client.protocol.extensions] == ["permessage-deflate"]
        for message in (JSONISH[:5000].decode(), JSONISH[:LIMIT], os.urandom(50_000), "x"):
            for _ in range(3):  # again: context (or none) both ways
                client.send(message)
                assert client.recv(timeout=10) == message


def test_the_send_queue_counts_compressed_bytes(on: Site, off: Site) -> None:
    """The slow-reader limit (ws_send_queue_bytes, here 1 MiB) is on what is queued on
    the socket: a 3 MiB push that compresses to a few KiB goes to a client that agreed
    to compression, and closes an uncompressed one (1008) as before."""
    with on.client(compression="deflate") as client:
        client.send("big:3000000")
        assert client.recv(timeout=10) == "x" * 3_000_000
    with off.client(compression="deflate") as client:
        client.send("big:3000000")
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=10)
        assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1008


def test_a_socket_a_member_worker_admits_keeps_the_offer(request: pytest.FixtureRequest) -> None:
    """With two workers, a member that admits an upgrade hands the socket to the
    primary (docs/workers.md) with the client's offer, and the primary answers it."""
    site = Site(True, workers=2)
    request.addfinalizer(site.node.close)
    for primary in (False, True):
        for _ in range(200):  # a kept-alive connection the worker asked for accepted
            conn = socket.create_connection(("127.0.0.1", site.port), timeout=10)
            conn.sendall(b"GET /http-server:distro:sys/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = b""
            while len(body) < length:
                body += conn.recv(length - len(body))
            if json.loads(body)["primary"] == primary:
                break
            conn.close()
        else:
            raise AssertionError("no connection reached the worker asked for")
        s, head = site.raw("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover", on=conn)
        with s:
            assert extensions_of(head) == "permessage-deflate; client_no_context_takeover"
            message = b"compressed through the hand-over " * 10
            s.sendall(masked(0xC1, deflated(message)))
            b0, payload = read_frame(s)
            assert b0 == 0xC1
            assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == message


@pytest.mark.parametrize("setting", ["on", "off"])
def test_the_node_pages_socket_is_compressed_by_the_same_setting(setting: str,
                                                                 request: pytest.FixtureRequest) -> None:
    """The node page's live view (JSON every 2 s) goes compressed when the setting is
    on and the browser offers it, as the apps' sockets do."""
    site: Site = request.getfixturevalue(setting)
    reply = requests.post(f"http://127.0.0.1:{site.port}/login", json={"password": "pw"}, timeout=10)
    cookie = f"kinode-auth_zws.os={reply.cookies['kinode-auth_zws.os']}"
    with connect(f"ws://127.0.0.1:{site.port}/http-server:distro:sys/dashboard", open_timeout=10,
                 compression="deflate", additional_headers={"Cookie": cookie}) as client:
        agreed = [e.name for e in client.protocol.extensions]
        assert agreed == (["permessage-deflate"] if site.compression else [])
        view = json.loads(client.recv(timeout=10))
        assert view["node"] == "zws.os"
