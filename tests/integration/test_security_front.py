"""The http-server's front door and RPC endpoint under attack (issue 9, "Close the trust
holes": items 1, 6, 8, 11, 14 and 15 as the issue numbers them; each test names its
item). A real kernel, http-server and processes; real HTTP over sockets; what a
hostile web page, a foreign Host or a misbehaving app can make a browser or client send.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

import porch
from porch.wire import http_pb2
from support.node import Node, free_port, porch_cli, wait_for

APP_SOURCE = (Path(__file__).parent.parent / "support" / "http_app.py").read_text()
PASSWORD = "front pass"
NODE = "front.os"
COOKIE = f"kinode-auth_{NODE}"
RPC = "/rpc:distro:sys/message"
STATUS = "/http-server:distro:sys/status"
APP_IDS = set(re.findall(r"[a-z0-9-]+:[a-z0-9-]+:pub\.os", Path(__file__).read_text())) | {
    "homepage:homepage:sys"}
EVIL = "http://evil.example"


def grants(ids: set[str]) -> str:
    return "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                   for pid in sorted(ids))


class Front:
    """A kernel and an http-server; `extra` is added to porch.toml."""

    def __init__(self, extra: str = "", services: tuple[str, ...] = ()) -> None:
        self.node = Node(f'node = "{NODE}"\n[http_server]\nlogin_attempts_per_minute = 1000\n'
                         'allowed_hosts = ["node.example.com"]\n' + grants(APP_IDS) + extra)
        self.port = free_port()
        try:
            self.node.start("kernel")
            self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": PASSWORD})
            for service in services:
                self.node.start(service)
        except BaseException:
            self.node.close()  # a service that did not come up leaves no process behind
            raise
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = (self.node.home.state_dir / "rpc.token").read_text().strip()
        self._cookie: str | None = None

    def url(self, path: str) -> str:
        return self.base + path

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 10)
        kw.setdefault("allow_redirects", False)
        return requests.request(method, self.url(path), **kw)

    def rpc(self, payload: dict[str, Any], **headers: str) -> requests.Response:
        """RPC as a script does it: JSON, the token."""
        sent = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}", **headers}
        return self.request("POST", RPC, data=json.dumps(payload), headers=sent)

    def cookie(self) -> str:
        if self._cookie is None:
            r = self.request("POST", "/login", json={"password": PASSWORD})
            assert r.status_code == 200, r.text
            self._cookie = str(r.cookies[COOKIE])
        return self._cookie

    def app(self, pid: str, bindings: list[dict[str, Any]]) -> None:
        self.node.spawn(pid, APP_SOURCE, BINDINGS=json.dumps(bindings))
        self.node.wait_log(pid, "READY")


@pytest.fixture(scope="module")
def front() -> Iterator[Front]:
    f = Front()
    try:
        yield f
    finally:
        f.node.close()


def nothing_delivered(proc: porch.Process, wait: float = 0.5) -> bool:
    try:
        msg = proc.await_message(timeout=wait)
    except porch.Timeout:
        return True
    raise AssertionError(f"{proc.our} received {msg.body!r} from {msg.source}")


def raw(port: int, request: bytes, timeout: float = 10) -> tuple[int, dict[str, list[str]], bytes]:
    """Send bytes, read one response (Content-Length framed) or until the server
    closes; a server that does neither within `timeout` fails the test: "no hang"."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no complete answer within {timeout} s; got {data!r}") from None
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
            if not chunk:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "the server closed without answering"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status_line.split()[1]), headers, body


# ---------------------------------------------------------------------------- item 1: RPC


