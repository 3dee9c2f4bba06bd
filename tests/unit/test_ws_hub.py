"""The WebSocket hub in-process (issue 11 item 7): a fake exchange for the upgrade, a
fake stub for the kernel's side, and a socket pair for each client connection, on a
real asyncio loop. Each decision is checked with exact values: the refusals of an
upgrade and their order, the 101 and the WebSocketOpen, frames both ways, the slow
reader, an owner that dies or unbinds, frames the kernel cannot deliver, a lost
kernel, extensions, and the figures. The real path (a running node) is tested in
integration/test_websockets.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from porch.address import HOMEPAGE
from porch.http_server import actions
from porch.http_server.auth import cookie_name
from porch.http_server.bindings import BindingTable
from porch.http_server.figures import HttpFigures
from porch.http_server.settings import HttpServerSettings
from porch.http_server.websocket import RECENT_S, Admission, Channel, WsHub
from porch.process.message import Blob, Message, Offline, SendError, Timeout
from porch.wire import http_pb2, kernel_pb2
from support.http_fakes import FakeExchange, fake_auth

NODE = "hub.os"
APP = "app:pkg:pub.os"
OTHER = "other:pkg:pub.os"
SUBDOMAIN = "pkg-pub-os"  # APP's secure subdomain
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's sample key
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WsType = http_pb2.WsMessageType
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


# ---------------------------------------------------------------------- the kernel's side

class FakeProc:
    """The stub as the hub uses it: what it sends is recorded; the registry says
    which processes run; the callbacks the hub registers are the test's to call."""

    def __init__(self) -> None:
        # (target, request, blob payload or None, report_undelivered)
        self.sent: list[tuple[str, http_pb2.HttpServerRequest, bytes | None, bool]] = []
        self.ids: list[int | None] = []  # the id each was sent under (None: the stub's next)
        self.responses: list[tuple[Message, http_pb2.HttpServerRequest, bytes | None]] = []
        self.watched: list[tuple[str, Callable[[str], None]]] = []
        self.registry_asked: list[tuple[float, str]] = []
        self.running = {APP, OTHER}
        self.registry_error: Exception | None = None
        self.offline = False
        self.connected = True
        self.last_heard = 0.0
        self.undelivered: Callable[[SendError], None] | None = None
        self.disconnected: Callable[[], None] | None = None

    def on_undelivered(self, callback: Callable[[SendError], None]) -> None:
        self.undelivered = callback

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self.disconnected = callback

    async def registry(self, timeout: float, process_id: str) -> kernel_pb2.Registry:
        self.registry_asked.append((timeout, process_id))
        if self.registry_error is not None:
            raise self.registry_error
        registry = kernel_pb2.Registry()
        if process_id in self.running:
            registry.entries.add(process_id=process_id)
        return registry

    def watch(self, process_id: str, callback: Callable[[str], None]) -> None:
        self.watched.append((process_id, callback))

    def send_request(self, target: str, body: bytes, *, blob: Blob | None = None, id: int | None = None,
                     report_undelivered: bool = False) -> int:
        if self.offline:
            raise Offline(target, 0, "kernel away")
        if id is not None:
            kernel_pb2.Envelope(id=id)  # as the real stub: an id must fit the envelope's
        request = http_pb2.HttpServerRequest.FromString(body)
        self.sent.append((target, request, None if blob is None else blob.bytes, report_undelivered))
        self.ids.append(id)
        return len(self.sent)

    def respond(self, to: Message, body: bytes = b"", *, blob: Blob | None = None) -> bool:
        self.responses.append((to, http_pb2.HttpServerRequest.FromString(body),
                               None if blob is None else blob.bytes))
        return True

    def __getattr__(self, name: str) -> Any:  # anything else the hub may read
        raise AttributeError(name)

    # -- what was sent, readably

    def told(self) -> list[tuple[str, str, int, int, bytes | None]]:
        """(target, variant, channel id, push type or 0, blob) of each request sent."""
        out = []
        for target, request, blob, _ in self.sent:
            which = request.WhichOneof("request")
            inner = getattr(request, which)
            kind = inner.message_type if which == "web_socket_push" else 0
            out.append((target, which, inner.channel_id, kind, blob))
        return out


# ---------------------------------------------------------------------- the client's side

