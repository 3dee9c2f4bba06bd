"""Several http-server workers on one port (issue 12 item 3, docs/workers.md), on a real
node: every worker serves every binding from its acknowledgement on, a logout on one
ends the session on all, a WebSocket admitted by a member lives in the primary (pushes,
owner death), the service is listed once, and restarts and crashes replace every
worker without refusing a connection."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import porch
from porch.http_server.rpc_auth import RpcToken
from porch.node.starts import read_starts
from porch.wire import http_pb2
from support.node import Node, free_port, wait_for

NODE = "workers.os"
APP = "wk:pkg:pub.os"
WSAPP = "wkws:pkg:pub.os"


class Site:
    def __init__(self) -> None:
        grants = "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                         for pid in (APP, WSAPP))
        self.node = Node(f'node = "{NODE}"\n[http_server]\nworkers = 2\n' + grants)
        self.port = free_port()
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": "pw"})
        self.wait_workers(2)
        self.app = self.node.process(APP)

    def status(self, conn: socket.socket) -> dict[str, int]:
        conn.sendall(b"GET /http-server:distro:sys/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, body = read_response(conn)
        assert status == 200, body
        return dict(json.loads(body))

    def conn_to(self, primary: bool) -> socket.socket:
        """A kept-alive connection that the primary (or a member) accepted."""
        for _ in range(200):
            conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            if bool(self.status(conn)["primary"]) == primary:
                return conn
            conn.close()
        raise AssertionError("no connection reached the worker asked for")

    def worker_pids(self) -> set[int]:
        seen: set[int] = set()
        for _ in range(60):
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as conn:
                seen.add(self.status(conn)["worker_pid"])
        return seen

    def wait_workers(self, count: int, before: int = 0) -> None:
        wait_for(lambda: self.node.log("http-server").count("serving http on") >= before + count, 30,
                 what=f"{count} workers serving")


def read_response(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        assert chunk, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        assert chunk
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:length]


def get(conn: socket.socket, path: str, cookie: str = "") -> tuple[int, bytes]:
    extra = f"Cookie: {cookie}\r\n" if cookie else ""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode())
    status, _, body = read_response(conn)
    return status, body


def bind_static(app: porch.Process, path: str, body: bytes, authenticated: bool = False) -> None:
    action = http_pb2.HttpServerAction()
    action.bind.path = path
    action.bind.authenticated = authenticated
    action.bind.cache = True
    reply = app.send_and_await_response("http-server:distro:sys", action.SerializeToString(), blob=body)
    assert http_pb2.HttpServerResult.FromString(reply.body).WhichOneof("result") == "ok"


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    try:
        yield s
    finally:
        s.node.close()


def test_both_workers_serve_and_the_service_is_listed_once(site: Site) -> None:
    assert len(site.worker_pids()) == 2
    # One start of the http-server, not one per worker (the node page would show the
    # members as restarts).
    starts = read_starts(site.node.home)
    assert (starts.get("http-server.worker"), starts.get("http-server.member")) == (1, 1), starts
    probe = site.node.process("wkprobe:pkg:pub.os")
    entries = [e.process_id for e in probe.registry().entries]
    assert entries.count("http-server:distro:sys") == 1 and entries.count("rpc:distro:sys") == 1


def test_a_binding_is_served_by_every_worker_from_its_acknowledgement_on(site: Site) -> None:
    primary, member = site.conn_to(True), site.conn_to(False)
    with primary, member:
        for i in range(15):
            body = f"version {i}".encode()
            bind_static(site.app, "/page", body)  # the same path, new content each time
            bind_static(site.app, f"/page{i}", body)  # and a new path
            for conn in (member, primary):
                assert get(conn, f"/{APP}/page") == (200, body)
                assert get(conn, f"/{APP}/page{i}") == (200, body)


def test_a_logout_on_one_worker_ends_the_session_on_the_other(site: Site) -> None:
    bind_static(site.app, "/private", b"secret", authenticated=True)
    primary, member = site.conn_to(True), site.conn_to(False)
    with primary, member:
        for first, other in ((primary, member), (member, primary)):
            login = b'{"password": "pw"}'
            first.sendall(b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(login), login))
            status, headers, _ = read_response(first)
            assert status == 200
            cookie = headers["set-cookie"].split(";", 1)[0]
            assert get(other, f"/{APP}/private", cookie) == (200, b"secret")
            first.sendall(f"POST /logout HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n"
                          "Content-Length: 0\r\n\r\n".encode())
            assert read_response(first)[0] == 200
            assert get(other, f"/{APP}/private", cookie)[0] == 401


def test_a_websocket_a_member_admits_lives_in_the_primary(site: Site) -> None:
    app = site.node.process(WSAPP)
    action = http_pb2.HttpServerAction()
    action.web_socket_bind.path = "/ws"
    action.web_socket_bind.authenticated = False
    reply = app.send_and_await_response("http-server:distro:sys", action.SerializeToString())
    assert http_pb2.HttpServerResult.FromString(reply.body).WhichOneof("result") == "ok"
    member = site.conn_to(False)
    with member:
        member.sendall(f"GET /{WSAPP}/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n".encode() + masked(b"hello"))
        status, headers, _ = read_response(member)
        assert status == 101 and headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        opened = http_pb2.HttpServerRequest.FromString(app.await_message(timeout=10).body)
        channel = opened.web_socket_open.channel_id
        pushed = app.await_message(timeout=10)
        assert pushed.blob is not None and pushed.blob.bytes == b"hello"
        push = http_pb2.HttpServerAction()
        push.web_socket_push.channel_id = channel
        push.web_socket_push.message_type = http_pb2.WsMessageType.Text
        reply = app.send_and_await_response("http-server:distro:sys", push.SerializeToString(), blob=b"back")
        assert http_pb2.HttpServerResult.FromString(reply.body).WhichOneof("result") == "ok"
        assert member.recv(64) == b"\x81\x04back"
        app.close()  # the owner goes: its sockets close with 1001
        data = member.recv(64)
        assert data[0] == 0x88 and int.from_bytes(data[2:4], "big") == 1001


def masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def scrape_on(conn: socket.socket, token: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    conn.sendall(f"GET /http-server:distro:sys/metrics HTTP/1.1\r\nHost: localhost\r\n"
                 f"Authorization: Bearer {token}\r\n\r\n".encode())
    status, _, body = read_response(conn)
    assert status == 200, body
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def test_the_figures_count_every_worker_whichever_answers_the_scrape(site: Site) -> None:
    """docs/metrics.md "Several workers": 5 requests through the primary and 7 through
    a member are 12 in the scrape, whether the primary or the member answers it (within
    the publish interval), and in the node page's view (porch status)."""
    bind_static(site.app, "/counted.txt", b"counted")
    path = f"/{APP}/counted.txt"
    token = RpcToken(site.node.home.state_dir, "metrics.token").get()  # made here if not yet
    primary, member = site.conn_to(True), site.conn_to(False)
    key = ("porch_http_requests_total", frozenset({("process", APP), ("bound_path", path),
                                                   ("method", "GET"), ("status", "2xx")}))
    try:
        before = scrape_on(primary, token).get(key, 0.0)
        for conn, times in ((primary, 5), (member, 7)):
            for _ in range(times):
                assert get(conn, path) == (200, b"counted")
        for conn in (primary, member):
            wait_for(lambda conn=conn: scrape_on(conn, token).get(key, 0.0) - before == 12, 10,
                     what="12 requests in the scrape")
        conn = primary
        conn.sendall(f"GET /http-server:distro:sys/processes HTTP/1.1\r\nHost: localhost\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        status, _, body = read_response(conn)
        assert status == 200, body
        row = next(p for p in json.loads(body)["processes"] if p["id"] == APP)
        assert row["requests"] >= 12
    finally:
        primary.close()
        member.close()


def test_a_restart_replaces_every_worker_and_no_request_fails(site: Site) -> None:
    bind_static(site.app, "/steady", b"steady")
    before = site.worker_pids()
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                r = session.get(f"http://127.0.0.1:{site.port}/{APP}/steady", timeout=10)
                if r.status_code != 200 or r.content != b"steady":
                    failures.append(f"{r.status_code} {r.text[:80]}")
                answered[0] += 1
            except requests.RequestException as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        served = site.node.log("http-server").count("serving http on")
        site.node.procs["http-server"].send_signal(signal.SIGHUP)
        site.wait_workers(2, before=served)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert failures == [] and answered[0] > 0
    after = site.worker_pids()
    assert len(after) == 2 and not after & before


def test_killed_workers_are_replaced_and_the_port_refuses_nothing(site: Site) -> None:
    bind_static(site.app, "/still", b"still here")
    for primary in (False, True):
        with site.conn_to(primary) as conn:
            pid = site.status(conn)["worker_pid"]
        served = site.node.log("http-server").count("serving http on")
        os.kill(pid, signal.SIGKILL)
        site.wait_workers(2 if primary else 1, before=served)
        refused = 0
        give_up = time.monotonic() + 20
        while time.monotonic() < give_up:
            try:
                r = requests.get(f"http://127.0.0.1:{site.port}/{APP}/still", timeout=10)
                assert r.content == b"still here"
                if len(site.worker_pids() - {pid}) == 2:
                    break
            except requests.ConnectionError:
                refused += 1
        assert refused == 0
        assert len(site.worker_pids()) == 2
