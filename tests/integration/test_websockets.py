"""Server-side WebSockets with a real kernel, http-server, processes and WS clients.

docs/kinode.md §12 items 41-50, adapted, with Kinode's WebSocket defects fixed (each
fix named in its test), plus slow readers and owners that die.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

import porch
from porch.wire import http_pb2
from support.node import Node, children, free_port, wait_for

PASSWORD = "ws pass"
NODE = "ws.os"
APP_IDS = set(re.findall(r"[a-z0-9-]+:[a-z0-9-]+:pub\.os", Path(__file__).read_text()))
Kind = http_pb2.HttpServerError.Kind


class Site:
    def __init__(self) -> None:
        grants = "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                         for pid in sorted(APP_IDS))
        self.node = Node(f'node = "{NODE}"\n[http_server]\nmax_websockets = 40\n'
                         "ws_send_queue_bytes = 1048576\n" + grants)
        self.port = free_port()
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": PASSWORD})

    def ws(self, path: str, **kw: Any) -> ClientConnection:
        kw.setdefault("open_timeout", 10)
        kw.setdefault("legacy", True)  # returned directly, not only as a context manager
        return connect(f"ws://127.0.0.1:{self.port}{path}", **kw)

    def cookie(self) -> str:
        r = requests.post(f"http://127.0.0.1:{self.port}/login", json={"password": PASSWORD}, timeout=10)
        return str(r.cookies[f"kinode-auth_{NODE}"])


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    try:
        yield s
    finally:
        s.node.close()


def act(proc: porch.Process, action: http_pb2.HttpServerAction, blob: bytes | None = None,
        expect: bool = True) -> http_pb2.HttpServerResult | None:
    if not expect:
        proc.send_request("http-server:distro:sys", action.SerializeToString(), blob=blob)
        return None
    reply = proc.send_and_await_response("http-server:distro:sys", action.SerializeToString(), blob=blob)
    return http_pb2.HttpServerResult.FromString(reply.body)


def ws_bind(proc: porch.Process, path: str, authenticated: bool = False, extension: bool = False) -> None:
    a = http_pb2.HttpServerAction()
    a.web_socket_bind.path, a.web_socket_bind.authenticated = path, authenticated
    a.web_socket_bind.extension = extension
    result = act(proc, a)
    assert result is not None and result.WhichOneof("result") == "ok"


def push(proc: porch.Process, channel: int, kind: str, blob: bytes | None,
         expect: bool = True) -> http_pb2.HttpServerResult | None:
    a = http_pb2.HttpServerAction()
    a.web_socket_push.channel_id = channel
    a.web_socket_push.message_type = http_pb2.WsMessageType.Value(kind)  # type: ignore[assignment]
    return act(proc, a, blob, expect)


def close(proc: porch.Process, channel: int) -> http_pb2.HttpServerResult | None:
    a = http_pb2.HttpServerAction()
    a.web_socket_close.channel_id = channel
    return act(proc, a)


def event(proc: porch.Process, timeout: float = 5) -> tuple[str, Any, porch.Message]:
    msg = proc.await_message(timeout=timeout)
    req = http_pb2.HttpServerRequest.FromString(msg.body)
    which = req.WhichOneof("request")
    return which or "", getattr(req, which), msg  # type: ignore[arg-type]


def opened(proc: porch.Process) -> tuple[str, int]:
    which, data, _ = event(proc)
    assert which == "web_socket_open"
    return data.path, data.channel_id


def err(result: http_pb2.HttpServerResult | None) -> str:
    assert result is not None and result.WhichOneof("result") == "err"
    return http_pb2.HttpServerError.Kind.Name(result.err.kind)


# ---------------------------------------------------------------------------- 41-47


def test_41_to_43_open_push_both_ways(site: Site) -> None:
    app = site.node.process("w41:pkg:pub.os")
    ws_bind(app, "/ws/:room")
    with site.ws("/w41:pkg:pub.os/ws/room1") as client:
        path, channel = opened(app)
        assert path == "/ws/room1", "the actual path below the app prefix, not the pattern"
        client.send("hi")
        which, data, msg = event(app)
        assert (which, http_pb2.WsMessageType.Name(data.message_type), msg.blob.bytes) == (  # type: ignore[union-attr]
            "web_socket_push", "Text", b"hi")
        client.send(b"\x00\x01")
        which, data, msg = event(app)
        assert http_pb2.WsMessageType.Name(data.message_type) == "Binary" and msg.blob.bytes == b"\x00\x01"  # type: ignore[union-attr]
        result = push(app, channel, "Text", b"hello")
        assert result is not None and result.WhichOneof("result") == "ok"
        assert client.recv(timeout=5) == "hello"
        push(app, channel, "Binary", b"\xff\xfe")
        assert client.recv(timeout=5) == b"\xff\xfe"
        push(app, channel, "Text", b"bad \xff utf8")
        assert client.recv(timeout=5) == "bad \ufffd utf8", "invalid UTF-8 arrives as U+FFFD (as Kinode)"


def test_44_push_errors(site: Site) -> None:
    app = site.node.process("w44:pkg:pub.os")
    other = site.node.process("w44x:pkg:pub.os")
    ws_bind(app, "/ws")
    with site.ws("/w44:pkg:pub.os/ws"):
        _, channel = opened(app)
        assert err(push(app, channel, "Text", None)) == "NoBlob"
        assert err(push(app, channel, "Ping", b"x" * 126)) == "WsPingPongTooLong"
        assert err(push(other, channel, "Text", b"not yours")) == "WsChannelNotFound"
        assert err(close(other, channel)) == "WsChannelNotFound"
        assert err(push(app, 12345, "Text", b"nobody")) == "WsChannelNotFound"


def test_45_client_close_is_reported_push_close_then_close(site: Site) -> None:
    app = site.node.process("w45:pkg:pub.os")
    ws_bind(app, "/ws")
    client = site.ws("/w45:pkg:pub.os/ws")
    _, channel = opened(app)
    client.close(1000, "bye now")
    which, data, msg = event(app)
    assert which == "web_socket_push" and http_pb2.WsMessageType.Name(data.message_type) == "Close"
    assert msg.blob is not None and msg.blob.bytes == b"bye now"
    which, data, _ = event(app)
    assert (which, data.channel_id) == ("web_socket_close", channel)


def test_46_process_close_closes_and_server_stays_responsive(site: Site) -> None:
    """Kinode D2 fixed: this deadlocked Kinode's server."""
    app = site.node.process("w46:pkg:pub.os")
    ws_bind(app, "/ws")
    client = site.ws("/w46:pkg:pub.os/ws")
    _, channel = opened(app)
    result = close(app, channel)
    assert result is not None and result.WhichOneof("result") == "ok"
    with pytest.raises(ConnectionClosed):
        client.recv(timeout=5)
    assert client.close_code == 1000
    assert err(push(app, channel, "Text", b"late")) == "WsChannelNotFound"
    with site.ws("/w46:pkg:pub.os/ws"):  # and the server still works
        opened_again = [e for e in _drain(app) if e[0] == "web_socket_open"]
        assert opened_again


