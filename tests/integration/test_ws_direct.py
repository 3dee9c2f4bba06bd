"""Direct WebSockets (`WsBindingConfig(direct=True)`) on a real node: the http-server's
worker does the handshake and every check, then hands the client's socket to the
owning process, which from then on reads and writes the frames itself, without the
worker or the kernel in between.

Each test pins one rule an app author relies on, for the blocking stub (`HttpServer`)
and, where cheap, the asyncio one (`AsyncHttpServer`): echo in order, open/close
reported, frames that bypass a stopped kernel and http-server, sockets that outlive an
http-server or kernel restart, closes either way, an owner's death (also after a
restart), the limits, pings, text made valid, auth, non-direct bindings beside direct
ones, unbinding, an owner too busy to take its socket, several workers, compression.

The apps below are ordinary porch apps (`handle_request` with a ws handler and
on_open/on_close); a text message "cmd:<verb> <arg>" asks them to do something
observable, and they print what they were told (the tests read their logs).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from support.node import SERVING, Node, children, free_port, running, stopped, wait_for

NODE = "direct.os"
PASSWORD = "direct pass"
BLOCKING = "echo:direct:pub.os"
ASYNC = "aecho:direct:pub.os"
VICTIM = "victim:direct:pub.os"
APPS = (BLOCKING, ASYNC, VICTIM)
MAX_MESSAGE = 20_000
SEND_QUEUE = 65_536
KEY = "dGhlIHNhbXBsZSBub25jZQ=="

# What both apps do with a socket's events; `close(channel)`, `push_all(data)` and
# `unbind(path)` are the stub's own (blocking or asyncio) calls.
COMMON = """
import time
from porch.http.server import send_ws_push

def say(*words):
    print(*words, flush=True)

def on_open(path, channel):
    say("opened", path, channel)

def on_close(channel):
    say("closed", channel)

def make_handler(proc, close, push_all, unbind=None):
    def handler(channel, kind, blob):
        data = blob.bytes if blob is not None else b""
        if kind == "Text" and data.startswith(b"cmd:"):
            verb, _, arg = data[4:].partition(b" ")
            if verb == b"channel":
                send_ws_push(proc, channel, "Text", str(channel).encode())
            elif verb == b"close":
                close(channel)
            elif verb == b"pushclose":
                send_ws_push(proc, channel, "Close", arg)
            elif verb == b"flood":
                count, size = map(int, arg.split())
                for _ in range(count):
                    send_ws_push(proc, channel, "Binary", b"f" * size)
                say("flooded", channel)
            elif verb == b"badutf8":
                send_ws_push(proc, channel, "Text", b"bad \\xff utf8")
            elif verb == b"all":
                push_all(arg)
            elif verb == b"sleep":
                say("sleeping", channel)
                time.sleep(float(arg))
            elif verb == b"unbind":
                unbind(arg.decode())
        elif kind in ("Text", "Binary"):
            send_ws_push(proc, channel, kind, data)
        else:
            say("got", kind, channel, repr(data))
    return handler
"""

BLOCKING_APP = COMMON + """
import porch
from porch.http.server import HttpServer, WsBindingConfig

proc = porch.Process()
server = HttpServer(proc)
server.bind_ws_path("/ws", WsBindingConfig(authenticated=False, direct=True))
server.bind_ws_path("/auth", WsBindingConfig(authenticated=True, direct=True))
server.bind_ws_path("/plain", WsBindingConfig(authenticated=False))
server.bind_ws_path("/gone", WsBindingConfig(authenticated=False, direct=True))
handler = make_handler(proc, server.close_ws,
                       lambda data: server.ws_push_all_channels("/ws", "Text", data),
                       server.unbind_ws_path)
say("READY")
while True:
    server.handle_request(proc.await_message(), lambda req: None, handler,
                          on_open=on_open, on_close=on_close)