def test_item1_cross_site_rpc_is_refused_and_reaches_nobody(front: Front) -> None:
    """Issue 9 item 1 (CSRF): what a page on another site can make the owner's browser
    send to a loopback node: a no-preflight POST (text/plain, form types) with its
    Origin and Sec-Fetch-Site, the owner's cookie riding along. None gets through, not
    even with the token; nothing reaches the target."""
    target = front.node.process("t1:pkg:pub.os")
    body = json.dumps({"process": "t1:pkg:pub.os", "body": "pwned"})
    browser = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    cookies = {COOKIE: front.cookie()}
    attempts = [
        ({**browser, "Content-Type": "text/plain;charset=UTF-8"}, 403),
        ({**browser, "Content-Type": "application/x-www-form-urlencoded"}, 403),
        ({"Origin": EVIL, "Content-Type": "application/json", "Authorization": f"Bearer {front.token}"}, 403),
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json",
          "Authorization": f"Bearer {front.token}"}, 403),
        ({"Sec-Fetch-Site": "same-site", "Content-Type": "application/json", "X-Porch-RPC": "1"}, 403),
        ({"Content-Type": "text/plain", "Authorization": f"Bearer {front.token}"}, 415),
        ({"Content-Type": "text/plain"}, 415),  # an old browser: no Origin, no Sec-Fetch-Site
        ({"Content-Type": "application/json"}, 401),  # no credential
        ({"Content-Type": "application/json", "Authorization": "Bearer not-the-token"}, 401),
    ]
    for headers, status in attempts:
        r = front.request("POST", RPC, data=body, headers=headers, cookies=cookies)
        assert r.status_code == status, (headers, r.status_code, r.text)
        assert r.text.strip(), "a refusal says why"
    # the cookie alone (a form post from anywhere carries it) is no credential
    r = front.request("POST", RPC, data=body, headers={"Content-Type": "application/json"}, cookies=cookies)
    assert r.status_code == 401, r.text
    assert nothing_delivered(target)
    # ... and the proper call is delivered, under RPC's own identity
    assert front.rpc({"process": "t1:pkg:pub.os", "body": "legit"}).status_code == 200
    msg = target.await_message(timeout=5)
    assert (msg.body, msg.source) == (b"legit", "rpc:distro:sys")


def test_item1_rpc_with_the_token_or_the_cookie_and_custom_header(front: Front) -> None:
    """Issue 9 item 1: `porch rpc-token` prints the token (0600 file in the state
    directory); a script sends it as a Bearer token, a page of the node itself sends
    the owner's cookie plus X-Porch-RPC."""
    token_file = front.node.home.state_dir / "rpc.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    printed = porch_cli("rpc-token", home=front.node.home.root)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == front.token and len(front.token) >= 32
    usage = porch_cli("rpc-token", "--help", home=front.node.home.root).stdout
    assert "Authorization: Bearer" in " ".join(usage.split())
    typo = front.node.dir / "no-such-home"
    missing = porch_cli("rpc-token", home=typo)
    assert missing.returncode == 2 and "no node home" in missing.stderr and not typo.exists()
    target = front.node.process("t1b:pkg:pub.os")

    def answer() -> None:
        m = target.await_message(timeout=5)
        target.respond(m, b"AB", blob=b"zz", mime="text/plain")

    t = threading.Thread(target=answer)
    t.start()
    r = front.rpc({"process": "t1b:pkg:pub.os", "body": "q", "expects_response": 5})
    t.join()
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"body": [65, 66], "lazy_load_blob": {"mime": "text/plain", "bytes": list(b"eno=")}}
    own_origin = {"Origin": f"http://127.0.0.1:{front.port}", "Sec-Fetch-Site": "same-origin"}
    r = front.request("POST", RPC, data=json.dumps({"process": "t1b:pkg:pub.os", "body": "page"}),
                      headers={"Content-Type": "application/json", "X-Porch-RPC": "1", **own_origin},
                      cookies={COOKIE: front.cookie()})
    assert r.status_code == 200, r.text
    msg = target.await_message(timeout=5)
    assert (msg.body, msg.source) == (b"page", "rpc:distro:sys")


def bind_action_body(path: str) -> str:
    """A Bind action that would serve the attacker's HTML on the node's origin."""
    action = http_pb2.HttpServerAction()
    action.bind.path = path
    action.bind.cache = True
    return action.SerializeToString().decode()


def test_item1_rpc_cannot_reach_the_node_services(front: Front) -> None:
    """Issue 9 item 1: RPC messages go out as rpc:distro:sys, which by default reaches
    public processes only: not the http-server (whose Bind from RPC would serve an
    attacker's page on the node's origin) nor the http-client (fetch any URL).
    NoCapability is 403; a fire-and-forget one is 200 (sent) but delivered to nobody."""
    evil = base64.b64encode(b"<script>steal()</script>").decode()
    bind = {"process": "http-server:distro:sys", "body": bind_action_body("/evil"), "mime": "text/html",
            "data": evil}
    r = front.rpc({**bind, "expects_response": 5})
    assert r.status_code == 403 and "capability" in r.text, (r.status_code, r.text)
    assert front.rpc(bind).status_code == 200
    fetch = {"process": "http-client:distro:sys", "body": "{}", "expects_response": 5}
    r = front.rpc(fetch)
    assert r.status_code == 403 and "capability" in r.text, (r.status_code, r.text)
    for path in ("/http-server:distro:sys/evil", "/rpc:distro:sys/evil"):
        assert front.request("GET", path).status_code == 404, path


