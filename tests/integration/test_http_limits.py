"""The http-server's connection limits, with a real node and raw-socket clients.

`max_header_bytes`, `body_timeout_s`, `idle_timeout_s` and `request_timeout_s` (README,
"Configuration") are set small in this node's porch.toml so that each limit shows
within a second or two; every test also checks that other clients are served meanwhile.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import porch
from porch.http.server import HttpBindingConfig, HttpServer
from support.node import Node, children, free_port, wait_for

APP_SOURCE = (Path(__file__).parent.parent / "support" / "http_app.py").read_text()
MAX_HEADER_BYTES = 4096
APPS = ("hd:pkg:pub.os", "body:pkg:pub.os", "idle:pkg:pub.os", "rt:pkg:pub.os", "quiet:pkg:pub.os")
CONFIG = (
    'node = "limits.os"\n[http_server]\n'
    f"max_header_bytes = {MAX_HEADER_BYTES}\nbody_timeout_s = 1\nidle_timeout_s = 1\nrequest_timeout_s = 1\n"
    + "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n' for pid in APPS)
)
# Generous: each limit above is 1 s; anything near this means it was not enforced.
FAILS_FAST = 8.0


class Limits:
    def __init__(self, config: str = CONFIG) -> None:
        self.node = Node(config)
        self.port = free_port()
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": "pw"})
        self.base = f"http://127.0.0.1:{self.port}"

    def app(self, pid: str, bindings: list[dict[str, Any]]) -> None:
        self.node.spawn(pid, APP_SOURCE, BINDINGS=json.dumps(bindings))
        self.node.wait_log(pid, "READY")

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 10)
        return requests.get(self.base + path, **kw)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def worker(self) -> list[int]:
        return children(self.node.procs["http-server"].pid)


@pytest.fixture(scope="module")
def lim() -> Iterator[Limits]:
    w = Limits()
    try:
        w.app("hd:pkg:pub.os", [{"path": "/"}])
        w.app("body:pkg:pub.os", [{"path": "/"}])
        w.app("idle:pkg:pub.os", [{"path": "/", "timeout": 10}])
        w.app("rt:pkg:pub.os", [{"path": "/"}])
        yield w
    finally:
        w.node.close()


def served(lim: Limits, app: str = "hd:pkg:pub.os") -> bool:
    r = lim.get(f"/{app}/")
    return r.status_code == 200 and r.json()["me"] == app


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (socket timeout: it never did)."""
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not data:
            return out
        out += data


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return head + b"\r\n\r\n" + body