"""

ASYNC_APP = COMMON + """
import asyncio
import porch
from porch.http.server import AsyncHttpServer, WsBindingConfig

async def main():
    proc = await porch.AsyncProcess.connect()
    server = AsyncHttpServer(proc)
    tasks = set()

    def close(channel):
        task = asyncio.get_running_loop().create_task(server.close_ws(channel))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    handler = make_handler(proc, close, lambda data: server.ws_push_all_channels("/ws", "Text", data))
    proc.on_request(lambda msg: server.handle_request(msg, lambda req: None, handler,
                                                      on_open=on_open, on_close=on_close))
    await server.bind_ws_path("/ws", WsBindingConfig(authenticated=False, direct=True))
    say("READY")
    await asyncio.Event().wait()

asyncio.run(main())
"""

SOURCES = {BLOCKING: BLOCKING_APP, ASYNC: ASYNC_APP, VICTIM: BLOCKING_APP}


class Site:
    """A node (kernel, http-server) with the apps asked for."""

    def __init__(self, extra_settings: str = "") -> None:
        grants = "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                         for pid in APPS)
        self.node = Node(f'node = "{NODE}"\n[http_server]\nws_max_message_bytes = {MAX_MESSAGE}\n'
                         f"ws_send_queue_bytes = {SEND_QUEUE}\n{extra_settings}" + grants)
        self.port = free_port()

    def start(self, *apps: str) -> None:
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": PASSWORD})
        for app in apps:
            self.spawn(app)
        for app in apps:
            self.node.wait_log(app, "READY", 30)

    def spawn(self, app: str) -> None:
        self.node.spawn(app, SOURCES[app])

    def ws(self, path: str, **kw: Any) -> ClientConnection:
        kw.setdefault("open_timeout", 10)
        kw.setdefault("close_timeout", 10)
        kw.setdefault("legacy", True)  # returned directly, not only as a context manager
        return connect(f"ws://127.0.0.1:{self.port}{path}", **kw)

    def cookie(self) -> str:
        r = requests.post(f"http://127.0.0.1:{self.port}/login", json={"password": PASSWORD}, timeout=10)
        return str(r.cookies[f"kinode-auth_{NODE}"])

    def http_server_pids(self) -> list[int]:
        """The keeper and its workers."""
        keeper = self.node.procs["http-server"].pid
        return [keeper, *children(keeper)]

    def serving(self) -> int:
        return self.node.log("http-server").count(SERVING)


@contextmanager
def site_of(*apps: str, extra_settings: str = "") -> Iterator[Site]:
    """A node of its own, stopped whatever happens (also when it fails to start)."""
    site = Site(extra_settings)
    try:
        site.start(*apps)
        yield site
    finally:
        site.node.close()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with site_of(BLOCKING, ASYNC) as s:
        yield s


def echoes(ws: ClientConnection, message: str | bytes) -> None:
    ws.send(message)
    assert ws.recv(timeout=10) == message


def channel_of(ws: ClientConnection) -> int:
    ws.send("cmd:channel")
    return int(ws.recv(timeout=10))


def closed_with(ws: ClientConnection, timeout: float = 10) -> tuple[int | None, str | None]:
    """The close code and reason the client got, failing if the socket stays open."""
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=timeout)  # frames still on their way are skipped
            assert time.monotonic() - started < timeout, "the socket stayed open"
    return ws.close_code, ws.close_reason


def logged(site: Site, app: str, line: str, timeout: float = 15) -> None:
    """`line` (a whole line) in the app's log."""
    wait_for(lambda: f"\n{line}\n" in "\n" + site.node.log(app), timeout,
             what=f"{line!r} in the log of {app}")


# ---------------------------------------------------------------------------- raw clients