def masked(opcode: int, payload: bytes = b"", mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """One whole client frame (masked, RFC 6455 5.3)."""
    n = len(payload)
    head = bytes((0x80 | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_body(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


class Client:
    """The client's end of a socket pair: what it sends, and the server's frames
    (never masked) as it reads them."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.data = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def pull(self) -> None:
        while not self.eof:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.data += chunk

    def head(self) -> tuple[str, dict[str, str]]:
        """The server's answer head (status line, headers), taken off what was read."""
        self.pull()
        end = self.data.index(b"\r\n\r\n")
        lines = self.data[:end].decode("latin-1").split("\r\n")
        del self.data[:end + 4]
        headers = dict(line.split(": ", 1) for line in lines[1:])
        return lines[0], headers

    def frames(self) -> list[tuple[int, bytes]]:
        """The whole frames read so far, taken off what was read."""
        self.pull()
        out = []
        while len(self.data) >= 2:
            b0, b1 = self.data[0], self.data[1]
            assert b0 & 0x80 and not b1 & 0x80, "server frames are whole and unmasked"
            n, at = b1 & 0x7F, 2
            if n == 126:
                n, at = int.from_bytes(self.data[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(self.data[2:10], "big"), 10
            if len(self.data) < at + n:
                break
            out.append((b0 & 0x0F, bytes(self.data[at:at + n])))
            del self.data[:at + n]
        return out

    async def frames_until(self, last: Callable[[list[tuple[int, bytes]]], bool],
                           what: str) -> list[tuple[int, bytes]]:
        """The frames read until `last` says they are all."""
        got: list[tuple[int, bytes]] = []

        def done() -> bool:
            got.extend(self.frames())
            return last(got)
        await until(done, what)
        return got

    async def frame(self) -> tuple[int, bytes]:
        """The next frame, the only one to come now."""
        got = await self.frames_until(bool, "a frame")
        assert len(got) == 1, got
        return got[0]

    def ended(self) -> bool:
        """The server closed the socket."""
        self.pull()
        return self.eof

    async def closed_with(self, code: int, reason: str) -> None:
        """The server's close frame, then (once answered, as a client does) the end."""
        assert await self.frame() == (OP_CLOSE, close_body(code, reason))
        self.send(masked(OP_CLOSE, close_body(code)))
        await until(self.ended, "the server to close the socket")
        assert self.data == b""

    def quiet(self) -> bool:
        """Nothing arrived and the socket is still open."""
        self.pull()
        return self.data == b"" and not self.eof


async def until(condition: Callable[[], Any], what: str) -> None:
    """Let the loop run until `condition` holds (a generous bound: no hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


# ---------------------------------------------------------------------- the bed

def upgrade(path: str, *extra: tuple[str, str], method: str = "GET", peer: str = "127.0.0.1",
            drop: tuple[str, ...] = ()) -> FakeExchange:
    """An opening handshake as the listener hands it over; `extra` headers win over
    the usual ones, `drop` leaves some out."""
    headers = [("Host", "localhost:8080"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
               ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", KEY)]
    headers = [h for h in headers if h[0] not in drop] + list(extra)
    return FakeExchange(method, path, headers=headers, peer_ip=peer)


def ws_bind(table: BindingTable, app: str, path: str, *, authenticated: bool = False,
            extension: bool = False, secure: bool = False) -> str:
    """As the app's WebSocketBind (or WebSocketSecureBind) would; the full path."""
    action = http_pb2.HttpServerAction()
    which = "web_socket_secure_bind" if secure else "web_socket_bind"
    variant = getattr(action, which)
    variant.path = path
    variant.extension = extension
    if not secure:
        variant.authenticated = authenticated
    return actions.apply_binding(table, app, which, action, None)


def ws_unbind(table: BindingTable, app: str, path: str) -> str:
    action = http_pb2.HttpServerAction()
    action.web_socket_unbind.path = path
    return actions.apply_binding(table, app, "web_socket_unbind", action, None)


class Bed:
    def __init__(self, state_dir: Path, settings: HttpServerSettings) -> None:
        self.proc = FakeProc()
        self.table = BindingTable()
        self.auth = fake_auth(NODE, password=False)  # the hub checks cookies only
        self.hub = WsHub(settings, self.table, self.auth, self.proc, state_dir)  # type: ignore[arg-type]
        self.clients: list[Client] = []

    async def admit(self, ex: FakeExchange) -> tuple[int, dict[str, str], bytes] | Admission:
        verdict = await self.hub.admit(ex, "HTTP/1.1")  # type: ignore[arg-type]
        if isinstance(verdict, Admission):
            return verdict
        status, headers, body = verdict
        return status, dict(headers), body

    async def connect(self, path: str, *extra: tuple[str, str],
                      leftover: bytes = b"") -> tuple[Channel, Client]:
        """Admit and open an upgrade; the client has read the 101."""
        admission = await self.admit(upgrade(path, *extra))
        assert isinstance(admission, Admission), admission
        server, theirs = socket.socketpair()
        client = Client(theirs)
        self.clients.append(client)
        channel = self.hub.open(server, leftover, admission)
        assert channel is not None
        status, _ = client.head()
        assert status == "HTTP/1.1 101 Switching Protocols"
        return channel, client

    def close(self) -> None:
        for channel in list(self.hub.channels.values()):
            if channel.conn is not None:
                channel.conn.abort()
        for client in self.clients:
            client.sock.close()


def run(state_dir: Path, test: Callable[[Bed], Awaitable[None]], **settings: Any) -> None:
    """Run `test` on a loop of its own; an exception raised in any of the loop's
    callbacks (the hub's handling of a socket's input) fails it too."""
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        bed = Bed(state_dir, HttpServerSettings(**settings))
        try:
            await test(bed)
        finally:
            bed.close()
    asyncio.run(main())
    assert errors == []


def result(body: bytes | None) -> str:
    assert body is not None
    r = http_pb2.HttpServerResult.FromString(body)
    return "ok" if r.WhichOneof("result") == "ok" else http_pb2.HttpServerError.Kind.Name(r.err.kind)


def push(source: str, channel_id: int, kind: int, payload: bytes | None) -> tuple[Message, str, Any]:
    """A WebSocketPush action from `source`, as the gateway hands it to on_push."""
    action = http_pb2.HttpServerAction()
    action.web_socket_push.channel_id = channel_id
    action.web_socket_push.message_type = kind  # type: ignore[assignment]
    msg = Message(7, source, "http-server:distro:sys", True, action.SerializeToString(),
                  None if payload is None else Blob(payload), expects_response=True)
    return msg, "web_socket_push", action


def close_action(source: str, channel_id: int) -> tuple[Message, str, Any]:
    action = http_pb2.HttpServerAction()
    action.web_socket_close.channel_id = channel_id
    msg = Message(8, source, "http-server:distro:sys", True, action.SerializeToString(),
                  expects_response=True)
    return msg, "web_socket_close", action


# ---------------------------------------------------------------------- admit

@pytest.mark.parametrize(("ex", "status", "header"), [
    (upgrade("/x", method="POST"), 405, ("Allow", "GET")),
    (upgrade("/x", ("Connection", "keep-alive")), 400, None),
    (upgrade("/x", drop=("Connection",)), 400, None),
    (upgrade("/x", ("Sec-WebSocket-Version", "8")), 426, ("Sec-WebSocket-Version", "13")),
    (upgrade("/x", drop=("Sec-WebSocket-Key",)), 400, None),
    (upgrade("/x", ("Sec-WebSocket-Key", base64.b64encode(b"short").decode())), 400, None),
])
def test_a_bad_handshake_is_refused_before_anything_else(tmp_path: Path, ex: FakeExchange, status: int,
                                                         header: tuple[str, str] | None) -> None:
    async def test(bed: Bed) -> None:
        bed.hub.draining = True  # a later check: the handshake's answer comes first
        got = await bed.admit(ex)
        assert isinstance(got, tuple) and got[0] == status
        if header is not None:
            assert got[1][header[0]] == header[1]
        assert bed.proc.registry_asked == []

    run(tmp_path, test)


def test_http_1_0_is_400(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        got = await bed.hub.admit(upgrade(f"/{APP}/ws"), "HTTP/1.0")  # type: ignore[arg-type]
        assert isinstance(got, tuple) and got[0] == 400

    run(tmp_path, test)


def test_a_draining_worker_answers_503_with_retry_after(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        bed.hub.draining = True
        got = await bed.admit(upgrade(f"/{APP}/ws"))
        assert got == (503, {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "0"},
                       b"this server process is being replaced; connect again\n")
        assert bed.proc.registry_asked == []

    run(tmp_path, test)


def test_the_socket_limit_answers_503(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        await bed.connect(f"/{APP}/ws")
        asked = len(bed.proc.registry_asked)
        got = await bed.admit(upgrade(f"/{APP}/ws"))
        assert isinstance(got, tuple) and (got[0], got[2]) == (503, b"too many open websockets\n")
        assert "Retry-After" not in got[1]
        assert len(bed.proc.registry_asked) == asked

    run(tmp_path, test, max_websockets=1)


def test_no_binding_is_404_and_so_is_an_unbound_one(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        ws_unbind(bed.table, APP, "/ws")  # a tombstone
        for path in (f"/{APP}/nothing", f"/{APP}/ws", f"/{APP}/ws/below"):
            got = await bed.admit(upgrade(path))
            assert isinstance(got, tuple) and (got[0], got[2]) == (404, b"no websocket bound here\n"), path
        assert bed.proc.registry_asked == []

    run(tmp_path, test)


def test_an_authenticated_binding_needs_the_login_cookie(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=True)
        for cookie in ([], [("Cookie", "other=1")], [("Cookie", f"{cookie_name(NODE)}=not.a.token")]):
            got = await bed.admit(upgrade(f"/{APP}/ws", *cookie))
            assert isinstance(got, tuple) and (got[0], got[2]) == (401, b"authentication required\n")
        assert bed.proc.registry_asked == []
        token = bed.auth.issue()
        got = await bed.admit(upgrade(f"/{APP}/ws", ("Cookie", f"{cookie_name(NODE)}={token}")))
        assert isinstance(got, Admission)

    run(tmp_path, test)


def test_a_secure_binding_is_opened_on_its_subdomain_with_its_own_cookie(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", secure=True)
        token = bed.auth.issue(APP)
        cookie = ("Cookie", f"{cookie_name(NODE, APP)}={token}")
        for host in ("localhost:8080", f"x{SUBDOMAIN}.localhost:8080", "other-pkg.localhost"):
            got = await bed.admit(upgrade(f"/{APP}/ws", cookie, ("Host", host)))
            assert isinstance(got, tuple) and (got[0], got[2]) == (
                403, b"secure websocket must be opened on its subdomain\n"), host
        on_sub = ("Host", f"{SUBDOMAIN}.localhost:8080")
        main_cookie = ("Cookie", f"{cookie_name(NODE)}={bed.auth.issue()}")
        got = await bed.admit(upgrade(f"/{APP}/ws", main_cookie, on_sub))
        assert isinstance(got, tuple) and got[0] == 401, "the node's cookie is not the app's"
        assert bed.proc.registry_asked == []
        got = await bed.admit(upgrade(f"/{APP}/ws", cookie, on_sub))
        assert isinstance(got, Admission)

    run(tmp_path, test)


@pytest.mark.parametrize(("peer", "headers"), [
    ("10.1.2.3", []),
    ("192.168.0.9", []),
    ("127.0.0.1", [("X-Forwarded-For", "10.1.2.3")]),
    ("127.0.0.1", [("Forwarded", "for=10.1.2.3")]),
    ("127.0.0.1", [("X-Real-Ip", "10.1.2.3")]),
])
def test_an_extension_binding_is_for_a_loopback_peer_without_proxy_headers(
        tmp_path: Path, peer: str, headers: list[tuple[str, str]]) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ext", authenticated=False, extension=True)
        got = await bed.admit(upgrade(f"/{APP}/ext", *headers, peer=peer))
        assert isinstance(got, tuple) and (got[0], got[2]) == (403, b"extension websockets are local only\n")
        assert bed.proc.registry_asked == []
        assert isinstance(await bed.admit(upgrade(f"/{APP}/ext")), Admission)

    run(tmp_path, test)


@pytest.mark.parametrize(("origin", "fetch_site"), [
    ("http://evil.example", None),
    ("http://localhost:8081", None),  # another port is another origin
    ("null", None),
    ("http://localhost:8080", "cross-site"),
])
def test_a_foreign_origin_is_refused_on_an_authenticated_binding_only(
        tmp_path: Path, origin: str, fetch_site: str | None) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/private", authenticated=True)
        ws_bind(bed.table, APP, "/public", authenticated=False)
        login = ("Cookie", f"{cookie_name(NODE)}={bed.auth.issue()}")
        browser = [("Origin", origin)] + ([("Sec-Fetch-Site", fetch_site)] if fetch_site else [])
        got = await bed.admit(upgrade(f"/{APP}/private", login, *browser))
        assert isinstance(got, tuple) and (got[0], got[2]) == (403, b"Cross origin websockets not allowed\n")
        assert bed.proc.registry_asked == []
        assert isinstance(await bed.admit(upgrade(f"/{APP}/public", *browser)), Admission)
        own = ("Origin", "http://localhost:8080")
        assert isinstance(await bed.admit(upgrade(f"/{APP}/private", login, own)), Admission)

    run(tmp_path, test)


def test_an_owner_that_is_not_running_is_503_and_asked_last(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        bed.proc.running = {OTHER}
        got = await bed.admit(upgrade(f"/{APP}/ws"))
        assert isinstance(got, tuple) and (got[0], got[2]) == (503, f"{APP} is not running\n".encode())
        assert bed.proc.registry_asked == [(2.0, APP)]

    run(tmp_path, test)


@pytest.mark.parametrize(("error", "message"), [
    (Offline("kernel:distro:sys", 0, "away"), b"the node's kernel is not reachable\n"),
    (Timeout("kernel:distro:sys", 0, "late"), b"the node's kernel did not answer\n"),
])
def test_a_kernel_that_cannot_say_is_503(tmp_path: Path, error: Exception, message: bytes) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        bed.proc.registry_error = error
        got = await bed.admit(upgrade(f"/{APP}/ws"))
        assert isinstance(got, tuple) and (got[0], got[2]) == (503, message)

    run(tmp_path, test)


def test_the_checks_run_in_the_order_admit_documents(tmp_path: Path) -> None:
    """An upgrade that fails every check, mended one check at a time: each answer is
    the next check's (and the kernel is asked only at the very end)."""
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/filler", authenticated=False)
        ws_bind(bed.table, APP, "/ws", secure=True, extension=True)
        await bed.connect(f"/{APP}/filler")  # the socket limit (1) is reached
        bed.proc.registry_asked.clear()
        bed.proc.running = set()
        bed.hub.draining = True
        headers = {"Host": "localhost:8080", "Origin": "http://evil.example"}
        state: dict[str, Any] = {"method": "POST", "path": f"/{APP}/unbound", "peer": "10.0.0.9"}

        async def answer() -> Any:
            got = await bed.admit(upgrade(state["path"], *headers.items(), method=state["method"],
                                          peer=state["peer"]))
            return got if isinstance(got, Admission) else (got[0], got[2].decode().strip())

        assert await answer() == (405, "a WebSocket is opened with GET")
        state["method"] = "GET"
        assert await answer() == (503, "this server process is being replaced; connect again")
        bed.hub.draining = False
        assert await answer() == (503, "too many open websockets")
        bed.hub.settings = HttpServerSettings(max_websockets=2)
        assert await answer() == (404, "no websocket bound here")
        state["path"] = f"/{APP}/ws"
        assert await answer() == (403, "secure websocket must be opened on its subdomain")
        headers["Host"] = f"{SUBDOMAIN}.localhost:8080"
        assert await answer() == (401, "authentication required")
        headers["Cookie"] = f"{cookie_name(NODE, APP)}={bed.auth.issue(APP)}"
        assert await answer() == (403, "extension websockets are local only")
        state["peer"] = "127.0.0.1"
        assert await answer() == (403, "Cross origin websockets not allowed")
        headers["Origin"] = f"http://{SUBDOMAIN}.localhost:8080"
        assert bed.proc.registry_asked == []
        assert await answer() == (503, f"{APP} is not running")
        bed.proc.running = {APP}
        admission = await answer()
        assert isinstance(admission, Admission)
        assert (admission.binding.path, admission.open_path, admission.peer, admission.key) == (
            f"/{APP}/ws", "/ws", "127.0.0.1:5000", KEY)

    run(tmp_path, test, max_websockets=1)


@pytest.mark.parametrize(("owner", "bound", "requested", "open_path"), [
    (APP, "/", f"/{APP}", "/"),
    (APP, "/", f"/{APP}/", "/"),
    (APP, "/ws", f"/{APP}/ws", "/ws"),
    (APP, "/ws", f"/{APP}/ws/", "/ws"),
    (APP, "/room/:id", f"/{APP}/room/7", "/room/7"),
    (HOMEPAGE, "/", "/", "/"),
    (HOMEPAGE, "/chat", "/chat", "/"),  # the homepage's sockets always report "/"
])
def test_an_admission_carries_the_path_below_the_apps_prefix(
        tmp_path: Path, owner: str, bound: str, requested: str, open_path: str) -> None:
    async def test(bed: Bed) -> None:
        bed.proc.running.add(owner)
        full = ws_bind(bed.table, owner, bound, authenticated=False)
        admission = await bed.admit(upgrade(requested))
        assert isinstance(admission, Admission)
        assert (admission.binding.path, admission.binding.app, admission.open_path, admission.peer) == (
            full, owner, open_path, "127.0.0.1:5000")
        assert bed.proc.registry_asked == [(2.0, owner)]

    run(tmp_path, test)


# ---------------------------------------------------------------------- open

def test_open_answers_101_and_tells_the_owner_watched_once(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        admission = await bed.admit(upgrade(f"/{APP}/ws/"))
        assert isinstance(admission, Admission)
        server, theirs = socket.socketpair()
        client = Client(theirs)
        bed.clients.append(client)
        channel = bed.hub.open(server, b"", admission)
        assert channel is not None and bed.hub.channels == {channel.id: channel}
        status, headers = client.head()
        assert status == "HTTP/1.1 101 Switching Protocols"
        expected = base64.b64encode(hashlib.sha1(KEY.encode() + GUID).digest()).decode()
        assert expected == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3's answer to its key
        assert headers["Sec-WebSocket-Accept"] == expected
        assert (headers["Upgrade"].lower(), headers["Connection"].lower()) == ("websocket", "upgrade")
        assert "Sec-WebSocket-Protocol" not in headers
        assert client.quiet()
        opened = bed.proc.sent[0][1].web_socket_open
        assert bed.proc.told() == [(APP, "web_socket_open", channel.id, 0, None)]
        assert (opened.path, opened.channel_id, opened.source_socket_addr) == ("/ws", channel.id,
                                                                               "127.0.0.1:5000")
        assert bed.proc.sent[0][3] is True, "an open that cannot be delivered must be reported"
        assert [w[0] for w in bed.proc.watched] == [APP]
        second, _ = await bed.connect(f"/{APP}/ws")
        assert second.id != channel.id and len(bed.hub.channels) == 2
        assert [w[0] for w in bed.proc.watched] == [APP], "one watch per owner"

    run(tmp_path, test)


def test_frames_sent_with_the_handshake_are_not_lost(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        channel, _ = await bed.connect(f"/{APP}/ws", leftover=masked(OP_TEXT, b"early"))
        await until(lambda: len(bed.proc.sent) == 2, "the early frame")
        assert bed.proc.told()[1] == (APP, "web_socket_push", channel.id, WsType.Text, b"early")

    run(tmp_path, test)


# ---------------------------------------------------------------------- from the client

def test_client_messages_become_pushes_to_the_owner(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        big = bytes(range(256)) * 300  # a 16-bit length
        client.send(masked(OP_TEXT, "héllo".encode()) + masked(OP_BINARY, b"\x00\xff") + masked(OP_BINARY, big))
        await until(lambda: len(bed.proc.sent) == 4, "three pushes")
        assert bed.proc.told()[1:] == [
            (APP, "web_socket_push", channel.id, WsType.Text, "héllo".encode()),
            (APP, "web_socket_push", channel.id, WsType.Binary, b"\x00\xff"),
            (APP, "web_socket_push", channel.id, WsType.Binary, big),
        ]
        assert all(report for *_, report in bed.proc.sent), "frames go with report_undelivered"
        assert client.quiet()

    run(tmp_path, test)


def test_a_ping_is_answered_and_reported_and_so_is_a_pong_with_a_payload(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        client.send(masked(OP_PING, b"are you there"))
        assert await client.frame() == (OP_PONG, b"are you there")
        client.send(masked(OP_PONG, b"") + masked(OP_PONG, b"late"))
        await until(lambda: len(bed.proc.sent) == 3, "the ping and the pong")
        assert bed.proc.told()[1:] == [
            (APP, "web_socket_push", channel.id, WsType.Ping, b"are you there"),
            (APP, "web_socket_push", channel.id, WsType.Pong, b"late"),
        ]

    run(tmp_path, test)


def test_a_client_close_is_push_close_then_websocket_close(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        client.send(masked(OP_CLOSE, close_body(1000, "bye")))
        assert await client.frame() == (OP_CLOSE, close_body(1000))
        await until(client.ended, "the server to close the socket")
        assert bed.hub.channels == {}
        assert bed.proc.told()[1:] == [
            (APP, "web_socket_push", channel.id, WsType.Close, b"bye"),
            (APP, "web_socket_close", channel.id, 0, None),
        ]

    run(tmp_path, test)


def test_a_client_that_just_goes_away_is_websocket_close_only(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        client.sock.shutdown(socket.SHUT_WR)
        await until(lambda: not bed.hub.channels, "the channel to close")
        assert bed.proc.told()[1:] == [(APP, "web_socket_close", channel.id, 0, None)]

    run(tmp_path, test)


def test_a_frame_the_kernel_cannot_take_closes_the_socket(tmp_path: Path) -> None:
    """Never dropped while the socket stays open: 1012 while the kernel is away,
    1011 when it is there but refused the send."""
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        _, away_client = await bed.connect(f"/{APP}/ws")
        _, busy_client = await bed.connect(f"/{APP}/ws")
        bed.proc.offline = True
        bed.proc.connected = False
        away_client.send(masked(OP_TEXT, b"lost?"))
        await away_client.closed_with(1012, "the node's kernel is restarting")
        bed.proc.connected = True
        busy_client.send(masked(OP_BINARY, b"lost?"))
        await busy_client.closed_with(1011, "the node's kernel is not keeping up")
        assert bed.hub.channels == {}
        assert [t[1] for t in bed.proc.told()] == ["web_socket_open", "web_socket_open"]

    run(tmp_path, test)


# ---------------------------------------------------------------------- from the owner

def test_pushes_from_the_owner_reach_the_client(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        hub = bed.hub
        assert result(hub.on_push(*push(APP, channel.id, WsType.Text, "tëxt".encode()))) == "ok"
        assert result(hub.on_push(*push(APP, channel.id, WsType.Binary, b"\x00\x01"))) == "ok"
        assert result(hub.on_push(*push(APP, channel.id, WsType.Text, b"bad \xff utf-8"))) == "ok"
        assert result(hub.on_push(*push(APP, channel.id, WsType.Ping, b"p"))) == "ok"
        assert result(hub.on_push(*push(APP, channel.id, WsType.Ping, b"x" * 126))) == "WsPingPongTooLong"
        assert client.frames() == [(OP_TEXT, "tëxt".encode()), (OP_BINARY, b"\x00\x01"),
                                   (OP_TEXT, "bad \ufffd utf-8".encode()), (OP_PING, b"p")]
        assert result(hub.on_push(*push(APP, channel.id, WsType.Binary, None))) == "NoBlob"
        assert client.quiet() and list(hub.channels) == [channel.id]

    run(tmp_path, test)


def test_pushes_to_a_channel_that_is_not_the_senders(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        hub = bed.hub
        unknown = channel.id ^ 1
        assert result(hub.on_push(*push(OTHER, channel.id, WsType.Text, b"hijack"))) == "WsChannelNotFound"
        assert result(hub.on_push(*push(OTHER, channel.id, WsType.Close, b""))) == "WsChannelNotFound"
        assert result(hub.on_close(*close_action(OTHER, channel.id))) == "WsChannelNotFound"
        assert result(hub.on_push(*push(APP, unknown, WsType.Text, b"x"))) == "WsChannelNotFound"
        # Kinode: closing a channel that does not exist (any more) is not an error.
        assert result(hub.on_push(*push(APP, unknown, WsType.Close, b""))) == "ok"
        assert result(hub.on_close(*close_action(APP, unknown))) == "ok"
        assert client.quiet() and list(hub.channels) == [channel.id]
        assert len(bed.proc.sent) == 1

    run(tmp_path, test)


@pytest.mark.parametrize("how", ["push_close", "websocket_close"])
def test_the_owner_closing_its_socket(tmp_path: Path, how: str) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        if how == "push_close":
            answer = bed.hub.on_push(*push(APP, channel.id, WsType.Close, b"done here"))
            reason = "done here"
        else:
            answer = bed.hub.on_close(*close_action(APP, channel.id))
            reason = ""
        assert result(answer) == "ok" and bed.hub.channels == {}
        await client.closed_with(1000, reason)
        assert bed.proc.told()[1:] == [(APP, "web_socket_close", channel.id, 0, None)]
        assert result(bed.hub.on_push(*push(APP, channel.id, WsType.Text, b"x"))) == "WsChannelNotFound"

    run(tmp_path, test)


def test_a_client_that_does_not_read_is_closed_1008(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        payload = b"z" * 16384
        pushed = 0
        while channel.id in bed.hub.channels:
            assert pushed < 1000, "never counted as too slow"
            assert result(bed.hub.on_push(*push(APP, channel.id, WsType.Binary, payload))) == "ok"
            pushed += 1
        assert channel.conn is not None and channel.conn.unsent_bytes() <= 65536
        assert bed.proc.told()[1:] == [(APP, "web_socket_close", channel.id, 0, None)]
        assert result(bed.hub.on_push(*push(APP, channel.id, WsType.Binary, payload))) == "WsChannelNotFound"
        # The client reads at last: every frame that was queued, whole, then the close.
        got = await client.frames_until(lambda got: bool(got) and got[-1][0] == OP_CLOSE, "the close frame")
        assert got[:-1] == [(OP_BINARY, payload)] * (pushed - 1)
        assert got[-1] == (OP_CLOSE, close_body(1008, "too slow: send queue full"))
        client.send(masked(OP_CLOSE, close_body(1008)))
        await until(client.ended, "the server to close the socket")
        assert len(bed.proc.sent) == 2

    run(tmp_path, test, ws_send_queue_bytes=65536)


# ---------------------------------------------------------------------- owners

def test_an_owner_that_dies_has_its_sockets_closed_1001_without_websocket_close(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        ws_bind(bed.table, OTHER, "/ws", authenticated=False)
        _, first = await bed.connect(f"/{APP}/ws")
        _, second = await bed.connect(f"/{APP}/ws")
        theirs, other = await bed.connect(f"/{OTHER}/ws")
        assert [w[0] for w in bed.proc.watched] == [APP, OTHER]
        sent = len(bed.proc.sent)
        bed.proc.watched[0][1](APP)
        assert list(bed.hub.channels) == [theirs.id]
        await first.closed_with(1001, "the app went away")
        await second.closed_with(1001, "the app went away")
        assert len(bed.proc.sent) == sent, "the owner is gone: nothing to tell it"
        assert other.quiet()
        await bed.connect(f"/{APP}/ws")  # its restart's sockets are watched afresh
        assert [w[0] for w in bed.proc.watched] == [APP, OTHER, APP]

    run(tmp_path, test)


def test_an_unbind_closes_the_sockets_1001_and_tells_the_owner(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        path = ws_bind(bed.table, APP, "/ws", authenticated=False)
        ws_bind(bed.table, APP, "/stays", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        stays, other = await bed.connect(f"/{APP}/stays")
        ws_bind(bed.table, APP, "/ws", authenticated=True)  # rebound by its owner: stays open
        bed.hub.binding_changed(path)
        assert client.quiet() and len(bed.hub.channels) == 2
        ws_unbind(bed.table, APP, "/ws")
        bed.hub.binding_changed(path)
        assert list(bed.hub.channels) == [stays.id]
        await client.closed_with(1001, "unbound")
        assert bed.proc.told()[2:] == [(APP, "web_socket_close", channel.id, 0, None)]
        assert other.quiet()

    run(tmp_path, test)


# ---------------------------------------------------------------------- the kernel

def test_a_frame_the_owner_cannot_take_closes_its_sockets_1011(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        ws_bind(bed.table, OTHER, "/ws", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/ws")
        _, other = await bed.connect(f"/{OTHER}/ws")
        undelivered = bed.proc.undelivered
        assert undelivered is not None
        undelivered(Offline(APP, 5, "delivered, then it died", delivered=True))
        undelivered(Timeout(APP, 5, "late"))
        undelivered(Offline(OTHER + "x", 5, "no such process"))
        assert len(bed.hub.channels) == 2 and client.quiet()
        undelivered(Offline(APP, 5, "no such process"))
        assert [c.app for c in bed.hub.channels.values()] == [OTHER]
        await client.closed_with(1011, "the app cannot take messages")
        assert bed.proc.told()[2:] == [(APP, "web_socket_close", channel.id, 0, None)]
        assert other.quiet()

    run(tmp_path, test)


def test_a_lost_kernel_closes_the_recently_active_sockets_1012(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        _, idle_client = await bed.connect(f"/{APP}/ws")
        # The idle socket's last frame (its open) must be more than RECENT_S before
        # the last word from the kernel.
        await asyncio.sleep(RECENT_S + 0.05)
        busy, busy_client = await bed.connect(f"/{APP}/ws")
        bed.proc.last_heard = asyncio.get_running_loop().time()  # then a frame went in
        busy_client.send(masked(OP_TEXT, b"in flight"))
        await until(lambda: len(bed.proc.sent) == 3, "the frame")
        bed.proc.connected = False
        assert bed.proc.disconnected is not None
        bed.proc.disconnected()
        assert busy.id not in bed.hub.channels and len(bed.hub.channels) == 1
        await busy_client.closed_with(1012, "the node's kernel restarted")
        assert bed.proc.told()[3:] == [(APP, "web_socket_close", busy.id, 0, None)]
        assert idle_client.quiet()

    run(tmp_path, test)


# ---------------------------------------------------------------------- figures

def test_the_figures_count_frames_and_closes_by_reason(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        figures = bed.hub.figures = HttpFigures(enabled=True)
        ws_bind(bed.table, APP, "/ws", authenticated=False)
        ws_bind(bed.table, OTHER, "/ws", authenticated=False)
        hub = bed.hub

        by_client, client = await bed.connect(f"/{APP}/ws")
        assert by_client.fig is figures.apps[APP]
        client.send(masked(OP_TEXT, b"12345") + masked(OP_BINARY, b"678"))
        await until(lambda: len(bed.proc.sent) == 3, "two frames")
        hub.on_push(*push(APP, by_client.id, WsType.Text, b"abcd"))
        client.send(masked(OP_CLOSE, close_body(1000)))
        await until(lambda: not hub.channels, "the client's close")

        by_app, _ = await bed.connect(f"/{APP}/ws")
        hub.on_close(*close_action(APP, by_app.id))

        slow, _ = await bed.connect(f"/{APP}/ws")
        while slow.id in hub.channels:
            hub.on_push(*push(APP, slow.id, WsType.Binary, b"s" * 4096))

        await bed.connect(f"/{OTHER}/ws")
        bed.proc.watched[-1][1](OTHER)

        protocol, bad = await bed.connect(f"/{APP}/ws")
        bad.send(b"\x81\x02hi")  # not masked
        bad.sock.shutdown(socket.SHUT_WR)  # the server reads to EOF after a protocol error
        await until(lambda: protocol.id not in hub.channels, "the protocol error")

        assert figures.ws_closes.series == {
            (APP, "client"): 1, (APP, "app"): 1, (APP, "slow_reader"): 1, (OTHER, "owner_died"): 1,
            (APP, "protocol"): 1,
        }
        stats = figures.apps[APP]
        assert (stats.ws_in, stats.ws_bytes_in) == (2, 8)
        # out: "abcd", then the slow reader's frames until its queue was full
        assert stats.ws_out >= 2 and stats.ws_bytes_out == 4 + 4096 * (stats.ws_out - 1)
        assert (figures.apps[OTHER].ws_in, figures.apps[OTHER].ws_out) == (0, 0)

    run(tmp_path, test, ws_send_queue_bytes=16384)


# ---------------------------------------------------------------------- extensions

def ext_data(id_: Any, kind: Any, blob: Any) -> bytes:
    """An extension's WebSocketExtPushData frame (docs/kinode.md §1.9), msgpack."""
    packed: bytes = msgpack.packb({"WebSocketExtPushData": {"id": id_, "kinode_message_type": kind,
                                                            "blob": blob}})
    return masked(OP_BINARY, packed)


def test_an_extensions_request_becomes_a_push_under_its_id(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ext", authenticated=False, extension=True)
        channel, client = await bed.connect(f"/{APP}/ext")
        client.send(ext_data(42, "Request", [1, 2, 255]) + ext_data(43, "Request", b"\x00bin")
                    + masked(OP_BINARY, b"not msgpack \xc1"))
        await until(lambda: len(bed.proc.sent) == 4, "three pushes")
        assert bed.proc.told()[1:] == [
            (APP, "web_socket_push", channel.id, WsType.Binary, b"\x01\x02\xff"),
            (APP, "web_socket_push", channel.id, WsType.Binary, b"\x00bin"),
            (APP, "web_socket_push", channel.id, WsType.Binary, b"not msgpack \xc1"),
        ]
        assert bed.proc.ids[1:] == [42, 43, None]

    run(tmp_path, test)


def test_an_extension_answers_the_owners_request(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ext", authenticated=False, extension=True)
        channel, client = await bed.connect(f"/{APP}/ext")
        action = http_pb2.HttpServerAction()
        out = action.web_socket_ext_push_outgoing
        out.channel_id = channel.id
        out.message_type = WsType.Binary
        out.desired_reply_type = http_pb2.MESSAGE_TYPE_RESPONSE
        request = Message(77, APP, "http-server:distro:sys", True, action.SerializeToString(),
                          Blob(b"\x05\x06"), expects_response=True)
        assert bed.hub.on_push(request, "web_socket_ext_push_outgoing", action) is None
        opcode, payload = await client.frame()
        assert opcode == OP_BINARY and msgpack.unpackb(payload) == {
            "WebSocketExtPushData": {"id": 77, "kinode_message_type": "Response", "blob": [5, 6]}}
        client.send(ext_data(77, "Response", [7]) + ext_data(77, "Response", [8]))
        await until(lambda: bed.proc.responses, "the answer")
        await asyncio.sleep(0.01)
        [(to, answer, blob)] = bed.proc.responses  # the second answer had nothing to answer
        assert (to, answer.web_socket_push.channel_id, answer.web_socket_push.message_type, blob) == (
            request, channel.id, WsType.Binary, b"\x07")
        out.message_type = WsType.Text
        assert result(bed.hub.on_push(request, "web_socket_ext_push_outgoing", action)) == "MalformedRequest"

    run(tmp_path, test)


@pytest.mark.parametrize("bad", [
    pytest.param(ext_data(1, "Request", [256]), id="blob-not-bytes"),
    pytest.param(ext_data(1, "Request", ["x"]), id="blob-not-numbers"),
    pytest.param(ext_data(-1, "Request", [1]), id="negative-id"),
    pytest.param(ext_data(-2**63, "Request", [1]), id="most-negative-id"),
    pytest.param(ext_data(1.5, "Request", [1]), id="float-id"),
    pytest.param(ext_data("1", "Request", [1]), id="string-id"),
    pytest.param(ext_data(1, "Neither", [1]), id="unknown-kind"),
    pytest.param(masked(OP_BINARY, msgpack.packb({"WebSocketOpen": {"path": "/", "channel_id": 1}})),
                 id="server-only-variant"),
])
def test_a_malformed_extension_frame_is_dropped_and_the_next_one_still_arrives(
        tmp_path: Path, bad: bytes) -> None:
    """A frame the hub cannot take must not take the frames after it down with it
    (they arrive in the same read)."""
    async def test(bed: Bed) -> None:
        ws_bind(bed.table, APP, "/ext", authenticated=False, extension=True)
        channel, client = await bed.connect(f"/{APP}/ext")
        client.send(bad + ext_data(9, "Request", [9]))
        await until(lambda: len(bed.proc.sent) == 2, "the good frame")
        assert bed.proc.told()[1:] == [(APP, "web_socket_push", channel.id, WsType.Binary, b"\x09")]
        assert bed.proc.ids[1:] == [9] and list(bed.hub.channels) == [channel.id]

    run(tmp_path, test)