def _drain(proc: porch.Process) -> list[tuple[str, Any, porch.Message]]:
    out = []
    while True:
        try:
            out.append(event(proc, timeout=1))
        except porch.Timeout:
            return out


def test_47_pushed_close_is_a_close(site: Site) -> None:
    """Kinode D1 fixed: a pushed Close aborted the whole node."""
    app = site.node.process("w47:pkg:pub.os")
    ws_bind(app, "/ws")
    client = site.ws("/w47:pkg:pub.os/ws")
    _, channel = opened(app)
    result = push(app, channel, "Close", b"done here")
    assert result is not None and result.WhichOneof("result") == "ok"
    with pytest.raises(ConnectionClosed):
        client.recv(timeout=5)
    assert (client.close_code, client.close_reason) == (1000, "done here")


# ---------------------------------------------------------------------------- 48-50


def test_48_open_socket_limit(site: Site) -> None:
    """The limit is a setting (40 here; the default is 4096, Kinode's fixed 128)."""
    app = site.node.process("w48:pkg:pub.os")
    ws_bind(app, "/ws")
    status = lambda: requests.get(f"http://127.0.0.1:{site.port}/http-server:distro:sys/status",  # noqa: E731
                                  timeout=10).json()
    clients = []
    try:
        while status()["websockets"] < 40:
            clients.append(site.ws("/w48:pkg:pub.os/ws"))
        with pytest.raises(InvalidStatus) as refused:
            site.ws("/w48:pkg:pub.os/ws")
        assert refused.value.response.status_code == 503
    finally:
        for c in clients:
            c.close()


