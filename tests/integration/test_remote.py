"""Processes on other machines: the kernel over TCP with CurveZMQ (issue 15).

A real kernel listening on loopback TCP with real CURVE key pairs, the real http-server
and http-client, remote processes linking the same stub (in this process, or as
subprocesses that know only $PORCH_KERNEL and $PORCH_KEYS), and real HTTP and
WebSocket clients. One test moves the remote process into its own network namespace
(root only) so that its link is a real second host's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import zmq
from websockets.sync.client import connect

import porch
from porch.http.client import send_request_await_response
from porch.wire import PROTOCOL_VERSION, http_pb2, kernel_pb2
from support.http_test_server import TestServer
from support.node import SupervisedNode, free_port, wait_for
from support.remote import HEARTBEAT_IVL_S, HEARTBEAT_TIMEOUT_S, NetNs, RemoteNode, netns_usable

APP_SOURCE = (Path(__file__).parent.parent / "support" / "http_app.py").read_text()
PASSWORD = "remote pass"
REMOTE_IDS = ["worker:remote:pub.os", "web:remote:pub.os", "ws:remote:pub.os", "fetch:remote:pub.os",
              "dies:remote:pub.os", "again:remote:pub.os", "other:remote:pub.os", "slow:remote:pub.os",
              "crowd:remote:pub.os", "stamp:remote:pub.os", "direct:remote:pub.os"]
REMOTE_QUEUE = 32
REMOTE_CONNECTIONS = 24
# Generous "does not hang" bounds: the machine may be loaded.
SLACK_S = 8.0


@pytest.fixture(scope="module", autouse=True)
def heartbeats() -> Iterator[None]:
    """Stubs made in this process use the node's short heartbeat too."""
    saved = os.environ.get("PORCH_HEARTBEAT_IVL_S")
    os.environ["PORCH_HEARTBEAT_IVL_S"] = HEARTBEAT_IVL_S
    yield
    if saved is None:
        del os.environ["PORCH_HEARTBEAT_IVL_S"]
    else:
        os.environ["PORCH_HEARTBEAT_IVL_S"] = saved


def start_node(node: RemoteNode) -> int:
    """Kernel, http-server and http-client; the HTTP port."""
    env = {"PORCH_HEARTBEAT_IVL_S": HEARTBEAT_IVL_S}
    port = free_port()
    node.start("kernel", env=env)
    node.start("http-server", "--port", str(port), env={**env, "PORCH_PASSWORD": PASSWORD})
    node.start("http-client", env=env)
    return port


class Site:
    def __init__(self) -> None:
        self.node = RemoteNode(REMOTE_IDS, extra=f"remote_queue = {REMOTE_QUEUE}\n"
                               f"remote_connections = {REMOTE_CONNECTIONS}\n")
        self.port = start_node(self.node)

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.get(f"http://127.0.0.1:{self.port}{path}", **kw)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    try:
        yield s
    finally:
        s.node.close()


def serve_echo(proc: porch.Process, count: int) -> threading.Thread:
    """Answer `count` requests with b"echo " + body (and the blob, doubled) in a thread."""

    def run() -> None:
        for _ in range(count):
            msg = proc.await_message(timeout=30)
            blob = msg.blob.bytes * 2 if msg.blob else None
            proc.respond(msg, b"echo " + msg.body, blob=blob)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def raw_dealer(site: Site, ctx: zmq.Context[Any], pid: str, **opts: int) -> zmq.Socket[bytes]:
    """A bare libzmq DEALER with pid's keys, registered as pid by hand."""
    pair = site.node.pairs[pid]
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for opt, value in opts.items():
        sock.setsockopt(getattr(zmq, opt), value)
    sock.curve_serverkey = site.node.server_public.encode()
    sock.curve_publickey, sock.curve_secretkey = pair.public.encode(), pair.secret.encode()
    sock.connect(site.node.endpoint)
    env = kernel_pb2.Envelope(version=PROTOCOL_VERSION, source=pid, target="kernel:distro:sys")
    env.control.register.process_id = pid
    sock.send(env.SerializeToString())
    assert sock.poll(10_000), "no answer to Register"
    assert kernel_pb2.Envelope.FromString(sock.recv()).control.WhichOneof("kind") == "registered"
    return sock