def test_item1_granted_rpc_reaches_the_http_client_but_never_binds() -> None:
    """Issue 9 item 1: the owner grants RPC capabilities in porch.toml like any
    process's; even with the http-server granted, a message from RPC is never a
    binding action (InvalidSourceProcess), so it cannot serve anything."""
    f = Front('[[process]]\nid = "rpc:distro:sys"\n'
              'capabilities = ["http-client:distro:sys", "http-server:distro:sys"]\n',
              services=("http-client",))
    try:
        r = f.rpc({"process": "http-client:distro:sys", "body": "not a request", "expects_response": 5})
        assert r.status_code == 200, (r.status_code, r.text)  # the http-client answered (an error)
        evil = base64.b64encode(b"<script>steal()</script>").decode()
        r = f.rpc({"process": "http-server:distro:sys", "body": bind_action_body("/evil"), "mime": "text/html",
                   "data": evil, "expects_response": 5})
        assert r.status_code == 200, r.text
        result = http_pb2.HttpServerResult.FromString(bytes(r.json()["body"]))
        assert result.WhichOneof("result") == "err"
        assert result.err.kind == http_pb2.HttpServerError.InvalidSourceProcess
        assert f.request("GET", "/rpc:distro:sys/evil").status_code == 404
        assert "rpc:distro:sys is a node service" in f.node.log("http-server")
    finally:
        f.node.close()


def test_item1_the_homepage_cannot_take_over_other_paths(front: Front) -> None:
    """Issue 9 item 1: the homepage binds raw paths (Kinode) but none in a process's
    namespace: not the RPC endpoint (with or without the leading "/"), not another
    app's paths, not a wildcard over all of them."""
    front.app("t1v:pkg:pub.os", [{"path": "/"}])
    home = front.node.process("homepage:homepage:sys")
    for path in ("rpc:distro:sys/message", "/rpc:distro:sys/message", "/t1v:pkg:pub.os/x", "t1v:pkg:pub.os",
                 "/*", "/:any"):
        action = http_pb2.HttpServerAction()
        action.bind.path = path
        reply = home.send_and_await_response("http-server:distro:sys", action.SerializeToString(), timeout=5)
        result = http_pb2.HttpServerResult.FromString(reply.body)
        assert result.WhichOneof("result") == "err", path
        assert result.err.kind == http_pb2.HttpServerError.InvalidSourceProcess, path
    assert front.request("GET", "/t1v:pkg:pub.os/x").json()["me"] == "t1v:pkg:pub.os"
    target = front.node.process("t1w:pkg:pub.os")
    assert front.rpc({"process": "t1w:pkg:pub.os", "body": "still rpc"}).status_code == 200
    assert target.await_message(timeout=5).body == b"still rpc"
    assert nothing_delivered(home)


# ---------------------------------------------------------------------------- item 1: Host