def get_request(path: str, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + extra + b"\r\n"


class Closed:
    """How a connection ended: `after` seconds (None: still open), what was received."""

    def __init__(self) -> None:
        self.after: float | None = None
        self.received = b""


def closed_by_server(sock: socket.socket, within: float, keep_sending: bytes = b"") -> Closed:
    """Watch sock for `within` seconds until the server has closed it.

    Without `keep_sending`: closed = EOF or reset when reading. With it, sent every
    0.1 s: closed = sending fails (the server's socket is gone, not just its half)."""
    out = Closed()
    started = time.monotonic()
    eof = False
    while time.monotonic() - started < within:
        if keep_sending:
            try:
                sock.sendall(keep_sending)
            except OSError:  # broken pipe / reset
                out.after = time.monotonic() - started
                return out
        readable, _, _ = select.select([] if eof else [sock], [], [], 0.1)
        if eof:
            time.sleep(0.1)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            out.received += data
            if not data:
                eof = True
                if not keep_sending:
                    out.after = time.monotonic() - started
                    return out
    return out


# ---------------------------------------------------------------------------- max_header_bytes


def test_head_over_max_header_bytes_is_431_and_the_connection_closed(lim: Limits) -> None:
    """Kinode (hyper) answers 431 too; Tornado alone would close without a word."""
    app = "/hd:pkg:pub.os/"
    worker = lim.worker()
    # Just under the limit is served...
    assert lim.get(app, headers={"X-Pad": "y" * (MAX_HEADER_BYTES - 500)}).status_code == 200
    # ... over it, on a raw socket: a 431 and then the end of the connection.
    with lim.connect() as s:
        s.sendall(get_request(app, b"X-Pad: " + b"y" * (MAX_HEADER_BYTES + 100) + b"\r\n"))
        answer = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"\r\nconnection: close\r\n" in answer.lower()
    # The limit is on the whole head, not one line: many small headers count together.
    many = {f"X-H{i}": "v" * 50 for i in range(MAX_HEADER_BYTES // 50)}
    assert lim.get(app, headers=many).status_code == 431
    # A client still sending a far larger head reads its 431 too (not a reset).
    assert lim.get(app, headers={"X-Pad": "y" * 200_000}).status_code == 431
    assert served(lim)
    assert lim.worker() == worker, "the worker did not crash"
    assert "Traceback" not in lim.node.log("http-server")


def test_oversized_head_on_a_kept_alive_connection_and_other_connections(lim: Limits) -> None:
    app = "/hd:pkg:pub.os/"
    with lim.connect() as bystander, lim.connect() as s:
        bystander.sendall(get_request(app))
        assert read_response(bystander).startswith(b"HTTP/1.1 200 ")
        s.sendall(get_request(app))
        assert read_response(s).startswith(b"HTTP/1.1 200 ")
        # The second request on the same connection is the oversized one.
        s.sendall(get_request(app, b"X-Pad: " + b"y" * (2 * MAX_HEADER_BYTES) + b"\r\n"))
        assert read_until_closed(s).startswith(b"HTTP/1.1 431 ")
        # A connection opened before keeps working.
        bystander.sendall(get_request(app))
        assert read_response(bystander).startswith(b"HTTP/1.1 200 ")


@pytest.mark.timeout(60)
def test_endless_head_is_cut_off_while_others_are_served(lim: Limits) -> None:
    """A client that never stops sending header bytes cannot hold the connection."""
    with lim.connect() as s:
        s.sendall(get_request("/hd:pkg:pub.os/", b"X-Pad: " + b"y" * (MAX_HEADER_BYTES + 1)))
        result: dict[str, Closed] = {}
        flood = threading.Thread(target=lambda: result.setdefault(
            "closed", closed_by_server(s, 20, keep_sending=b"y" * 1024)))
        flood.start()
        try:
            for _ in range(5):
                assert served(lim)
        finally:
            flood.join(30)
    closed = result["closed"]
    assert closed.received.startswith(b"HTTP/1.1 431 "), closed.received[:200]
    assert closed.after is not None, "the server still read the endless head after 20 s"
    assert closed.after < FAILS_FAST
    assert served(lim)


# ---------------------------------------------------------------------------- body_timeout_s


@pytest.mark.timeout(60)
def test_body_that_stops_arriving_is_answered_408_after_body_timeout_s(lim: Limits) -> None:
    # The binding's owner is a stub here, to see that the half-body never reaches it.
    owner = lim.node.process("quiet:pkg:pub.os")
    HttpServer(owner).bind_http_path("/", HttpBindingConfig(authenticated=False))
    with lim.connect() as s:
        s.sendall(b"POST /quiet:pkg:pub.os/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
                  + b"z" * 10)
        for _ in range(5):
            assert served(lim, "body:pkg:pub.os"), "others are served meanwhile"
        closed = closed_by_server(s, 20)
    assert closed.after is not None, "the stalled body still holds its connection after 20 s"
    assert closed.after < FAILS_FAST
    assert closed.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), closed.received
    assert b"Connection: close" in closed.received
    with pytest.raises(porch.Timeout):
        owner.await_message(timeout=0.5)
    assert served(lim, "body:pkg:pub.os")


@pytest.mark.timeout(60)
def test_body_that_trickles_is_answered_408_after_body_timeout_s(lim: Limits) -> None:
    """The timeout bounds the whole body, not the pause between bytes."""
    with lim.connect() as s:
        s.sendall(b"POST /body:pkg:pub.os/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
        result: dict[str, Closed] = {}
        trickle = threading.Thread(target=lambda: result.setdefault(
            "closed", closed_by_server(s, 20, keep_sending=b"z")))
        trickle.start()
        try:
            for _ in range(5):
                assert served(lim, "body:pkg:pub.os")
        finally:
            trickle.join(30)
    closed = result["closed"]
    assert closed.after is not None, "a byte every 0.1 s kept the body open for 20 s"
    assert closed.after < FAILS_FAST
    assert closed.received.startswith(b"HTTP/1.1 408 "), closed.received


# ---------------------------------------------------------------------------- idle_timeout_s


def test_idle_keep_alive_connection_is_closed_after_idle_timeout_s(lim: Limits) -> None:
    with lim.connect() as s:
        s.sendall(get_request("/idle:pkg:pub.os/"))
        assert read_response(s).startswith(b"HTTP/1.1 200 ")
        closed = closed_by_server(s, 20)
    assert closed.after is not None, "an idle keep-alive connection stayed open 20 s"
    assert closed.after < FAILS_FAST
    # A real client's pooled connection notices and reconnects.
    with requests.Session() as session:
        first = session.get(lim.base + "/idle:pkg:pub.os/", timeout=10)
        assert first.status_code == 200
        time.sleep(2.5)  # past idle_timeout_s: the server has closed the pooled connection
        second = session.get(lim.base + "/idle:pkg:pub.os/", timeout=10)
        assert second.status_code == 200
        assert second.json()["source_socket_addr"] != first.json()["source_socket_addr"], \
            "a new connection: the pooled one was closed by the server"


def test_a_client_that_takes_none_of_its_answer_is_closed_after_idle_timeout_s(lim: Limits) -> None:
    """A 32 MB answer to a client that reads nothing of it: it held its connection, its
    slot in max_connections and the unsent answer for ever. Now the server gives up
    idle_timeout_s after the client last took something, and the rest is never sent."""
    size = 32 * 1024 * 1024
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", lim.port))
        s.sendall(get_request(f"/idle:pkg:pub.os/?do=big&n={size}"))
        time.sleep(4)  # 1 s idle_timeout_s, and the 32 MB reaching the worker, with room
        got = 0
        try:
            while chunk := s.recv(1 << 20):
                got += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    assert got < size, "the whole answer was kept for a client that took none of it"


def test_idle_timeout_does_not_cut_a_request_its_app_is_still_answering(lim: Limits) -> None:
    """Waiting for the app is not idleness: 2.5 s > idle_timeout_s, within the binding's 10 s."""
    r = lim.get("/idle:pkg:pub.os/?do=sleep&s=2.5")
    assert r.status_code == 200 and r.json()["me"] == "idle:pkg:pub.os"


# ---------------------------------------------------------------------------- request_timeout_s


def test_binding_without_timeout_gets_504_after_request_timeout_s(lim: Limits) -> None:
    """request_timeout_s = 1 here (default 15); the binding sets no timeout of its own."""
    result: dict[str, requests.Response] = {}
    started = time.monotonic()
    slow = threading.Thread(target=lambda: result.setdefault("r", lim.get("/rt:pkg:pub.os/?do=sleep&s=5")))
    slow.start()
    for _ in range(3):
        assert served(lim), "others are served meanwhile"
    slow.join(20)
    elapsed = time.monotonic() - started
    # The app answers after 5 s: a 504 before that is the node's timeout, not Kinode's 15 s.
    assert result["r"].status_code == 504, result["r"].text
    assert "rt:pkg:pub.os did not answer in time" in result["r"].text
    assert elapsed < 4.5, f"{elapsed:.1f} s"


def test_rpc_wait_is_capped_at_request_timeout_s(lim: Limits) -> None:
    """RPC asks for 30 s; the node's request_timeout_s (1 s here) caps the wait: 504."""
    quiet = porch.Process("quiet:pkg:pub.os", home=lim.node.home.root, connect_timeout=10)
    try:
        started = time.monotonic()
        token = (lim.node.home.state_dir / "rpc.token").read_text().strip()
        r = requests.post(lim.base + "/rpc:distro:sys/message", timeout=20,
                          headers={"Authorization": f"Bearer {token}"},
                          json={"process": "quiet:pkg:pub.os", "body": "x", "expects_response": 30})
        elapsed = time.monotonic() - started
        assert r.status_code == 504 and "did not answer in time" in r.text, (r.status_code, r.text)
        assert elapsed < 4.5, f"{elapsed:.1f} s"
        # (It was delivered; its deadline has passed, so the stub drops it unseen.)
        with pytest.raises(porch.Timeout):
            quiet.await_message(timeout=0.5)
    finally:
        quiet.close()


# ---------------------------------------------------------------------------- connections


def small_node(extra: str = "") -> Limits:
    """A node of its own (the module's node must keep its connections)."""
    node = Limits('node = "conns.os"\n[http_server]\n' + extra
                  + '[[process]]\nid = "hd:pkg:pub.os"\ncapabilities = ["http-server:distro:sys"]\n')
    node.app("hd:pkg:pub.os", [{"path": "/"}])
    return node


def test_connections_past_max_connections_get_503_and_the_server_recovers() -> None:
    lim = small_node("max_connections = 3\n")
    idle: list[socket.socket] = []
    try:
        for _ in range(3):
            idle.append(lim.connect())  # accepted, waiting for a request head
        wait_for(lambda: _refused_busy(lim), 10, 0.1, "a connection past the limit to be refused")
        r = requests.get(lim.base + "/hd:pkg:pub.os/", timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", (r.status_code, r.text)
        lim.node.wait_log("http-server", "max_connections (3) reached", 5)
        idle.pop().close()
        wait_for(lambda: served(lim), 10, 0.1, "a request once a connection is free")
        assert lim.worker(), "the worker is still running"
    finally:
        for s in idle:
            s.close()
        lim.node.close()


def _refused_busy(lim: Limits) -> bool:
    return requests.get(lim.base + "/hd:pkg:pub.os/", timeout=10).status_code == 503


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_out_of_file_descriptors_pauses_accepting_instead_of_spinning() -> None:
    """With the worker's open-files limit lowered under it (prlimit), connections fill
    it: accept() fails EMFILE. Tornado's own handler would spin on the readable
    listening socket, logging each time; the worker must idle, log a little, and serve
    again once descriptors are free."""
    lim = small_node()
    idle: list[socket.socket] = []
    try:
        assert served(lim)
        (worker,) = lim.worker()
        in_use = len(os.listdir(f"/proc/{worker}/fd"))
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (in_use + 4, in_use + 4))
        for _ in range(12):  # more than the 4 left: the rest wait in the listen backlog
            idle.append(lim.connect())
        lim.node.wait_log("http-server", "cannot accept connections", 10)
        before = _cpu_s(worker)
        time.sleep(2.0)
        spent = _cpu_s(worker) - before
        assert spent < 0.5, f"the worker burnt {spent:.2f} s of CPU in 2 s: it spins"
        assert lim.node.log("http-server").count("cannot accept connections") <= 4
        for s in idle:
            s.close()
        idle.clear()
        wait_for(lambda: served(lim), 15, 0.2, "requests to be served once descriptors are free")
    finally:
        for s in idle:
            s.close()
        lim.node.close()
