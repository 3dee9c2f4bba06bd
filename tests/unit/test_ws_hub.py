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
import json
import os
import socket
import zlib
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
from porch.process.held import ClaimFailed, claim
from porch.process.message import Blob, Message, Offline, SendError, Timeout
from porch.wire import http_pb2, kernel_pb2
from support.http_fakes import FakeExchange, fake_auth
from support.peers import FrameClient, until

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


class Client(FrameClient):
    """The client's end of a socket pair: what it sends, and the server's frames
    (never masked) as it reads them."""

    def head(self) -> tuple[str, dict[str, str]]:
        """The server's answer head (status line, headers), taken off what was read."""
        self.pull()
        end = self.data.index(b"\r\n\r\n")
        lines = self.data[:end].decode("latin-1").split("\r\n")
        del self.data[:end + 4]
        headers = dict(line.split(": ", 1) for line in lines[1:])
        return lines[0], headers

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

    async def closed_with(self, code: int, reason: str) -> None:
        """The server's close frame, then (once answered, as a client does) the end."""
        assert await self.frame() == (OP_CLOSE, close_body(code, reason))
        self.send(masked(OP_CLOSE, close_body(code)))
        await until(self.ended, "the server to close the socket")
        assert self.data == b""



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


# ---------------------------------------------------------------------- direct bindings

# The worker's side of sockets a process holds itself (docs/websockets.md, issue 12):
# the 101 and the offer, a claim with the stub's own client (porch.process.held.claim,
# off the loop: the offers answer on it), what the worker does with a socket on offer,
# claimed, or never claimed. The stub's side is test_ws_held.py, the hand-over socket
# test_ws_offers.py, a real node integration/test_ws_direct.py.

def direct_bind(table: BindingTable, app: str, path: str) -> str:
    """As the app's WebSocketBind with direct (WsBindingConfig(direct=True))."""
    action = http_pb2.HttpServerAction()
    action.web_socket_bind.path = path
    action.web_socket_bind.authenticated = False
    action.web_socket_bind.direct = True
    return actions.apply_binding(table, app, "web_socket_bind", action, None)


class Direct:
    """The hub offering direct sockets at `path`; `claim` takes one as its owner's
    stub would, and keeps the descriptor it got (closed at the end)."""

    def __init__(self, bed: Bed, path: Path) -> None:
        self.bed = bed
        self.path = path
        self.claimed: list[socket.socket] = []
        bed.hub.start_offering(path)

    def token(self, channel: Channel) -> bytes:
        """The handoff token its owner was sent in the WebSocketOpen."""
        for target, request, _, _ in self.bed.proc.sent:
            opened = request.web_socket_open
            if request.WhichOneof("request") == "web_socket_open" and opened.channel_id == channel.id:
                assert target == channel.app
                return opened.handoff_token
        raise AssertionError(f"no open of {channel.id}")

    async def claim(self, channel: Channel) -> tuple[socket.socket, dict[str, object]]:
        loop = asyncio.get_running_loop()
        sock, record = await loop.run_in_executor(None, claim, str(self.path), self.token(channel))
        self.claimed.append(sock)
        return sock, record

    async def refused(self, channel: Channel, token: bytes) -> str:
        try:
            await asyncio.get_running_loop().run_in_executor(None, claim, str(self.path), token)
        except ClaimFailed as exc:
            return str(exc)
        raise AssertionError(f"a claim of {channel.id} was not refused")

    def close(self) -> None:
        for channel in self.bed.hub.channels.values():
            if channel.held is not None:
                channel.held.close()
        offers = self.bed.hub.offers
        if offers is not None and offers.sock.fileno() != -1:
            for offer in offers.waiting.values():
                if offer.timer is not None:
                    offer.timer.cancel()
            offers.loop.remove_reader(offers.sock.fileno())
            offers.sock.close()
        for sock in self.claimed:
            sock.close()


def run_direct(tmp_path: Path, test: Callable[[Bed, Direct], Awaitable[None]], **settings: Any) -> None:
    async def with_offers(bed: Bed) -> None:
        direct = Direct(bed, tmp_path / "claim.sock")
        try:
            await test(bed, direct)
        finally:
            direct.close()
    run(tmp_path, with_offers, **settings)


async def spin() -> None:
    """A few rounds of the loop: what the hub would do with input is done by then."""
    for _ in range(20):
        await asyncio.sleep(0.001)