def test_item1_a_foreign_host_is_refused_on_every_path(front: Front) -> None:
    """Issue 9 item 1 ("a foreign Host is not refused"; DNS rebinding): a page of
    evil.example re-pointed at 127.0.0.1 is same-origin for the browser, but its
    requests say `Host: evil.example`. Every path answers 400 before routing: pages, an
    app, RPC (even with the token), status, and a WebSocket upgrade."""
    front.app("t2:pkg:pub.os", [{"path": "/x"}])
    ws_app = front.node.process("t2w:pkg:pub.os")
    ws_bind(ws_app, "/ws")
    rpc_target = front.node.process("t2r:pkg:pub.os")
    for host in ("evil.example", f"evil.example:{front.port}", "localhost.evil.example",
                 "a.b.node.example.com", "127.0.0.1.nip.io"):
        headers = {"Host": host}
        for method, path in (("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("GET", "/t2:pkg:pub.os/x"),
                             ("GET", STATUS), ("GET", "/nothing-here")):
            r = front.request(method, path, headers=headers, json={"password": PASSWORD})
            assert r.status_code == 400, (host, path, r.status_code)
            assert "set-cookie" not in r.headers
        r = front.rpc({"process": "t2r:pkg:pub.os", "body": "rebound"}, Host=host)
        assert r.status_code == 400, (host, r.status_code, r.text)
        sock = socket.create_connection(("127.0.0.1", front.port), timeout=10)
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://{host}/t2w:pkg:pub.os/ws", sock=sock, open_timeout=10)
        assert refused.value.response.status_code == 400
    assert nothing_delivered(rpc_target)
    assert nothing_delivered(ws_app, 0.1)
    assert "allowed_hosts" in front.node.log("http-server")
    # The node's own names are served: localhost, *.localhost, IP literals, the
    # allowed_hosts names and one label in front of them; the port is not compared.
    for host in ("localhost", f"localhost:{front.port}", "pkg-pub-os.localhost:1", "127.0.0.1", "10.9.8.7",
                 "[::1]:80", "node.example.com", "NODE.example.com.", "pkg-pub-os.node.example.com:443"):
        r = front.request("GET", "/t2:pkg:pub.os/x", headers={"Host": host})
        assert r.status_code == 200, (host, r.status_code, r.text)
    sock = socket.create_connection(("127.0.0.1", front.port), timeout=10)
    with connect("ws://node.example.com/t2w:pkg:pub.os/ws", sock=sock, open_timeout=10):
        assert app_event(ws_app)[0] == "web_socket_open"


# ---------------------------------------------------------------------------- item 11: Host count


def test_item11_http11_without_host_or_with_two_is_400(front: Front) -> None:
    """Issue 9 item 11 (RFC 9112 3.2): an HTTP/1.1 request without Host, or any with
    two, is answered 400. HTTP/1.0 predates Host: without one it is served as if it
    named localhost."""
    front.app("t11:pkg:pub.os", [{"path": "/x"}])
    for request in (b"GET /t11:pkg:pub.os/x HTTP/1.1\r\n\r\n",
                    b"GET /t11:pkg:pub.os/x HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n",
                    b"GET /t11:pkg:pub.os/x HTTP/1.1\r\nHost: evil.example\r\nHost: localhost\r\n\r\n",
                    b"GET /t11:pkg:pub.os/x HTTP/1.0\r\nHost: localhost\r\nHost: evil.example\r\n\r\n",
                    b"GET /t11:pkg:pub.os/x HTTP/1.1\r\nHost:\r\n\r\n",
                    b"GET /login HTTP/1.1\r\n\r\n"):
        status, _, body = raw(front.port, request)
        assert status == 400, (request, status, body)
    status, _, body = raw(front.port, b"GET /t11:pkg:pub.os/x HTTP/1.0\r\n\r\n")
    assert status == 200 and json.loads(body)["url"].startswith("http://localhost/"), body


# ---------------------------------------------------------------------------- item 6: headers


@pytest.mark.parametrize(("header", "why"), [
    ("X-Bad:euro \u20ac", "beyond Latin-1"),
    ("X-Bad:bell \x07", "control byte"),
    ("X-Bad:del \x7f", "DEL"),
    ("X-Bad:line\r\nX-Injected: 1", "CR LF"),
    ("X-Bad:nul \x00", "NUL"),
    ("Bad Name:x", "invalid name"),
])
def test_item6_a_header_http_cannot_carry_is_502_not_a_hang(front: Front, header: str, why: str) -> None:
    """Issue 9 item 6: the app's whole answer becomes 502, with a log line naming the
    app; the client is answered (the socket timeout is the "does not hang" bound)."""
    if "t6:pkg:pub.os" not in front.node.procs:
        front.app("t6:pkg:pub.os", [{"path": "/"}])
    query = f"do=reply&status=200&h={requests.utils.quote(header, safe='')}&body=secret"
    status, headers, body = raw(front.port, f"GET /t6:pkg:pub.os/?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n"
                                .encode())
    assert status == 502, (why, status, body)
    assert b"t6:pkg:pub.os" in body and b"secret" not in body
    assert "x-injected" not in headers
    wait_for(lambda: "t6:pkg:pub.os answered GET /t6:pkg:pub.os/" in front.node.log("http-server"), 5,
             what="the log line naming the app")


def test_item6_an_unsendable_answer_of_porch_itself_is_still_an_answer(front: Front) -> None:
    """Issue 9 item 6: a redirect HTTP cannot carry (a login with a redirect beyond
    Latin-1) used to leave the client hanging after a successful login; whatever the
    login decides about such a redirect, the connection is answered."""
    body = json.dumps({"password": PASSWORD}).encode()
    request = (b"POST /login?redirect=/%E2%82%AC HTTP/1.1\r\nHost: localhost\r\n"
               b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
               + b"\r\n\r\n" + body)
    status, _, _ = raw(front.port, request)
    assert 200 <= status < 600
    assert front.request("GET", "/login").status_code == 200


# ---------------------------------------------------------------------------- item 8: WS Origin


def ws_bind(proc: porch.Process, path: str, authenticated: bool = False, extension: bool = False) -> None:
    action = http_pb2.HttpServerAction()
    action.web_socket_bind.path, action.web_socket_bind.authenticated = path, authenticated
    action.web_socket_bind.extension = extension
    reply = proc.send_and_await_response("http-server:distro:sys", action.SerializeToString(), timeout=5)
    assert http_pb2.HttpServerResult.FromString(reply.body).WhichOneof("result") == "ok"


def test_item8_authenticated_websocket_origin_is_compared_with_host(front: Front) -> None:
    """Issue 9 item 8: porch compares Origin with Host itself (Tornado 6.4 and 6.5 leave
    it to check_origin, which refused every browser). A browser-like Origin of the
    node is accepted, another origin (a secure subdomain's page included) refused;
    without Origin (not a browser) the cookie alone decides."""
    app = front.node.process("t8:pkg:pub.os")
    ws_bind(app, "/ws", authenticated=True)
    cookie = {"Cookie": f"{COOKIE}={front.cookie()}"}
    url = f"ws://127.0.0.1:{front.port}/t8:pkg:pub.os/ws"

    def open_(origin: str | None, **extra: str) -> ClientConnection:
        return connect(url, additional_headers={**cookie, **extra}, origin=origin,  # type: ignore[arg-type]
                       open_timeout=10)

    for origin, extra in ((f"http://127.0.0.1:{front.port}", {}),
                          (f"http://127.0.0.1:{front.port}", {"Sec-Fetch-Site": "same-origin"}),
                          (None, {})):
        with open_(origin, **extra):
            which, _, _ = app_event(app)
            assert which == "web_socket_open", origin
        while app_event(app)[0] != "web_socket_close":  # (a push of the client's Close first)
            pass
    for origin in (EVIL, f"http://localhost:{front.port}", f"http://pkg-pub-os.localhost:{front.port}",
                   f"http://127.0.0.1:{front.port + 1}", "null"):
        with pytest.raises(InvalidStatus) as refused:
            open_(origin)
        assert refused.value.response.status_code == 403, origin
    with pytest.raises(InvalidStatus) as refused:
        open_(f"http://127.0.0.1:{front.port}", **{"Sec-Fetch-Site": "cross-site"})
    assert refused.value.response.status_code == 403
    assert nothing_delivered(app, 0.2)


def test_item8_a_web_page_cannot_pose_as_an_extension(front: Front) -> None:
    """Issue 9 item 8, the same class: an extension socket's only check is a loopback
    peer, which every page in the owner's browser is; a browser Origin other than the
    node's own is refused, the extension itself (a program: no Origin) is served."""
    app = front.node.process("t8e:pkg:pub.os")
    ws_bind(app, "/ext", extension=True)
    url = f"ws://127.0.0.1:{front.port}/t8e:pkg:pub.os/ext"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin=EVIL, open_timeout=10)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    assert nothing_delivered(app, 0.2)
    with connect(url, open_timeout=10):
        assert app_event(app)[0] == "web_socket_open"