def test_49_authenticated_websocket(site: Site) -> None:
    app = site.node.process("w49:pkg:pub.os")
    ws_bind(app, "/ws", authenticated=True)
    with pytest.raises(InvalidStatus) as refused:
        site.ws("/w49:pkg:pub.os/ws")
    assert refused.value.response.status_code == 401
    cookie = {"Cookie": f"kinode-auth_{NODE}={site.cookie()}"}
    with site.ws("/w49:pkg:pub.os/ws", additional_headers=cookie):
        assert opened(app)[0] == "/ws"
    # Not in Kinode: a page on another origin cannot ride the user's cookie.
    with pytest.raises(InvalidStatus) as hijack:
        site.ws("/w49:pkg:pub.os/ws", additional_headers=cookie, origin="http://evil.example")  # type: ignore[arg-type]
    assert hijack.value.response.status_code == 403
    ws_bind(app, "/open")
    with site.ws("/w49:pkg:pub.os/open", origin="http://anywhere.example"):  # type: ignore[arg-type]
        pass  # unauthenticated bindings accept anyone, as Kinode


def test_50_extension_protocol(site: Site) -> None:
    app = site.node.process("w50:pkg:pub.os")
    ws_bind(app, "/ext", extension=True)
    with pytest.raises(InvalidStatus) as remote:
        site.ws("/w50:pkg:pub.os/ext", additional_headers={"X-Forwarded-For": "9.9.9.9"})
    assert remote.value.response.status_code == 403
    with site.ws("/w50:pkg:pub.os/ext") as ext:
        _, channel = opened(app)
        a = http_pb2.HttpServerAction()
        ext_push = a.web_socket_ext_push_outgoing
        ext_push.channel_id, ext_push.message_type = channel, http_pb2.Binary
        ext_push.desired_reply_type = http_pb2.MESSAGE_TYPE_RESPONSE
        req_id = app.send_request("http-server:distro:sys", a.SerializeToString(), blob=b"\x01\x02",
                                  expects_response=5)
        frame = ext.recv(timeout=5)
        assert isinstance(frame, bytes)
        envelope = msgpack.unpackb(frame)
        assert envelope == {"WebSocketExtPushData": {"id": req_id, "kinode_message_type": "Response",
                                                     "blob": [1, 2]}}
        # no Ok ack: the extension's answer is the response
        answer = {"WebSocketExtPushData": {"id": req_id, "kinode_message_type": "Response",
                                           "blob": list(b"answer")}}
        ext.send(msgpack.packb(answer))
        reply = app.await_message(timeout=5)
        assert reply.is_response and reply.id == req_id and reply.blob.bytes == b"answer"  # type: ignore[union-attr]
        # an extension-initiated request keeps its id
        ext.send(msgpack.packb({"WebSocketExtPushData": {"id": 77, "kinode_message_type": "Request",
                                                         "blob": [9]}}))
        which, _, msg = event(app)
        assert (which, msg.id, msg.is_request, msg.blob.bytes) == ("web_socket_push", 77, True, b"\x09")  # type: ignore[union-attr]
        # anything else arrives raw
        ext.send(b"\xc1 not msgpack")
        which, _, msg = event(app)
        assert which == "web_socket_push" and msg.blob.bytes == b"\xc1 not msgpack"  # type: ignore[union-attr]
        # Kinode D11 fixed: a Text extension push is MalformedRequest, not NoBlob
        ext_push.message_type = http_pb2.Text
        assert err(act(app, a, b"x")) == "MalformedRequest"


def _masked(payload: bytes) -> bytes:
    """One client Binary frame, masked (with a zero key: the payload as it is)."""
    assert len(payload) < 126
    return bytes((0x82, 0x80 | len(payload))) + b"\0\0\0\0" + payload