def act(proc: porch.Process, action: http_pb2.HttpServerAction, blob: bytes | None = None) -> str:
    reply = proc.send_and_await_response("http-server:distro:sys", action.SerializeToString(),
                                         blob=blob, timeout=10)
    return http_pb2.HttpServerResult.FromString(reply.body).WhichOneof("result") or ""


# ---------------------------------------------------------------------------- the link


def test_remote_process_registers_and_exchanges_messages(site: Site) -> None:
    """issue 15 "register": a process linked over TCP + CURVE registers its key's id;
    messages, large blobs (inline: no descriptors cross machines) and the registry
    work as for a local one."""
    remote = site.node.remote("worker:remote:pub.os")
    local = site.node.process("local:test:sys")
    t = serve_echo(remote, 2)
    assert local.send_and_await_response("worker:remote:pub.os", b"hi", timeout=10).body == b"echo hi"
    big = os.urandom(1_500_000)  # over the 1 MiB at which the local link passes a memfd
    reply = local.send_and_await_response("worker:remote:pub.os", b"big", blob=big, timeout=20)
    assert reply.blob is not None and reply.blob.bytes == big * 2
    t.join(10)
    # ... and the other way: the remote asks a local process, with a large blob.
    t = serve_echo(local, 1)
    reply = remote.send_and_await_response("local:test:sys", b"up", blob=big, timeout=20)
    assert reply.body == b"echo up" and reply.blob is not None and reply.blob.bytes == big * 2
    t.join(10)
    entries = {e.process_id: e for e in local.registry().entries}
    e = entries["worker:remote:pub.os"]
    assert e.address == "127.0.0.1" and 0 < e.connected_at <= e.last_heartbeat
    assert entries["local:test:sys"].address == ""  # a local process has none


def test_async_stub_over_tcp(site: Site) -> None:
    """issue 15: the same porch.AsyncProcess API from another machine."""
    local = site.node.process("async-peer:test:sys")
    t = serve_echo(local, 1)

    async def main() -> bytes:
        proc = await porch.AsyncProcess.connect("other:remote:pub.os", endpoint=site.node.endpoint,
                                                keys=site.node.key_file("other:remote:pub.os"),
                                                connect_timeout=10)
        try:
            return (await proc.request("async-peer:test:sys", b"async", timeout=10)).body
        finally:
            proc.close()

    assert asyncio.run(main()) == b"echo async"
    t.join(10)


# ---------------------------------------------------------------------------- HTTP