def upgrade_request(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def masked(opcode_byte: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    return (bytes([opcode_byte, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def head_of(s: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    return head


def read_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError(data)
        data += chunk
    return data


def read_frame(s: socket.socket) -> tuple[int, bytes]:
    """One server frame (unmasked): (opcode, payload). EOFError at the end."""
    b0, b1 = read_exact(s, 2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exact(s, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exact(s, 8))[0]
    return b0 & 0x0F, read_exact(s, length)


def raw_client(port: int, path: str, *, rcvbuf: int | None = None, early: bytes = b"") -> socket.socket:
    """A handshaken raw client (`early`: frames sent in the same write as the request)."""
    s = socket.socket()
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: a small window
    s.settimeout(10)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(upgrade_request(path) + early)
        head = head_of(s)
        assert head.startswith(b"HTTP/1.1 101 "), head
    except BaseException:
        s.close()
        raise
    return s


# ---------------------------------------------------------------------------- 1: echo, open, close


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_echo_in_order_and_open_close_reach_the_app(site: Site, app: str) -> None:
    """Text and binary messages come back in order, each on its own socket (two
    interleaved), push-to-all reaches both, and on_open/on_close see the channel."""
    with site.ws(f"/{app}/ws") as one, site.ws(f"/{app}/ws") as two:
        ch1, ch2 = channel_of(one), channel_of(two)
        assert ch1 != ch2
        logged(site, app, f"opened /ws {ch1}")
        logged(site, app, f"opened /ws {ch2}")
        messages: list[str | bytes] = [f"text {i} é" if i % 2 else f"binary {i}".encode() for i in range(200)]
        for m in messages:
            one.send(m)
            two.send(m + "!" if isinstance(m, str) else m + b"!")
        assert [one.recv(timeout=10) for _ in messages] == messages
        assert [two.recv(timeout=10) for _ in messages] == [
            m + "!" if isinstance(m, str) else m + b"!" for m in messages]
        echoes(one, b"\x00" * 15_000)  # a 16-bit length, under the limit
        one.send("cmd:all to everyone")
        assert (one.recv(timeout=10), two.recv(timeout=10)) == ("to everyone", "to everyone")
    logged(site, app, f"closed {ch1}")
    logged(site, app, f"closed {ch2}")


def test_a_frame_sent_with_the_handshake_reaches_the_app(site: Site) -> None:
    """Frames the client wrote right behind its upgrade request were read by the worker
    with the head: they go to the process with the socket, none is lost."""
    first, second = masked(0x81, b"early bird"), masked(0x82, b"\x01\x02")
    with raw_client(site.port, f"/{BLOCKING}/ws", early=first + second) as s:
        assert read_frame(s) == (0x1, b"early bird")
        assert read_frame(s) == (0x2, b"\x01\x02")


# ---------------------------------------------------------------------------- 2: bypass


def test_frames_bypass_a_stopped_kernel_and_http_server(site: Site) -> None:
    """With the kernel and the whole http-server (keeper and workers) SIGSTOPped, direct
    sockets still echo and push-to-all still reaches them: nothing between client and
    process. Once they run again, the node serves new sockets as before."""
    with site.ws(f"/{BLOCKING}/ws") as blocking, site.ws(f"/{ASYNC}/ws") as asyncio_:
        echoes(blocking, "before")
        echoes(asyncio_, "before")
        with stopped(site.node.procs["kernel"].pid, *site.http_server_pids()):
            for i in range(20):
                echoes(blocking, f"kernel stopped {i}")
                echoes(asyncio_, f"kernel stopped {i}".encode())
            blocking.send("cmd:all pushed to all")
            assert blocking.recv(timeout=10) == "pushed to all"
        echoes(blocking, "after")
        echoes(asyncio_, "after")
    with site.ws(f"/{BLOCKING}/ws") as again:
        echoes(again, "a new socket")
    with site.ws(f"/{BLOCKING}/plain") as plain:
        echoes(plain, "the kernel and the worker work")


# ---------------------------------------------------------------------------- 3: http-server restarts


def test_http_server_restarts_leave_direct_sockets_open() -> None:
    """A graceful restart (SIGHUP), a crashed worker (kill -9) and a stop and start of
    the whole http-server, then a kernel's kill -9 and start, leave an open direct
    socket open and echoing (also while there is no kernel); its owner is told no close
    for it (push-to-all still reaches it); the restored binding is still direct."""
    with site_of(BLOCKING) as site:
        ws = site.ws(f"/{BLOCKING}/ws")
        try:
            channel = channel_of(ws)
            time.sleep(0.8)  # open channels are written down (debounced): a crash knows of it

            def restarted(how: str) -> None:
                echoes(ws, f"after {how}")
                wait_for(lambda: fresh_echo(site, f"new after {how}"), 30, 0.2,
                         f"a new socket echoing after {how}")
                time.sleep(1.0)  # room for a wrong close event to arrive
                assert f"closed {channel}\n" not in site.node.log(BLOCKING), f"told closed after {how}"
                ws.send("cmd:all still listed")
                assert ws.recv(timeout=10) == "still listed"

            old = children(site.node.procs["http-server"].pid)
            served = site.serving()
            site.node.procs["http-server"].send_signal(signal.SIGHUP)
            wait_for(lambda: site.serving() > served, 30, what="the new worker serving")
            wait_for(lambda: not any(running(pid) for pid in old), 30, what="the old worker gone")
            restarted("SIGHUP")

            old = children(site.node.procs["http-server"].pid)
            served = site.serving()
            for pid in old:
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: site.serving() > served, 30, what="the replaced worker serving")
            restarted("a worker's kill -9")

            old = children(site.node.procs["http-server"].pid)
            site.node.stop("http-server")
            wait_for(lambda: not any(running(pid) for pid in old), 30, what="the worker gone")
            site.node.start("http-server", "--port", str(site.port), env={"PORCH_PASSWORD": PASSWORD})
            restarted("a stop and start")

            # The restored binding is still direct: a new socket survives a stopped http-server.
            with site.ws(f"/{BLOCKING}/ws") as fresh, stopped(*site.http_server_pids()):
                echoes(fresh, "direct after the restart")

            # The kernel dies and comes back: the socket never passed through it.
            re_registered = site.node.log("http-server").count("http-server:distro:sys: re-registered")
            site.node.kill("kernel")
            echoes(ws, "no kernel at all")
            site.node.start("kernel")
            wait_for(lambda: site.node.log("http-server").count("http-server:distro:sys: re-registered")
                     > re_registered, 30, what="the http-server on the new kernel")
            restarted("a kernel restart")
        finally:
            ws.close()


def open_sockets(site: Site) -> int:
    """The sockets the http-server counts open (its status page, from loopback)."""
    status = requests.get(f"http://127.0.0.1:{site.port}/http-server:distro:sys/status", timeout=10)
    assert status.status_code == 200, status.text
    return int(status.json()["websockets"])


def test_an_end_while_the_kernel_is_away_is_told_once_it_is_back() -> None:
    """A held socket that ends while there is no kernel: the owner cannot tell the
    worker then, and tells it once the kernel is back (the worker lets go of the
    socket: it is no longer counted open)."""
    with site_of(BLOCKING) as site:
        ws = site.ws(f"/{BLOCKING}/ws")
        echoes(ws, "held")
        assert open_sockets(site) == 1
        site.node.kill("kernel")
        ws.close()
        logged(site, BLOCKING, f"closed {channel_of_closed(site)}")
        site.node.start("kernel")
        wait_for(lambda: open_sockets(site) == 0, 30, what="the worker told of the end")


def channel_of_closed(site: Site) -> int:
    """The channel of the last socket the blocking app was told opened."""
    opened = [line for line in site.node.log(BLOCKING).splitlines() if line.startswith("opened ")]
    return int(opened[-1].split()[-1])


def test_an_owner_dying_after_an_http_server_restart_still_closes_its_sockets_1001() -> None:
    """The 1001 (going away) of an owner's death is not lost to a graceful restart of
    the http-server (SIGHUP) while the socket was open: the old worker handed its
    descriptor to the new one, which tells the client."""
    with site_of(BLOCKING) as site:
        ws = site.ws(f"/{BLOCKING}/ws")
        try:
            echoes(ws, "before")
            old = children(site.node.procs["http-server"].pid)
            served = site.serving()
            site.node.procs["http-server"].send_signal(signal.SIGHUP)
            wait_for(lambda: site.serving() > served, 30, what="the new worker serving")
            wait_for(lambda: not any(running(pid) for pid in old), 30, what="the old worker gone")
            echoes(ws, "after the restart")
            site.node.kill(BLOCKING)
            assert closed_with(ws)[0] == 1001
        finally:
            ws.close()


def fresh_echo(site: Site, text: str) -> bool:
    """A new socket opens and echoes (False while the upgrade is refused: not yet up)."""
    try:
        with site.ws(f"/{BLOCKING}/ws") as fresh:
            echoes(fresh, text)
            return True
    except (OSError, InvalidStatus):
        return False


# ---------------------------------------------------------------------------- 4, 5: closes


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_the_app_closes_a_direct_socket(site: Site, app: str) -> None:
    """close_ws closes with 1000; a pushed Close closes with 1000 and its blob as the
    reason."""
    with site.ws(f"/{app}/ws") as ws:
        ws.send("cmd:close")
        assert closed_with(ws) == (1000, "")
    with site.ws(f"/{app}/ws") as ws:
        ws.send("cmd:pushclose done here")
        assert closed_with(ws) == (1000, "done here")


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_a_client_close_reaches_on_close(site: Site, app: str) -> None:
    """The client's close is answered (its code echoed), the ws handler gets the Close
    with its reason as for any binding, and on_close runs for that channel."""
    ws = site.ws(f"/{app}/ws")
    channel = channel_of(ws)
    ws.close(1000, "bye now")
    assert ws.close_code == 1000
    logged(site, app, f"got Close {channel} b'bye now'")
    logged(site, app, f"closed {channel}")


# ---------------------------------------------------------------------------- 6: owner death


def test_kill_9_of_the_owner_closes_its_direct_sockets_1001(site: Site) -> None:
    """The process holding the socket dies: the client is closed with 1001 (going away)
    within a few seconds, and the restarted owner serves fresh sockets."""
    site.spawn(VICTIM)
    try:
        site.node.wait_log(VICTIM, "READY", 30)
        ws = site.ws(f"/{VICTIM}/ws")
        echoes(ws, "alive")
        site.node.kill(VICTIM)
        code, _ = closed_with(ws, timeout=10)
        assert code == 1001
        site.spawn(VICTIM)
        site.node.wait_log(VICTIM, "READY", 30)
        with site.ws(f"/{VICTIM}/ws") as again:
            echoes(again, "back")
    finally:
        site.node.kill(VICTIM)


# ---------------------------------------------------------------------------- 7: limits


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_a_message_over_ws_max_message_bytes_closes_1009(site: Site, app: str) -> None:
    """The node's ws_max_message_bytes holds in the process: a message of exactly the
    limit arrives, one byte more closes the socket with 1009 and on_close runs."""
    with site.ws(f"/{app}/ws", max_size=None) as ws:
        channel = channel_of(ws)
        echoes(ws, "x" * MAX_MESSAGE)
        ws.send("x" * (MAX_MESSAGE + 1))
        assert closed_with(ws)[0] == 1009
    logged(site, app, f"closed {channel}")


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_a_client_that_never_reads_is_closed_1008_and_the_app_goes_on(site: Site, app: str) -> None:
    """A client that stops reading while the app pushes far more than ws_send_queue_bytes
    is closed (with 1008, if its close frame gets through); the pushes never block the
    app (it finishes the flood and serves others), and on_close runs."""
    s = raw_client(site.port, f"/{app}/ws", rcvbuf=4096)
    with s:
        s.sendall(masked(0x81, b"cmd:channel"))
        opcode, payload = read_frame(s)
        channel = int(payload)
        s.sendall(masked(0x81, b"cmd:flood 400 32768"))  # 13 MB, never read
        logged(site, app, f"flooded {channel}", 30)
        logged(site, app, f"closed {channel}", 30)
        with site.ws(f"/{app}/ws") as other:
            echoes(other, "not held up")
        codes = []
        try:
            while True:
                opcode, payload = read_frame(s)
                if opcode == 0x8:
                    codes.append(struct.unpack("!H", payload[:2])[0])
        except (EOFError, ConnectionResetError):
            pass  # the server closed the connection: what matters
        assert codes in ([], [1008])


# ---------------------------------------------------------------------------- 8, 9: pings, text


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_a_client_ping_gets_a_pong(site: Site, app: str) -> None:
    """A client's ping is answered with a pong, and told to the app as for any binding."""
    with site.ws(f"/{app}/ws") as ws:
        channel = channel_of(ws)
        assert ws.ping(b"are you there").wait(10)
        echoes(ws, "still fine")
    logged(site, app, f"got Ping {channel} b'are you there'")


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_text_pushed_as_invalid_utf8_arrives_valid(site: Site, app: str) -> None:
    """A Text push that is not UTF-8 arrives as valid text (U+FFFD), not a broken frame
    (which the client would close 1007)."""
    with site.ws(f"/{app}/ws") as ws:
        ws.send("cmd:badutf8")
        assert ws.recv(timeout=10) == "bad \ufffd utf8"
        echoes(ws, "still open")


@pytest.mark.parametrize(("frame", "code"), [
    (masked(0xC1, b"rsv1"), 1002),
    (masked(0x81, b"\xff\xfe"), 1007),
], ids=["rsv1", "bad-utf8"])
def test_a_malformed_client_frame_closes_with_its_code(site: Site, frame: bytes, code: int) -> None:
    """The process checks client frames as the worker does (RFC 6455): a protocol error
    closes with its code, and the frame reaches no handler."""
    with raw_client(site.port, f"/{BLOCKING}/ws") as s:
        s.sendall(frame)
        opcode, payload = read_frame(s)
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == code


# ---------------------------------------------------------------------------- 10, 11: auth, plain


def test_auth_applies_to_a_direct_binding(site: Site) -> None:
    """authenticated=True: no cookie is 401, a foreign Origin with the cookie is 403
    (no cross-site hijacking), the cookie from the node's own page opens and echoes."""
    with pytest.raises(InvalidStatus) as refused:
        site.ws(f"/{BLOCKING}/auth")
    assert refused.value.response.status_code == 401
    cookie = {"Cookie": f"kinode-auth_{NODE}={site.cookie()}"}
    with pytest.raises(InvalidStatus) as hijack:
        site.ws(f"/{BLOCKING}/auth", additional_headers=cookie, origin="http://evil.example")  # type: ignore[arg-type]
    assert hijack.value.response.status_code == 403
    with site.ws(f"/{BLOCKING}/auth", additional_headers=cookie) as ws:
        channel = channel_of(ws)
        echoes(ws, "authenticated")
    logged(site, BLOCKING, f"opened /auth {channel}")


def test_a_non_direct_binding_beside_direct_ones_keeps_working(site: Site) -> None:
    """The same app's ordinary binding (frames through the worker and the kernel) opens,
    echoes, closes and reports as before."""
    with site.ws(f"/{BLOCKING}/plain") as ws:
        channel = channel_of(ws)
        for i in range(20):
            echoes(ws, f"plain {i}" if i % 2 else f"plain {i}".encode())
        ws.send("cmd:pushclose plain done")
        assert closed_with(ws) == (1000, "plain done")
    logged(site, BLOCKING, f"opened /plain {channel}")
    logged(site, BLOCKING, f"closed {channel}")


# ---------------------------------------------------------------------------- compression


def test_compression_agreed_in_the_handshake_holds_on_a_direct_socket() -> None:
    """With ws_compression on, the worker agrees permessage-deflate in the handshake and
    the process speaks it: large (compressed) and small messages echo both ways, with
    the kernel and the http-server stopped (the socket is direct all the same)."""
    with site_of(BLOCKING, extra_settings="ws_compression = true\n") as site, \
            site.ws(f"/{BLOCKING}/ws") as ws:
        assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
        for message in ("small", "large " * 3000, b"b" * 19_000, b"\x00"):
            echoes(ws, message)
        with stopped(site.node.procs["kernel"].pid, *site.http_server_pids()):
            for message in ("small", "large " * 3000, b"b" * 19_000, b"\x00"):
                echoes(ws, message)


# ---------------------------------------------------------------------------- more


def test_unbinding_a_direct_path_closes_its_sockets_1001(site: Site) -> None:
    """The owner unbinds a direct path: the sockets it holds on it close with 1001 (as
    on any binding), on_close runs once, and the path is gone (404)."""
    ws = site.ws(f"/{BLOCKING}/gone")
    channel = channel_of(ws)
    with site.ws(f"/{BLOCKING}/ws") as other:
        other.send("cmd:unbind /gone")
        assert closed_with(ws)[0] == 1001
        logged(site, BLOCKING, f"closed {channel}")
        echoes(other, "the others stay")
    with pytest.raises(InvalidStatus) as gone:
        site.ws(f"/{BLOCKING}/gone")
    assert gone.value.response.status_code == 404
    time.sleep(0.5)
    assert (site.node.log(BLOCKING) + "\n").count(f"closed {channel}\n") == 1


def test_an_owner_too_busy_to_take_its_socket_leaves_it_served_by_the_worker(site: Site) -> None:
    """An owner that does not take an offered socket in time (busy for 7 s here): the
    worker serves it as on any binding; the frames sent meanwhile are not lost, and the
    app sees one open, its messages, and can push and close as usual."""
    with site.ws(f"/{BLOCKING}/ws") as busy:
        busy_channel = channel_of(busy)
        busy.send("cmd:sleep 7")
        logged(site, BLOCKING, f"sleeping {busy_channel}")
        with site.ws(f"/{BLOCKING}/ws") as late:
            late.send("sent while nobody took the socket")
            assert late.recv(timeout=20) == "sent while nobody took the socket"
            channel = channel_of(late)
            echoes(late, b"binary too")
            late.send("cmd:pushclose served here")
            assert closed_with(late) == (1000, "served here")
        echoes(busy, "awake")
    logged(site, BLOCKING, f"opened /ws {channel}")
    logged(site, BLOCKING, f"closed {channel}")
    assert site.node.log(BLOCKING).count(f"opened /ws {channel}\n") == 1


def test_direct_sockets_admitted_by_any_of_several_workers() -> None:
    """With [http_server] workers = 2, a direct upgrade that a member worker admits is
    direct too: every socket echoes with the kernel and the whole http-server stopped."""
    with site_of(BLOCKING, ASYNC, extra_settings="workers = 2\n") as site:
        wait_for(lambda: site.serving() >= 2, 30, what="two workers serving")
        clients = [site.ws(f"/{app}/ws") for app in (BLOCKING, ASYNC) for _ in range(8)]
        try:
            for i, ws in enumerate(clients):
                echoes(ws, f"before {i}")
            with stopped(site.node.procs["kernel"].pid, *site.http_server_pids()):
                for i, ws in enumerate(clients):
                    echoes(ws, f"stopped {i}")
        finally:
            for ws in clients:
                ws.close()