def test_a_malformed_extension_frame_does_not_take_the_next_one_down(site: Site) -> None:
    """issue 11 item 7: a WebSocketExtPushData whose blob is a list of other than byte
    values, or whose id is not a u64, raised inside the hub's handling of the socket's
    input, so the frames after it in the same read vanished while the socket stayed
    open. It is dropped like any malformed one, and the frames after it arrive."""
    app = site.node.process("w50m:pkg:pub.os")
    ws_bind(app, "/ext", extension=True)
    sock = socket.create_connection(("127.0.0.1", site.port), timeout=10)
    try:
        sock.sendall(b"GET /w50m:pkg:pub.os/ext HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        _, channel = opened(app)
        frames = [{"id": 1, "kinode_message_type": "Request", "blob": [256]},
                  {"id": -1, "kinode_message_type": "Request", "blob": [1]},
                  {"id": 9, "kinode_message_type": "Request", "blob": [9]}]
        # One write: the frames arrive in one read of the server's.
        sock.sendall(b"".join(_masked(msgpack.packb({"WebSocketExtPushData": f})) for f in frames))
        which, data, msg = event(app)
        assert (which, data.channel_id, msg.id, msg.blob.bytes) == ("web_socket_push", channel, 9, b"\x09")  # type: ignore[union-attr]
    finally:
        sock.close()


# ---------------------------------------------------------------------------- lifecycle, limits


OWNER = """
import porch
from porch.http.server import HttpServer, WsBindingConfig
proc = porch.Process()
server = HttpServer(proc)
server.bind_ws_path("/ws", WsBindingConfig(authenticated=False))
print("READY", flush=True)
while True:
    msg = proc.await_message()
    server.handle_request(msg, lambda req: None,
                          lambda ch, kind, blob: server.ws_push_all_channels("/ws", "Text", blob.bytes))
"""


def test_kill_9_owner_closes_its_sockets_with_a_code(site: Site) -> None:
    site.node.spawn("owner:pkg:pub.os", OWNER)
    site.node.wait_log("owner:pkg:pub.os", "READY")
    client = site.ws("/owner:pkg:pub.os/ws")
    client.send("echo?")
    assert client.recv(timeout=5) == "echo?"
    site.node.kill("owner:pkg:pub.os")
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        client.recv(timeout=5)
    assert time.monotonic() - started < 2.0
    assert client.close_code == 1001
    # the restarted owner sees fresh opens
    site.node.spawn("owner:pkg:pub.os", OWNER)
    site.node.wait_log("owner:pkg:pub.os", "READY")
    with site.ws("/owner:pkg:pub.os/ws") as again:
        again.send("back")
        assert again.recv(timeout=5) == "back"


def test_unbind_closes_the_sockets_opened_on_it(site: Site) -> None:
    app = site.node.process("wun:pkg:pub.os")
    ws_bind(app, "/ws")
    client = site.ws("/wun:pkg:pub.os/ws")
    opened(app)
    a = http_pb2.HttpServerAction()
    a.web_socket_unbind.path = "/ws"
    act(app, a)
    with pytest.raises(ConnectionClosed):
        client.recv(timeout=5)
    with pytest.raises(InvalidStatus) as gone:
        site.ws("/wun:pkg:pub.os/ws")
    assert gone.value.response.status_code == 404


def test_slow_reader_is_closed_while_ten_others_keep_full_speed(site: Site) -> None:
    """A client that stops reading fills its socket, then its send queue, and is closed
    (its owner told WebSocketClose); meanwhile every push to the ten others is
    acknowledged at once and every frame reaches them. Pushes only append to a
    socket's buffer, so nothing waits for the slow one: the bounds below are generous
    "does not stall" bounds, not speed measurements."""
    app = site.node.process("wsl:pkg:pub.os")
    ws_bind(app, "/ws")
    slow = _never_reading_client(site.port, "/wsl:pkg:pub.os/ws")
    slow_channel = opened(app)[1]
    fast = [site.ws("/wsl:pkg:pub.os/ws") for _ in range(10)]
    fast_channels = [opened(app)[1] for _ in fast]
    received = [0] * 10

    def reader(i: int) -> None:
        try:
            while True:
                fast[i].recv(timeout=10)
                received[i] += 1
        except (ConnectionClosed, TimeoutError):
            pass

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(10)]
    for t in threads:
        t.start()
    payload = b"x" * 60_000
    slowest_ack = 0.0
    for n in range(200):  # 12 MB for the slow one: far past its 1 MiB queue
        push(app, slow_channel, "Binary", payload, expect=False)
        for i, ch in enumerate(fast_channels):
            if (n + i) % 10 == 0:  # one push in ten acknowledged, spread over the run
                started = time.monotonic()
                result = push(app, ch, "Text", b"tick")
                slowest_ack = max(slowest_ack, time.monotonic() - started)
                assert result is not None and result.WhichOneof("result") == "ok"
            else:
                push(app, ch, "Text", b"tick", expect=False)
    assert slowest_ack < 3.0, f"a push to a fast socket waited {slowest_ack:.2f} s"
    wait_for(lambda: min(received) >= 200, 10, what="every fast reader to get all 200 frames")
    # The slow one was closed for being slow (1008), its owner told, without holding
    # anyone up; the fast ones are all still open.
    site.node.wait_log("http-server", f"websocket {slow_channel} (wsl:pkg:pub.os): client too slow", 10)
    which, data, _ = event(app, timeout=5)
    assert (which, data.channel_id) == ("web_socket_close", slow_channel)
    assert err(push(app, slow_channel, "Text", b"still there?")) == "WsChannelNotFound"
    for ch in fast_channels:
        push(app, ch, "Text", b"last")
    wait_for(lambda: min(received) >= 201, 10, what="the fast sockets to be open still")
    for c in fast:
        c.close()
    slow.close()