def test_http_through_a_remote_app(site: Site) -> None:
    """issue 15: porch.http.server works unchanged from a remote process (a subprocess
    that knows only $PORCH_KERNEL and $PORCH_KEYS)."""
    site.node.spawn_remote("web:remote:pub.os", APP_SOURCE, BINDINGS=json.dumps([{"path": "/api"}]))
    site.node.wait_log("web:remote:pub.os", "READY")
    r = site.get("/web:remote:pub.os/api?x=1", headers={"X-Test": "yes"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["me"] == "web:remote:pub.os" and got["bound_path"] == "/web:remote:pub.os/api"
    r = requests.post(f"http://127.0.0.1:{site.port}/web:remote:pub.os/api", data=b"z" * 2_000_000,
                      timeout=30)
    assert r.status_code in (200, 413), r.status_code  # the body limit is the http-server's


def test_http_client_from_a_remote_app(site: Site) -> None:
    """issue 15: porch.http.client works unchanged from a remote process, large bodies
    included (the http-client's memfd is read by the kernel and sent as a frame)."""
    server = TestServer().start()
    try:
        remote = site.node.remote("fetch:remote:pub.os")
        resp = send_request_await_response(remote, "GET", server.url("/hello"), timeout=10)
        assert resp.status == 200 and resp.body == b"hello"
        resp = send_request_await_response(remote, "GET", server.url("/bytes/3000000"), timeout=30)
        assert resp.status == 200 and len(resp.body) == 3_000_000
        assert resp.body[:5] == bytes(range(5)) and resp.body[251] == 0
    finally:
        server.stop()


def test_websocket_owned_by_a_remote_app(site: Site) -> None:
    """issue 15: a WebSocket bound, opened, pushed both ways and closed by a remote app."""
    app = site.node.remote("ws:remote:pub.os")
    a = http_pb2.HttpServerAction()
    a.web_socket_bind.path, a.web_socket_bind.authenticated = "/ws", False
    assert act(app, a) == "ok"
    with connect(f"ws://127.0.0.1:{site.port}/ws:remote:pub.os/ws", open_timeout=10) as client:
        msg = app.await_message(timeout=10)
        req = http_pb2.HttpServerRequest.FromString(msg.body)
        assert req.WhichOneof("request") == "web_socket_open"
        channel = req.web_socket_open.channel_id
        client.send("from the browser")
        msg = app.await_message(timeout=10)
        req = http_pb2.HttpServerRequest.FromString(msg.body)
        assert req.WhichOneof("request") == "web_socket_push"
        assert msg.blob is not None and msg.blob.bytes == b"from the browser"
        push = http_pb2.HttpServerAction()
        push.web_socket_push.channel_id = channel
        push.web_socket_push.message_type = http_pb2.WsMessageType.Value("Text")  # type: ignore[assignment]
        assert act(app, push, b"from the remote app") == "ok"
        assert client.recv(timeout=10) == "from the remote app"


def test_direct_bindings_of_a_remote_app_are_made_plain(site: Site) -> None:
    """A process on another machine cannot be handed a socket or a link: its bindings
    asked `direct` are made as plain ones (docs/websockets.md, docs/direct.md), and
    its HTTP and WebSocket traffic goes through the kernel as always."""
    from porch.http.server import HttpBindingConfig, HttpResponse, HttpServer, WsBindingConfig

    app = site.node.remote("direct:remote:pub.os")
    assert not app.accept_direct()
    server = HttpServer(app)
    server.bind_http_path("/api", HttpBindingConfig(authenticated=False, direct=True))
    server.bind_ws_path("/ws", WsBindingConfig(authenticated=False, direct=True))
    got: list[str] = []

    def serve(count: int) -> None:
        for _ in range(count):
            server.handle_request(app.await_message(timeout=10),
                                  lambda req: HttpResponse(200).body(b"plain"),
                                  lambda ch, kind, blob: got.append(kind),
                                  on_open=lambda path, ch: got.append("open"))

    result: list[requests.Response] = []
    asker = threading.Thread(target=lambda: result.append(site.get("/direct:remote:pub.os/api")))
    asker.start()
    serve(1)
    asker.join(30)
    assert result and result[0].status_code == 200 and result[0].content == b"plain"
    with connect(f"ws://127.0.0.1:{site.port}/direct:remote:pub.os/ws", open_timeout=10) as client:
        serve(1)
        client.send("through the kernel")
        serve(1)
    assert got == ["open", "Text"]


# ---------------------------------------------------------------------------- refusals


def test_undeclared_key_is_refused(site: Site) -> None:
    """issue 15 limits: a key porch.toml does not declare fails the CURVE handshake
    (ZAP), is refused at once (not after the connect timeout), and is logged."""
    started = time.monotonic()
    with pytest.raises(porch.KernelRefused) as info:
        site.node.remote("worker:remote:pub.os", key_file=site.node.stranger_keys("worker:remote:pub.os"),
                         connect_timeout=20)
    assert info.value.code == "KeyRefused"
    assert time.monotonic() - started < 15
    site.node.wait_log("kernel", "refused a handshake from 127.0.0.1: unknown key")


def test_a_key_registers_only_its_own_id(site: Site) -> None:
    """issue 15 limits: a key registering an id it was not granted is refused
    (NotGranted), and a reserved id never from another machine, token or not."""
    with pytest.raises(porch.KernelRefused) as info:
        site.node.remote("victim:test:sys", key_file=site.node.key_file("again:remote:pub.os"))
    assert info.value.code == "NotGranted"
    os.environ["PORCH_SERVICE_TOKEN"] = site.node.home.service_token.read_text().strip()
    try:
        with pytest.raises(porch.KernelRefused) as info:
            site.node.remote("http-server:distro:sys", key_file=site.node.key_file("again:remote:pub.os"))
    finally:
        del os.environ["PORCH_SERVICE_TOKEN"]
    assert info.value.code == "ReservedProcessId"
    # The refused connections did not take anything: the real holders are unaffected.
    assert "http-server:distro:sys" in site.node.registered()
    site.node.wait_log("kernel", "refused registration of victim:test:sys from another machine")


def test_a_remote_cannot_speak_as_another(site: Site) -> None:
    """issue 15: the router's rules hold for remote peers: a message is stamped with the
    id its connection's key registered, whatever the envelope claims."""
    local = site.node.process("stamp:test:sys")
    ctx = zmq.Context()
    try:
        sock = raw_dealer(site, ctx, "stamp:remote:pub.os")
        env = kernel_pb2.Envelope(version=PROTOCOL_VERSION, id=7, source="http-server:distro:sys",
                                  target="stamp:test:sys")
        env.request.body = b"who"
        sock.send(env.SerializeToString())
        msg = local.await_message(timeout=10)
        assert msg.source == "stamp:remote:pub.os" and msg.body == b"who"
        sock.close(0)
    finally:
        ctx.term()


# ---------------------------------------------------------------------------- liveness


def test_kill_9_of_a_remote_app_fails_in_flight_requests_502(site: Site) -> None:
    """issue 15 "kill -9 of the remote process -> in-flight 502 within the heartbeat
    timeout": the request it held gets 502 (it reached the app, which went away)."""
    proc = site.node.spawn_remote("dies:remote:pub.os", APP_SOURCE, BINDINGS=json.dumps([{"path": "/x"}]))
    site.node.wait_log("dies:remote:pub.os", "READY")
    got: dict[str, Any] = {}

    def call() -> None:
        got["r"] = site.get("/dies:remote:pub.os/x?do=sleep&s=60")
        got["at"] = time.monotonic()

    t = threading.Thread(target=call)
    t.start()
    site.node.wait_log("dies:remote:pub.os", "sleeping")
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    t.join(HEARTBEAT_TIMEOUT_S + SLACK_S)
    assert "r" in got, "the request hung after its remote app was killed"
    assert got["r"].status_code == 502, got["r"].text
    assert got["at"] - killed < HEARTBEAT_TIMEOUT_S + SLACK_S
    wait_for(lambda: "dies:remote:pub.os" not in site.node.registered(), 10,
             what="the registration to end")


def test_slow_remote_reader_is_bounded(site: Site) -> None:
    """issue 15 limits: a remote process that stops reading gets at most remote_queue
    messages queued; more fail Offline at once, and nothing else is disturbed."""
    ctx = zmq.Context()
    sock = raw_dealer(site, ctx, "slow:remote:pub.os", RCVHWM=1, RCVBUF=65536)
    try:
        sender = site.node.process("flooder:test:sys")
        blob = b"q" * 131072
        offline = 0
        for i in range(600):
            sender.send_request("slow:remote:pub.os", b"%d" % i, blob=blob, expects_response=60)
            if i % 50 == 49:
                try:
                    while True:
                        sender.await_message(timeout=0.05)
                except porch.Offline as exc:
                    assert "Resource temporarily unavailable" in exc.detail, exc.detail
                    offline += 1
                except porch.Timeout:
                    pass
            if offline:
                break
        assert offline, "600 messages of 128 KiB were all queued to a process that reads nothing"
        # Others are not disturbed: a local exchange and a remote one still work.
        remote = site.node.remote("crowd:remote:pub.os")
        t = serve_echo(remote, 1)
        assert sender.send_and_await_response("crowd:remote:pub.os", b"x", timeout=10).body == b"echo x"
        t.join(10)
        remote.close()
    finally:
        sock.close(0)
        ctx.term()
    site.node.wait_log("kernel", "could not be delivered")


def test_a_flood_of_connections_is_bounded(site: Site) -> None:
    """issue 15 limits: raw TCP connections that never finish a handshake and
    handshakes with unknown keys are closed (at most remote_connections open at
    once) and logged; local and remote processes keep working meanwhile."""
    node = site.node
    local = node.process("calm:test:sys")
    remote = node.remote("crowd:remote:pub.os")
    before = node.kernel_fds()
    raw = []
    ctx = zmq.Context()
    strangers = []
    try:
        for _ in range(200):
            raw.append(socket.create_connection(("127.0.0.1", node.tcp_port), timeout=5))
        for _ in range(40):
            pair = zmq.curve_keypair()
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.curve_serverkey = node.server_public.encode()
            s.curve_publickey, s.curve_secretkey = pair
            s.connect(node.endpoint)
            strangers.append(s)
        t = serve_echo(remote, 3)
        for i in range(3):
            body = b"during the flood %d" % i
            reply = local.send_and_await_response("crowd:remote:pub.os", body, timeout=10)
            assert reply.body == b"echo " + body
        t.join(10)
        # Well before the handshake timeout (10 s) would close them anyway.
        wait_for(lambda: node.kernel_fds() <= before + REMOTE_CONNECTIONS + 8, 5,
                 what="the kernel to close the connections over remote_connections")
        node.wait_log("kernel", f"more than {REMOTE_CONNECTIONS} connections open")
        node.wait_log("kernel", "refused a handshake")
    finally:
        for sock in raw:
            sock.close()
        for s in strangers:
            s.close(0)
        ctx.term()
    # When the flood stops, new connections are welcome again.
    wait_for(lambda: node.kernel_fds() <= before + 4, 20, what="the flood's connections to close")
    fresh = node.remote("other:remote:pub.os")
    fresh.close()


def test_kernel_restart_remote_process_re_registers(site: Site) -> None:
    """issue 15 "kernel restart -> the remote process re-registers", and serves again."""
    site.node.spawn_remote("again:remote:pub.os", APP_SOURCE, BINDINGS=json.dumps([{"path": "/r"}]))
    site.node.wait_log("again:remote:pub.os", "READY")
    assert site.get("/again:remote:pub.os/r").status_code == 200
    site.node.kill("kernel")
    site.node.start("kernel", env={"PORCH_HEARTBEAT_IVL_S": HEARTBEAT_IVL_S})
    site.node.wait_registered("again:remote:pub.os", "http-server:distro:sys", timeout=30)
    wait_for(lambda: site.get("/again:remote:pub.os/r").status_code == 200, 30,
             what="HTTP through the re-registered remote app")


# ---------------------------------------------------------------------------- operated


def test_keys_new_up_status_and_revoke_without_restart() -> None:
    """issue 15: `porch keys new` prints the porch.toml entry, `porch up` applies it,
    `porch status` lists the remote process (connected since, address, last
    heartbeat), `porch keys revoke` ends it on the running kernel (no restart): its
    registration is dropped and it is refused from then on."""
    tcp = free_port()
    node = SupervisedNode(f'node = "ops.os"\n[kernel]\nlisten = "tcp://127.0.0.1:{tcp}"\n',
                          "--password", PASSWORD, "--port", str(free_port()))
    try:
        assert node.up.returncode == 0, node.up.stderr
        new = node.cli("keys", "new", "ops:remote:pub.os", "--kernel", f"tcp://127.0.0.1:{tcp}")
        assert new.returncode == 0, new.stderr
        entry = new.stdout[new.stdout.index("[[process]]"):].split("\n\n")[0]
        assert re.search(r'key = "[^"]{40}"', entry)
        node.home.config_path.write_text(node.home.config_path.read_text() + "\n" + entry + "\n")
        up = node.cli("up")
        assert up.returncode == 0 and "restarted kernel" in up.stdout, (up.stdout, up.stderr)
        key_file = node.home.state_dir / "keys" / "ops_remote_pub.os.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        # The key file names the process and the kernel: nothing else is needed.
        remote = porch.Process(keys=key_file, connect_timeout=20)
        try:
            assert remote.our == "ops:remote:pub.os"
            status = node.cli("status")
            assert status.returncode == 0, status.stderr
            line = next(x for x in status.stdout.splitlines() if "ops:remote:pub.os" in x)
            assert "from 127.0.0.1" in line and "connected since" in line and "last heartbeat" in line
            listed = node.cli("keys", "list")
            assert re.search(r"ops:remote:pub\.os\s+\S+\s+granted", listed.stdout), listed.stdout
            revoke = node.cli("keys", "revoke", "ops:remote:pub.os")
            assert revoke.returncode == 0, revoke.stderr
            with pytest.raises(porch.KernelRefused):
                # Its next call fails (Offline while the registration ends) and then the
                # refusal is raised: the key is not accepted again.
                give_up = time.monotonic() + 15
                while time.monotonic() < give_up:
                    try:
                        remote.await_message(timeout=0.5)
                    except (porch.Timeout, porch.Offline):
                        pass
            assert "revoked" in node.cli("keys", "list").stdout
            with pytest.raises(porch.KernelRefused):
                porch.Process(keys=key_file, connect_timeout=20).close()
        finally:
            remote.close()
    finally:
        node.close()


# ---------------------------------------------------------------------------- a second host


def test_remote_process_in_its_own_network_namespace() -> None:
    """issue 15: the remote process in its own network namespace, joined by a veth
    pair (private addresses that exist only in this test): a real second host's link.
    HTTP goes through it; then the link is cut without a FIN or a reset (only libzmq's
    heartbeats can tell) and the request it held gets 502 within the heartbeat timeout."""
    why = netns_usable()
    if why:
        pytest.skip(f"network namespace test skipped: {why}")
    ns = NetNs()
    node = None
    try:
        node = RemoteNode(["far:remote:pub.os"], host=ns.host_ip)
        port = start_node(node)
        node.spawn_remote("far:remote:pub.os", APP_SOURCE, netns=ns.name,
                          BINDINGS=json.dumps([{"path": "/far"}]))
        node.wait_log("far:remote:pub.os", "READY", timeout=30)
        r = requests.get(f"http://127.0.0.1:{port}/far:remote:pub.os/far", timeout=30)
        assert r.status_code == 200 and r.json()["me"] == "far:remote:pub.os"
        probe = node.process("probe-far:test:sys")
        entry = next(e for e in probe.registry().entries if e.process_id == "far:remote:pub.os")
        assert entry.address == ns.ns_ip
        got: dict[str, Any] = {}

        def call() -> None:
            got["r"] = requests.get(f"http://127.0.0.1:{port}/far:remote:pub.os/far?do=sleep&s=120",
                                    timeout=60)
            got["at"] = time.monotonic()

        t = threading.Thread(target=call)
        t.start()
        node.wait_log("far:remote:pub.os", "sleeping")
        cut = time.monotonic()
        ns.cut()
        t.join(HEARTBEAT_TIMEOUT_S + SLACK_S + 5)
        assert "r" in got, "the request hung after the link was cut"
        assert got["r"].status_code == 502, got["r"].text
        assert got["at"] - cut < HEARTBEAT_TIMEOUT_S + SLACK_S
    finally:
        if node is not None:
            node.close()
        ns.close()