def recv_all(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    return sock.recv(1 << 16)


def counts_action(source: str, *entries: tuple[int, int, int, int, int, str]) -> tuple[Message, str, Any]:
    """A WebSocketCounts action from `source` (the stub's report)."""
    action = http_pb2.HttpServerAction()
    for channel_id, messages_in, messages_out, bytes_in, bytes_out, closed in entries:
        action.web_socket_counts.channels.add(channel_id=channel_id, messages_in=messages_in,
                                              messages_out=messages_out, bytes_in=bytes_in,
                                              bytes_out=bytes_out, closed=closed)
    msg = Message(9, source, "http-server:distro:sys", True, action.SerializeToString())
    return msg, "web_socket_counts", action


def test_a_direct_socket_is_answered_101_and_offered_to_its_owner_unread(tmp_path: Path) -> None:
    """The worker writes the 101 and stops: the owner's WebSocketOpen names the
    hand-over socket and a 16-byte token; the worker reads nothing, so a frame the
    client sends at once is there for the owner to read; the claim carries the
    worker's limits; the worker keeps its own descriptor (for the owner's death)."""
    async def test(bed: Bed, direct: Direct) -> None:
        direct_bind(bed.table, APP, "/ws")
        channel, client = await bed.connect(f"/{APP}/ws")
        assert bed.proc.told() == [(APP, "web_socket_open", channel.id, 0, None)]
        opened = bed.proc.sent[0][1].web_socket_open
        assert (opened.path, opened.source_socket_addr) == ("/ws", "127.0.0.1:5000")
        assert opened.handoff_socket == str(tmp_path / "claim.sock")
        assert len(opened.handoff_token) == 16 and opened.handoff_token == channel.token
        assert bed.proc.sent[0][3] is True, "an open that cannot be delivered must be reported"
        assert channel.conn is None and channel.held is not None and not channel.claimed
        client.send(masked(OP_TEXT, b"first"))
        await spin()
        assert len(bed.proc.sent) == 1 and client.quiet(), "the worker reads nothing of it"
        sock, record = await direct.claim(channel)
        assert record == {"channel_id": channel.id, "max_message": 1234, "send_queue_bytes": 5678,
                          "ping_interval_s": 7.5, "leftover": "", "extensions": []}
        assert channel.claimed and channel.token is None and channel.held is not None
        assert channel.conn is None and list(bed.hub.channels) == [channel.id]
        assert recv_all(sock) == masked(OP_TEXT, b"first")
        sock.send(b"\x81\x02hi")
        assert client.frames() == [(OP_TEXT, b"hi")]

    run_direct(tmp_path, test, ws_max_message_bytes=1234, ws_send_queue_bytes=5678, ws_ping_interval_s=7.5)


def test_a_direct_socket_carries_the_bytes_after_the_handshake_and_the_agreed_compression(
        tmp_path: Path) -> None:
    """The record's leftover is latin-1 text of those bytes; its extensions are the
    offers the 101 agreed to (none when it agreed to nothing)."""
    async def test(bed: Bed, direct: Direct) -> None:
        direct_bind(bed.table, APP, "/ws")
        offer = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
        agreed, _ = await bed.connect(f"/{APP}/ws", offer, leftover=b"\x81\xfe\x00")
        plain, _ = await bed.connect(f"/{APP}/ws", ("Sec-WebSocket-Extensions", "x-unknown"))
        _, record = await direct.claim(agreed)
        assert (record["leftover"], record["extensions"]) == ("\x81\xfe\x00",
                                                             ["permessage-deflate; client_max_window_bits"])
        _, record = await direct.claim(plain)
        assert (record["leftover"], record["extensions"]) == ("", [])

    run_direct(tmp_path, test, ws_compression=True)


def test_a_plain_binding_beside_direct_ones_is_served_by_the_worker(tmp_path: Path) -> None:
    async def test(bed: Bed, direct: Direct) -> None:
        direct_bind(bed.table, APP, "/direct")
        ws_bind(bed.table, APP, "/plain", authenticated=False)
        channel, client = await bed.connect(f"/{APP}/plain")
        opened = bed.proc.sent[0][1].web_socket_open
        assert (opened.handoff_socket, opened.handoff_token) == ("", b"")
        assert channel.conn is not None and channel.held is None and channel.token is None
        client.send(masked(OP_TEXT, b"x"))
        await until(lambda: len(bed.proc.sent) == 2, "the push")

    run_direct(tmp_path, test)


def test_a_direct_binding_without_offers_is_served_by_the_worker(tmp_path: Path) -> None:
    """A worker that does not hold WebSockets' hand-over socket (none started)."""
    async def test(bed: Bed) -> None:
        direct_bind(bed.table, APP, "/ws")
        channel, _ = await bed.connect(f"/{APP}/ws")
        assert bed.proc.sent[0][1].web_socket_open.handoff_socket == ""
        assert channel.conn is not None and channel.held is None

    run(tmp_path, test)


def test_a_push_through_the_worker_to_a_claimed_socket_is_malformed(tmp_path: Path) -> None:
    """Its owner holds it: the worker writes nothing on it, and says where to push."""
    async def test(bed: Bed, direct: Direct) -> None:
        direct_bind(bed.table, APP, "/ws")
        channel, client = await bed.connect(f"/{APP}/ws")
        await direct.claim(channel)
        assert result(bed.hub.on_push(*push(APP, channel.id, WsType.Text, b"x"))) == "MalformedRequest"
        assert result(bed.hub.on_push(*push(OTHER, channel.id, WsType.Text, b"x"))) == "WsChannelNotFound"
        assert client.quiet() and channel.claimed and list(bed.hub.channels) == [channel.id]

    run_direct(tmp_path, test)


def test_a_push_through_the_worker_to_a_socket_on_offer_makes_the_worker_serve_it(tmp_path: Path) -> None:
    """The owner pushed before its stub took the socket (or cannot take it): the
    offer is withdrawn, the worker serves the socket, and a late claim is refused."""
    async def test(bed: Bed, direct: Direct) -> None:
        direct_bind(bed.table, APP, "/ws")
        channel, client = await bed.connect(f"/{APP}/ws", leftover=masked(OP_TEXT, b"early"))
        token = direct.token(channel)
        assert result(bed.hub.on_push(*push(APP, channel.id, WsType.Text, b"hi"))) == "ok"
        assert await client.frame() == (OP_TEXT, b"hi")
        assert channel.conn is not None and channel.held is None and channel.token is None
        assert bed.hub.offers is not None and bed.hub.offers.waiting == {}
        assert await direct.refused(channel, token) == "no such socket on offer (the server serves it)"
        client.send(masked(OP_BINARY, b"later"))
        await until(lambda: len(bed.proc.sent) == 3, "the pushes")
        assert bed.proc.told()[1:] == [(APP, "web_socket_push", channel.id, WsType.Text, b"early"),
                                       (APP, "web_socket_push", channel.id, WsType.Binary, b"later")]

    run_direct(tmp_path, test)


def test_a_socket_nobody_claims_in_time_is_served_by_the_worker(tmp_path: Path) -> None:
    """Frames that waited (the bytes after the handshake, then what the client sent
    meanwhile) reach the owner through the kernel, in order; a late claim is refused."""
    async def test(bed: Bed, direct: Direct) -> None:
        assert bed.hub.offers is not None
        bed.hub.offers.wait_s = 0.02
        direct_bind(bed.table, APP, "/ws")
        channel, client = await bed.connect(f"/{APP}/ws", leftover=masked(OP_TEXT, b"early"))
        token = direct.token(channel)
        client.send(masked(OP_BINARY, b"meanwhile"))
        await until(lambda: len(bed.proc.sent) == 3, "the frames that waited")
        assert bed.proc.told()[1:] == [(APP, "web_socket_push", channel.id, WsType.Text, b"early"),
                                       (APP, "web_socket_push", channel.id, WsType.Binary, b"meanwhile")]
        assert channel.conn is not None and channel.held is None and channel.token is None
        assert await direct.refused(channel, token) == "no such socket on offer (the server serves it)"
        assert result(bed.hub.on_push(*push(APP, channel.id, WsType.Text, b"ok"))) == "ok"
        assert await client.frame() == (OP_TEXT, b"ok")

    run_direct(tmp_path, test)


def test_a_socket_nobody_claims_keeps_the_compression_its_101_agreed(tmp_path: Path) -> None:
    async def test(bed: Bed, direct: Direct) -> None:
        assert bed.hub.offers is not None
        bed.hub.offers.wait_s = 0.02
        direct_bind(bed.table, APP, "/ws")
        channel, client = await bed.connect(f"/{APP}/ws", ("Sec-WebSocket-Extensions", "permessage-deflate"))
        await until(lambda: channel.conn is not None, "the worker to serve it")
        text = b"inflate me " * 10
        deflater = zlib.compressobj(wbits=-15)
        body = (deflater.compress(text) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
        first = masked(OP_TEXT, body)
        client.send(bytes((first[0] | 0x40,)) + first[1:])  # RSV1: compressed
        await until(lambda: len(bed.proc.sent) == 2, "the message")
        assert bed.proc.told()[1] == (APP, "web_socket_push", channel.id, WsType.Text, text)

    run_direct(tmp_path, test, ws_compression=True)


@pytest.mark.parametrize("claimed", [True, False], ids=["claimed", "on-offer"])
def test_an_owner_that_dies_has_its_direct_sockets_closed_1001_by_the_worker(
        tmp_path: Path, claimed: bool) -> None:
    """The worker writes the close frame on its own descriptor and ends the
    connection (the owner's copy, if it took one, dies with it); nobody is told."""
    async def test(bed: Bed, direct: Direct) -> None:
        figures = bed.hub.figures = HttpFigures(enabled=True)
        direct_bind(bed.table, APP, "/ws")
        channel, client = await bed.connect(f"/{APP}/ws")
        token = direct.token(channel)
        if claimed:
            await direct.claim(channel)
        bed.proc.watched[0][1](APP)
        assert bed.hub.channels == {} and channel.held is None
        assert client.frames() == [(OP_CLOSE, close_body(1001, "the app went away"))]
        await until(client.ended, "the end of the connection")
        assert len(bed.proc.sent) == 1, "the owner is gone: nothing to tell it"
        assert figures.ws_closes.series == {(APP, "owner_died"): 1}
        if not claimed:
            assert await direct.refused(channel, token) == "no such socket on offer (the server serves it)"

    run_direct(tmp_path, test)


def test_close_all_leaves_claimed_sockets_open_and_serves_then_closes_those_on_offer(tmp_path: Path) -> None:
    """A worker that stops: a socket its owner holds lives on without it (no frame,
    the owner is not told); one on offer is closed 1012 as any of the worker's, and
    its owner told; the hand-over socket file is gone."""
    async def test(bed: Bed, direct: Direct) -> None:
        figures = bed.hub.figures = HttpFigures(enabled=True)
        direct_bind(bed.table, APP, "/ws")
        held, held_client = await bed.connect(f"/{APP}/ws")
        sock, _ = await direct.claim(held)
        offered, offered_client = await bed.connect(f"/{APP}/ws")
        sent = len(bed.proc.sent)
        bed.hub.close_all()
        assert bed.hub.channels == {} and bed.hub.offers is None
        assert not (tmp_path / "claim.sock").exists()
        assert bed.proc.told()[sent:] == [(APP, "web_socket_close", offered.id, 0, None)]
        await offered_client.closed_with(1012, "server restarting")
        await spin()
        assert held_client.quiet(), "the worker let go of its descriptor without a word"
        sock.send(b"\x81\x05still")
        assert held_client.frames() == [(OP_TEXT, b"still")]
        # Only the socket that closed counts as a close; the held one is still open.
        assert figures.ws_closes.series == {(APP, "server_restart"): 1}

    run_direct(tmp_path, test)


def test_the_record_of_open_sockets_leaves_out_those_their_owners_hold(tmp_path: Path) -> None:
    """A worker that crashes tells the owners of its sockets they are gone (its
    record): a socket its owner holds is not gone with it."""
    async def test(bed: Bed, direct: Direct) -> None:
        direct_bind(bed.table, APP, "/direct")
        ws_bind(bed.table, APP, "/plain", authenticated=False)
        held, _ = await bed.connect(f"/{APP}/direct")
        await direct.claim(held)
        offered, _ = await bed.connect(f"/{APP}/direct")
        plain, _ = await bed.connect(f"/{APP}/plain")
        record = tmp_path / f"ws-channels.{os.getpid()}.json"
        bed.hub._write_record()
        assert json.loads(record.read_bytes()) == [{"id": offered.id, "app": APP}, {"id": plain.id, "app": APP}]
        bed.hub.on_close(*close_action(APP, offered.id))
        bed.hub.on_close(*close_action(APP, plain.id))
        bed.hub._write_record()
        assert list(bed.hub.channels) == [held.id] and not record.exists()

    run_direct(tmp_path, test)


def test_counts_from_the_owner_reach_its_figures_for_its_claimed_sockets_only(tmp_path: Path) -> None:
    async def test(bed: Bed, direct: Direct) -> None:
        figures = bed.hub.figures = HttpFigures(enabled=True)
        direct_bind(bed.table, APP, "/ws")
        direct_bind(bed.table, OTHER, "/ws")
        mine, _ = await bed.connect(f"/{APP}/ws")
        await direct.claim(mine)
        offered, _ = await bed.connect(f"/{APP}/ws")
        theirs, _ = await bed.connect(f"/{OTHER}/ws")
        await direct.claim(theirs)
        hub = bed.hub
        assert hub.on_counts(*counts_action(APP, (mine.id, 2, 1, 8, 4, ""), (offered.id, 5, 5, 5, 5, ""),
                                            (theirs.id, 7, 7, 7, 7, ""), (12345, 9, 9, 9, 9, ""))) is None
        stats = figures.apps[APP]
        assert (stats.ws_in, stats.ws_out, stats.ws_bytes_in, stats.ws_bytes_out) == (2, 1, 8, 4)
        other = figures.apps[OTHER]
        assert (other.ws_in, other.ws_out, other.ws_bytes_in, other.ws_bytes_out) == (0, 0, 0, 0)
        assert len(hub.channels) == 3 and figures.ws_closes.series == {}
        hub.on_counts(*counts_action(OTHER, (mine.id, 1, 1, 1, 1, "client")))
        assert mine.id in hub.channels, "someone else's last report closes nothing"

    run_direct(tmp_path, test)


@pytest.mark.parametrize(("closed", "why"), [
    ("client", "client"), ("app", "app"), ("too_big", "too_big"), ("protocol", "protocol"),
    ("slow_reader", "slow_reader"), ("owner_died", "app"), ("made up", "app"),
])
def test_a_last_report_forgets_the_socket_under_its_reason(tmp_path: Path, closed: str, why: str) -> None:
    """`closed` is counted as the owner says if it is one a held socket can end
    with, else as "app"; the owner is not told (it told us), and the worker lets go
    of its descriptor without a frame (the owner closed the socket)."""
    async def test(bed: Bed, direct: Direct) -> None:
        figures = bed.hub.figures = HttpFigures(enabled=True)
        direct_bind(bed.table, APP, "/ws")
        channel, client = await bed.connect(f"/{APP}/ws")
        await direct.claim(channel)
        bed.hub.on_counts(*counts_action(APP, (channel.id, 1, 2, 3, 4, closed)))
        assert bed.hub.channels == {} and channel.held is None
        stats = figures.apps[APP]
        assert (stats.ws_in, stats.ws_out, stats.ws_bytes_in, stats.ws_bytes_out) == (1, 2, 3, 4)
        assert figures.ws_closes.series == {(APP, why): 1}
        assert len(bed.proc.sent) == 1
        await spin()
        assert client.quiet()

    run_direct(tmp_path, test)


def test_the_owners_websocket_close_of_a_socket_it_holds_only_lets_go(tmp_path: Path) -> None:
    """The stub's WebSocketClose action after its socket ended: forgotten (reason
    app), no frame from the worker, the owner not told (it knows)."""
    async def test(bed: Bed, direct: Direct) -> None:
        figures = bed.hub.figures = HttpFigures(enabled=True)
        direct_bind(bed.table, APP, "/ws")
        channel, client = await bed.connect(f"/{APP}/ws")
        await direct.claim(channel)
        assert result(bed.hub.on_close(*close_action(APP, channel.id))) == "ok"
        assert bed.hub.channels == {} and channel.held is None and len(bed.proc.sent) == 1
        assert figures.ws_closes.series == {(APP, "app"): 1}
        await spin()
        assert client.quiet()

    run_direct(tmp_path, test)


def test_the_owners_close_of_a_socket_on_offer_is_written_by_the_worker(tmp_path: Path) -> None:
    async def test(bed: Bed, direct: Direct) -> None:
        direct_bind(bed.table, APP, "/ws")
        channel, client = await bed.connect(f"/{APP}/ws")
        token = direct.token(channel)
        assert result(bed.hub.on_close(*close_action(APP, channel.id))) == "ok"
        assert client.frames() == [(OP_CLOSE, close_body(1000))]
        await until(client.ended, "the end of the connection")
        assert bed.proc.told()[1:] == [(APP, "web_socket_close", channel.id, 0, None)]
        assert await direct.refused(channel, token) == "no such socket on offer (the server serves it)"

    run_direct(tmp_path, test)


def test_a_lost_kernel_or_an_owner_that_cannot_take_frames_leaves_claimed_sockets_open(tmp_path: Path) -> None:
    """Nothing of a held socket passes through the kernel: neither 1012 on a lost
    kernel nor 1011 on an undelivered frame touches it, busy as it may be; a socket
    still on offer is the worker's and closes like any other."""
    async def test(bed: Bed, direct: Direct) -> None:
        direct_bind(bed.table, APP, "/ws")
        ws_bind(bed.table, APP, "/plain", authenticated=False)
        held, held_client = await bed.connect(f"/{APP}/ws")
        await direct.claim(held)
        offered, offered_client = await bed.connect(f"/{APP}/ws")
        plain, plain_client = await bed.connect(f"/{APP}/plain")
        bed.proc.last_heard = asyncio.get_running_loop().time()  # every socket is recent
        bed.proc.connected = False
        assert bed.proc.disconnected is not None
        bed.proc.disconnected()
        assert list(bed.hub.channels) == [held.id]
        assert offered_client.frames() == [(OP_CLOSE, close_body(1012, "the node's kernel restarted"))]
        await plain_client.closed_with(1012, "the node's kernel restarted")
        assert bed.proc.told()[3:] == [(APP, "web_socket_close", offered.id, 0, None),
                                       (APP, "web_socket_close", plain.id, 0, None)]
        undelivered = bed.proc.undelivered
        assert undelivered is not None
        undelivered(Offline(APP, 5, "no such process"))
        assert list(bed.hub.channels) == [held.id] and held.claimed
        await spin()
        assert held_client.quiet()

    run_direct(tmp_path, test)


def test_an_unbind_tells_the_owner_of_a_claimed_socket_and_closes_one_on_offer(tmp_path: Path) -> None:
    """The owner closes the socket it holds (1001, porch.process.held) when told
    WebSocketClose; the worker writes nothing on it."""
    async def test(bed: Bed, direct: Direct) -> None:
        path = direct_bind(bed.table, APP, "/ws")
        held, held_client = await bed.connect(f"/{APP}/ws")
        await direct.claim(held)
        offered, offered_client = await bed.connect(f"/{APP}/ws")
        ws_unbind(bed.table, APP, "/ws")
        bed.hub.binding_changed(path)
        assert bed.hub.channels == {}
        assert bed.proc.told()[2:] == [(APP, "web_socket_close", held.id, 0, None),
                                       (APP, "web_socket_close", offered.id, 0, None)]
        assert offered_client.frames() == [(OP_CLOSE, close_body(1001, "unbound"))]
        await spin()
        assert held_client.quiet()

    run_direct(tmp_path, test)


def test_descriptors_handed_over_by_a_replaced_worker_are_kept_as_it_kept_them(tmp_path: Path) -> None:
    """A new worker adopts the descriptors of sockets their owners hold (from the worker
    it replaces): each becomes a claimed channel of its owner, watched, counted, not in
    the record; malformed entries and ids it has already are closed, not adopted; the
    owner's death then closes the adopted socket 1001."""
    async def test(bed: Bed, direct: Direct) -> None:
        pairs = [socket.socketpair() for _ in range(4)]
        try:
            ours, theirs = [a for a, _ in pairs], [b for _, b in pairs]
            direct_bind(bed.table, APP, "/ws")
            existing, _client = await bed.connect(f"/{APP}/ws")
            entries: list[Any] = [{"id": 7, "app": APP, "path": f"/{APP}/ws"},
                                  {"id": "8", "app": APP, "path": "/x"},
                                  {"id": existing.id, "app": APP, "path": f"/{APP}/ws"},
                                  ["not", "a", "dict"]]
            assert bed.hub._adopt(entries, ours) == 1
            adopted = bed.hub.channels[7]
            assert adopted.claimed and adopted.app == APP and adopted.conn is None
            assert adopted.binding_path == f"/{APP}/ws" and adopted.held is ours[0]
            assert [s.fileno() for s in ours[1:]] == [-1, -1, -1], "the others closed"
            assert bed.hub.channels[existing.id] is existing
            assert [w[0] for w in bed.proc.watched] == [APP], "one watch per owner"
            bed.hub._write_record()
            record = json.loads((tmp_path / f"ws-channels.{os.getpid()}.json").read_bytes())
            assert 7 not in [e["id"] for e in record]
            bed.proc.watched[0][1](APP)
            theirs[0].settimeout(5)
            assert theirs[0].recv(100) == b"\x88\x13\x03\xe9the app went away"
            assert 7 not in bed.hub.channels
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    run_direct(tmp_path, test)