def app_event(proc: porch.Process) -> tuple[str, Any, porch.Message]:
    msg = proc.await_message(timeout=5)
    req = http_pb2.HttpServerRequest.FromString(msg.body)
    which = req.WhichOneof("request") or ""
    return which, getattr(req, which), msg


# ---------------------------------------------------------------------------- item 14: masking


def test_item14_an_unmasked_client_frame_closes_with_1002(front: Front) -> None:
    """Issue 9 item 14 (RFC 6455 5.1): a client frame without a mask is a protocol
    error: the server closes with 1002 and the frame reaches nobody. A masked one on
    the same kind of socket is delivered."""
    app = front.node.process("t14:pkg:pub.os")
    ws_bind(app, "/ws")

    def handshake() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", front.port), timeout=10)
        s.sendall(b"GET /t14:pkg:pub.os/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert app_event(app)[0] == "web_socket_open"
        return s

    with handshake() as s:
        mask = os.urandom(4)
        payload = b"masked"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        which, _, msg = app_event(app)
        assert which == "web_socket_push" and msg.blob is not None and msg.blob.bytes == b"masked"
    assert app_event(app)[0] == "web_socket_close"

    with handshake() as s:
        s.sendall(bytes([0x81, 5]) + b"hello")  # FIN + text, no mask bit
        data = b""
        while len(data) < 4:
            chunk = s.recv(64)
            assert chunk, f"closed without a close frame (got {data!r})"
            data += chunk
        assert data[0] == 0x88, data  # FIN + close
        assert struct.unpack("!H", data[2:4])[0] == 1002
        s.settimeout(10)
        while s.recv(64):  # then the server closes the connection
            pass
    which, _, _ = app_event(app)
    assert which == "web_socket_close", "the frame itself was never pushed to the app"


# ---------------------------------------------------------------------------- item 15: headers


def framing_denied(headers: Any) -> bool:
    return (headers.get("X-Frame-Options") == "DENY"
            and "frame-ancestors 'none'" in headers.get("Content-Security-Policy", "")
            and headers.get("X-Content-Type-Options") == "nosniff")


def test_item15_porch_pages_cannot_be_framed_and_are_not_sniffed(front: Front) -> None:
    """Issue 9 item 15: the login page, the homepage and porch's error answers carry
    X-Frame-Options DENY, frame-ancestors 'none' and nosniff; static content served
    from the cache carries nosniff (its framing is the app's business); answers on
    authenticated paths are private, no-store unless the app says otherwise."""
    login = front.request("GET", "/login")
    assert login.status_code == 200 and framing_denied(login.headers), login.headers
    home = front.request("GET", "/", cookies={COOKIE: front.cookie()}, headers={"Accept": "text/html"})
    assert home.status_code == 200 and "<ul>" in home.text
    assert framing_denied(home.headers) and "no-store" in home.headers["Cache-Control"]
    for path in ("/nothing-bound-here", STATUS + "x"):
        r = front.request("GET", path)
        assert r.status_code == 404 and framing_denied(r.headers), path
    r = front.request("GET", "/", headers={"Accept": "application/json"})  # 401 for an API client
    assert r.status_code == 401 and framing_denied(r.headers)
    assert framing_denied(front.request("GET", "/", headers={"Host": "evil.example"}).headers)
    front.app("t15:pkg:pub.os", [{"path": "/static", "static": "<p>hi</p>", "mime": "text/html"},
                                 {"path": "/private", "authenticated": True},
                                 {"path": "/private-static", "authenticated": True, "static": "s"},
                                 {"path": "/open"}])
    static = front.request("GET", "/t15:pkg:pub.os/static")
    assert static.text == "<p>hi</p>" and static.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Frame-Options" not in static.headers and "Cache-Control" not in static.headers
    cookies = {COOKIE: front.cookie()}
    cached = front.request("GET", "/t15:pkg:pub.os/private-static", cookies=cookies)
    assert cached.text == "s" and cached.headers["Cache-Control"] == "private, no-store"
    private = front.request("GET", "/t15:pkg:pub.os/private", cookies=cookies)
    assert private.status_code == 200 and private.headers["Cache-Control"] == "private, no-store"
    own = front.request("GET", "/t15:pkg:pub.os/private?do=reply&h=Cache-Control:max-age%3D60", cookies=cookies)
    assert own.headers["Cache-Control"] == "max-age=60", "the app's own Cache-Control stands"
    public = front.request("GET", "/t15:pkg:pub.os/open")
    assert public.status_code == 200 and "Cache-Control" not in public.headers
    assert "X-Frame-Options" not in public.headers, "an app's answer is the app's"
    # porch's answers outside the normal path: the 413 before the body is read
    status, headers, _ = raw(front.port, b"POST /t15:pkg:pub.os/open HTTP/1.1\r\nHost: localhost\r\n"
                             b"Content-Length: 999999999999\r\n\r\n")
    assert status == 413 and headers["x-content-type-options"] == ["nosniff"]
    ws_refused = front.request("GET", "/t15:pkg:pub.os/nows", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13"})
    assert ws_refused.status_code == 404 and framing_denied(ws_refused.headers)