def _never_reading_client(port: int, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_server_restart_disconnects_clients_and_tells_owners(site: Site) -> None:
    app = site.node.process("wrs:pkg:pub.os")
    ws_bind(app, "/ws")
    client = site.ws("/wrs:pkg:pub.os/ws")
    _, channel = opened(app)
    site.node.procs["http-server"].send_signal(signal.SIGHUP)  # the keeper restarts its worker
    with pytest.raises(ConnectionClosed):
        client.recv(timeout=10)
    assert client.close_code == 1012
    which, data, _ = event(app, timeout=10)
    assert (which, data.channel_id) == ("web_socket_close", channel)
    wait_for(lambda: _reconnects(site), 15, 0.2, "the new worker to accept WebSockets")


def _reconnects(site: Site) -> bool:
    try:
        with site.ws("/wrs:pkg:pub.os/ws"):
            return True
    except (OSError, InvalidStatus):
        return False


def test_worker_crash_owners_get_close_when_it_returns(site: Site) -> None:
    app = site.node.process("wcr:pkg:pub.os")
    ws_bind(app, "/ws")
    client = site.ws("/wcr:pkg:pub.os/ws")
    _, channel = opened(app)
    time.sleep(0.8)  # the open channel is written down (debounced 0.5 s)
    keeper = site.node.procs["http-server"].pid
    workers = children(keeper)
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    with pytest.raises(ConnectionClosed):
        client.recv(timeout=10)
    which, data, _ = event(app, timeout=15)
    assert (which, data.channel_id) == ("web_socket_close", channel)



def test_message_larger_than_the_limit_closes_with_1009() -> None:
    n = Node(f'node = "{NODE}"\n[http_server]\nws_max_message_bytes = 1000\n'
             '[[process]]\nid = "wbig:pkg:pub.os"\ncapabilities = ["http-server:distro:sys"]\n')
    try:
        n.start("kernel")
        port = free_port()
        n.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": PASSWORD})
        app = n.process("wbig:pkg:pub.os")
        ws_bind(app, "/ws")
        with connect(f"ws://127.0.0.1:{port}/wbig:pkg:pub.os/ws", open_timeout=10) as client:
            client.send("x" * 1000)
            which, _, msg = event(app, timeout=10)
            while which != "web_socket_push":
                which, _, msg = event(app, timeout=10)
            assert msg.blob is not None and len(msg.blob.bytes) == 1000
            client.send("x" * 1001)
            with pytest.raises(ConnectionClosed):
                client.recv(timeout=5)
            assert client.close_code == 1009
    finally:
        n.close()


def test_secure_websocket_needs_its_subdomain_and_app_cookie(site: Site) -> None:
    app = site.node.process("wsec:pkg:pub.os")
    a = http_pb2.HttpServerAction()
    a.web_socket_secure_bind.path = "/ws"
    result = act(app, a)
    assert result is not None and result.WhichOneof("result") == "ok"
    login = requests.post(f"http://127.0.0.1:{site.port}/login",
                          json={"password": PASSWORD, "subdomain": "wsec:pkg:pub.os"}, timeout=10)
    app_cookie = f"kinode-auth_{NODE}@wsec:pkg:pub.os={login.cookies[f'kinode-auth_{NODE}@wsec:pkg:pub.os']}"
    general = f"kinode-auth_{NODE}={site.cookie()}"
    def on_subdomain(cookie: str) -> ClientConnection:
        # The subdomain's name in the URI (so in Host), the connection to loopback.
        sock = socket.create_connection(("127.0.0.1", site.port), timeout=10)
        return connect(f"ws://pkg-pub-os.localhost:{site.port}/wsec:pkg:pub.os/ws", sock=sock,
                       additional_headers={"Cookie": cookie}, open_timeout=10, legacy=True)

    with pytest.raises(InvalidStatus) as wrong_host:
        site.ws("/wsec:pkg:pub.os/ws", additional_headers={"Cookie": app_cookie})
    assert wrong_host.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as general_only:
        on_subdomain(general)
    assert general_only.value.response.status_code == 401
    with on_subdomain(app_cookie):
        assert opened(app)[0] == "/ws"
