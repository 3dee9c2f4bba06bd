"""Restarts that clients do not notice (issue 10 items 4, 5 and 6), against real
processes: a kernel, the http-server (keeper and workers), apps, real HTTP and
WebSocket clients, and signals (SIGHUP restarts, kill -9, SIGSTOP).

Item 4: `porch restart http-server` (SIGHUP to the keeper) under keep-alive load loses
no request and answers no 503 while the app runs; a request held past the old fixed 5 s
drain is answered by the old worker while the new one serves everyone else.
Item 5: the keeper serves on a listening socket passed the way systemd passes one
(LISTEN_FDS/LISTEN_PID), so whoever holds it (systemd) keeps the port through a kill -9
of the keeper: no connection is refused.
Item 6: WebSocket frames never vanish on an open socket: an upgrade to a path whose
owner is not running is 503; a frame that cannot be delivered closes its socket (1012
while the kernel is away, 1011 when the owner cannot take it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from support.load import KeepAliveLoad
from support.node import PY, Node, children, free_port, porch_cli, service_env, wait_for

# How long a socket stays idle before the kernel is killed, for it to count as idle:
# the worker must hear from the kernel (a heartbeat answer, every 1 s) after the
# socket's last frame, or the socket is closed 1012 as one whose frame may have died
# inside the kernel. Two heartbeats and more: 1.0 s raced the heartbeat on a loaded
# machine.
QUIET_S = 2.5

APP = (Path(__file__).parent.parent / "support" / "http_app.py").read_text()
ECHO_WS = """
    import porch
    from porch.http.server import HttpServer, WsBindingConfig, send_ws_push
    from porch.wire import http_pb2
    proc = porch.Process()
    HttpServer(proc).bind_ws_path("/ws", WsBindingConfig(authenticated=False))
    print("READY", flush=True)
    while True:
        msg = proc.await_message()
        req = http_pb2.HttpServerRequest.FromString(msg.body)
        if req.WhichOneof("request") == "web_socket_push":
            blob = proc.get_blob()
            send_ws_push(proc, req.web_socket_push.channel_id, "Text", blob.bytes if blob else b"")
"""
APPS = ("web:web:sys", "other:web:sys", "echo:web:sys", "gone:web:sys", "lost:web:sys", "binder:web:sys")
CONFIG = 'node = "graceful.os"\n' + "".join(
    f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n' for pid in APPS)


class Site:
    def __init__(self) -> None:
        self.node = Node(CONFIG)
        self.port = free_port()
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port))
        for pid in ("web:web:sys", "other:web:sys"):
            self.node.spawn(pid, APP, BINDINGS=json.dumps([{"path": "/dyn"}]))
        self.node.spawn("echo:web:sys", ECHO_WS)
        wait_for(lambda: self.answers("/web:web:sys/dyn") and self.answers("/other:web:sys/dyn"),
                 30, 0.1, "the apps")
        self.node.wait_log("echo:web:sys", "READY")

    @property
    def keeper(self) -> subprocess.Popen[bytes]:
        return self.node.procs["http-server"]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answers(self, path: str) -> bool:
        try:
            return requests.get(self.url(path), timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def ws(self, path: str = "/echo:web:sys/ws") -> ClientConnection:
        return connect(f"ws://127.0.0.1:{self.port}{path}", open_timeout=10, legacy=True)

    def takeovers(self) -> int:
        return self.node.log("http-server").count("took over http-server:distro:sys")

    def restart(self) -> None:
        """`porch restart http-server` (SIGHUP to the keeper), until a new worker runs and
        has taken over (or, as before issue 10, the old one is gone)."""
        before, old = self.takeovers(), set(self.workers())
        self.keeper.send_signal(signal.SIGHUP)
        wait_for(lambda: set(self.workers()) - old and (self.takeovers() > before
                                                        or not old & set(self.workers())),
                 20, 0.05, "a new worker")

    def workers(self) -> list[int]:
        return children(self.keeper.pid)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    try:
        yield s
    finally:
        s.node.close()


# ---------------------------------------------------------------------------- item 4


def test_keep_alive_clients_lose_nothing_across_five_restarts(site: Site) -> None:
    """Issue 10 item 4: clients that reuse their connections as fast as they can (as
    wrk does; no retries) see no error and only 200 through five restarts: the old
    worker answers what it holds, ends each connection with `Connection: close` (or
    closes it idle), and the new one accepts only once registered with its bindings."""
    with KeepAliveLoad(site.port, ["/web:web:sys/dyn", "/other:web:sys/dyn"], threads=4) as load:
        time.sleep(0.5)
        for _ in range(5):
            site.restart()
            time.sleep(0.7)
        time.sleep(0.5)
    statuses, errors = load.snapshot()
    assert errors == {}, f"requests lost (reset, closed unanswered or hung): {errors}"
    assert set(statuses) == {"200"}, f"every answer 200 while the apps run: {statuses}"
    assert load.requests > 100
    assert load.closed_by_server > 0, "the old workers ended kept-alive connections with Connection: close"
    wait_for(lambda: len(site.workers()) == 1, 20, what="the old workers to finish")


def test_a_request_held_longer_than_5_s_is_answered_while_the_new_worker_serves(site: Site) -> None:
    """Issue 10 item 4: the old worker waits for each request up to its own deadline
    (here the default request_timeout_s, 15 s), not a fixed 5 s, and the new worker
    serves everyone else meanwhile."""
    result: dict[str, object] = {}

    def slow() -> None:
        started = time.monotonic()
        r = requests.get(site.url("/web:web:sys/dyn?do=sleep&s=8"), timeout=30)
        result["status"], result["body"], result["took"] = r.status_code, r.text, time.monotonic() - started

    asleep = site.node.log("web:web:sys").count("sleeping")
    thread = threading.Thread(target=slow)
    thread.start()
    wait_for(lambda: site.node.log("web:web:sys").count("sleeping") > asleep, 10, what="the request in the app")
    (old,) = site.workers()
    site.restart()
    served_meanwhile = 0
    while thread.is_alive():
        r = requests.get(site.url("/other:web:sys/dyn"), timeout=10)
        assert r.status_code == 200, r.text
        served_meanwhile += 1 if thread.is_alive() else 0
        time.sleep(0.1)
    thread.join()
    assert result["status"] == 200, result
    assert served_meanwhile > 0, "the new worker answered while the old one held the slow request"
    wait_for(lambda: old not in site.workers(), 10, what="the old worker to finish after answering")


# An app that, on SIGUSR1, binds paths as fast as it can (50 binds in flight) for 2 s,
# printing each one the http-server acknowledged; it answers every request 200.
BINDER = """
    import asyncio, signal, porch
    from porch.http.server import HttpBindingConfig, HttpResponse, bind_action, read_result

    async def main():
        proc = await porch.AsyncProcess.connect()
        reply = HttpResponse(200).to_proto()
        proc.on_request(lambda msg: proc.respond(msg, reply, blob=b"bound") if msg.expects_response else None)
        go = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, go.set)
        print("READY", flush=True)
        await go.wait()
        n, window, end = 0, asyncio.Semaphore(50), asyncio.get_running_loop().time() + 2.0

        async def bind(path):
            async with window:
                try:
                    msg = await proc.request("http-server:distro:sys",
                                             bind_action(path, HttpBindingConfig(authenticated=False))
                                             .SerializeToString(), timeout=20)
                    read_result(msg.body)
                    print("ACK", path, flush=True)
                except Exception as exc:
                    print("FAILED", path, exc, flush=True)

        tasks = []
        while asyncio.get_running_loop().time() < end:
            await window.acquire()
            window.release()
            n += 1
            tasks.append(asyncio.ensure_future(bind(f"/b{n}")))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        print("DONE", n, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
"""


def test_every_binding_acknowledged_during_a_restart_is_served_after_it(site: Site) -> None:
    """Issue 10 item 4: binding actions keep coming while the new worker takes over; the
    new worker loads the bindings only once the old one has journaled every action the
    kernel sent it (it hands them over when told it was superseded): none is lost."""
    binder = site.node.spawn("binder:web:sys", BINDER)
    site.node.wait_log("binder:web:sys", "READY")
    binder.send_signal(signal.SIGUSR1)
    site.node.wait_log("binder:web:sys", "ACK /b1")
    site.restart()
    site.node.wait_log("binder:web:sys", "DONE", 30)
    log = site.node.log("binder:web:sys")
    acked = [line.split()[1] for line in log.splitlines() if line.startswith("ACK ")]
    assert "FAILED" not in log, log[-2000:]
    assert len(acked) > 100
    missing = [p for p in acked if requests.get(site.url(f"/binder:web:sys{p}"), timeout=10).status_code != 200]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged bindings not served: {missing[:5]}"
    site.node.kill("binder:web:sys")


# ---------------------------------------------------------------------------- item 6


def closed_with(ws: ClientConnection, timeout: float = 10) -> int | None:
    """Wait for the server to close the socket (no frame may arrive meanwhile); its code."""
    with pytest.raises(ConnectionClosed):
        got = ws.recv(timeout=timeout)
        raise AssertionError(f"a frame arrived instead of a close: {got!r}")
    return ws.close_code


def kernel_back(site: Site, apps: bool = True) -> None:
    """Start the kernel again and wait until the http-server (and the apps) are back."""
    before = site.node.log("http-server").count("http-server:distro:sys: re-registered")
    site.node.start("kernel")
    wait_for(lambda: site.node.log("http-server").count("http-server:distro:sys: re-registered") > before,
             20, 0.02, "the http-server to re-register")
    if apps:
        wait_for(lambda: site.answers("/web:web:sys/dyn"), 20, 0.1, "the apps through the new kernel")


@pytest.fixture
def kernel_running(site: Site) -> Iterator[None]:
    """Each test that stops or kills the kernel leaves it running (even when it fails)."""
    yield
    kernel = site.node.procs["kernel"]
    if kernel.poll() is None:
        kernel.send_signal(signal.SIGCONT)
    else:
        kernel_back(site)


def echoes(ws: ClientConnection, text: str) -> None:
    ws.send(text)
    assert ws.recv(timeout=5) == text


def test_upgrade_to_an_owner_that_is_not_running_is_503(site: Site) -> None:
    """Issue 10 item 6: as HTTP to a path whose app is not running, an upgrade is
    refused 503 at once, not accepted (101) and closed later."""
    site.node.spawn("gone:web:sys", ECHO_WS)
    site.node.wait_log("gone:web:sys", "READY")
    with site.ws("/gone:web:sys/ws") as ws:
        echoes(ws, "here")
        site.node.kill("gone:web:sys")
        assert closed_with(ws) == 1001
    with pytest.raises(InvalidStatus) as refused:
        site.ws("/gone:web:sys/ws")
    assert refused.value.response.status_code == 503
    assert b"gone:web:sys is not running" in refused.value.response.body
    site.node.spawn("gone:web:sys", ECHO_WS)
    site.node.wait_log("gone:web:sys", "READY")
    with site.ws("/gone:web:sys/ws") as ws:
        echoes(ws, "back")


def test_upgrade_while_the_kernel_is_stopped_is_503_not_a_hang(site: Site, kernel_running: None) -> None:
    """Issue 10 item 6: the owner cannot be asked (the kernel is SIGSTOPped): 503."""
    kernel = site.node.procs["kernel"]
    kernel.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(InvalidStatus) as refused:
            site.ws()
        took = time.monotonic() - started
    finally:
        kernel.send_signal(signal.SIGCONT)
    assert refused.value.response.status_code == 503
    assert b"kernel did not answer" in refused.value.response.body
    assert took < 8, "answered within the bound, not left hanging"
    with site.ws() as ws:
        echoes(ws, "kernel running again")


def test_a_frame_sent_while_the_kernel_is_away_closes_the_socket_1012(site: Site, kernel_running: None) -> None:
    """Issue 10 item 6: the frame cannot go: the socket is closed 1012 (service restart),
    not left open with the frame dropped. An idle socket outlives the kernel restart."""
    idle = site.ws()
    busy = site.ws()
    echoes(idle, "idle")
    echoes(busy, "busy")
    time.sleep(QUIET_S)  # both idle now: the kernel holds none of their frames
    site.node.kill("kernel")
    site.node.wait_log("http-server", "http-server:distro:sys: lost the connection to the kernel")
    busy.send("into the void?")
    assert closed_with(busy) == 1012
    kernel_back(site)
    echoes(idle, "still open")
    idle.close()


def test_a_frame_caught_in_a_stopped_kernel_that_dies_closes_its_socket(
        site: Site, kernel_running: None) -> None:
    """Issue 10 item 6: a frame the kernel took (SIGSTOPped, then kill -9) is lost with
    it; its socket is closed 1012 instead of staying open as if it had gone through.
    A socket that sent nothing since stays open."""
    idle = site.ws()
    caught = site.ws()
    echoes(idle, "idle")
    echoes(caught, "before")
    time.sleep(QUIET_S)
    kernel = site.node.procs["kernel"]
    kernel.send_signal(signal.SIGSTOP)
    try:
        caught.send("caught in the kernel")
        time.sleep(0.5)
    finally:
        site.node.kill("kernel")  # SIGKILL ends a stopped process too
    assert closed_with(caught) == 1012
    kernel_back(site)
    echoes(idle, "still open")
    idle.close()


def test_frames_to_an_owner_that_did_not_come_back_close_with_1011(site: Site, kernel_running: None) -> None:
    """Issue 10 item 6: the kernel and the owner died; the kernel is back, the owner is
    not (its watch answers only after the kernel's 5 s start-up grace). A frame for it
    cannot be delivered: the kernel says so and the socket is closed 1011 at once."""
    site.node.spawn("lost:web:sys", ECHO_WS)
    site.node.wait_log("lost:web:sys", "READY")
    ws = site.ws("/lost:web:sys/ws")
    echoes(ws, "here")
    time.sleep(QUIET_S)
    site.node.kill("kernel")  # first: a live kernel would see the owner die and say so (1001)
    site.node.kill("lost:web:sys")
    kernel_back(site, apps=False)  # well within the new kernel's 5 s grace
    ws.send("anyone?")
    assert closed_with(ws) == 1011


# ---------------------------------------------------------------------------- item 5

# Starts a program the way systemd starts a socket-activated service: the listening
# socket as fd 3, LISTEN_FDS=1 and LISTEN_PID = the program's own pid (exec keeps it).
AS_SYSTEMD = ("import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); "
              "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
              "os.execv(sys.argv[2], sys.argv[2:])")


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def as_systemd(sock: socket.socket, home: Path, log: Path, *argv: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([PY, "-c", AS_SYSTEMD, str(sock.fileno()), PY, *argv],
                                pass_fds=(sock.fileno(),), stdout=out, stderr=subprocess.STDOUT,
                                env=service_env(home))


class Prober:
    """A fresh TCP connection and GET at a time, as new visitors: every refusal counted."""

    def __init__(self, port: int, path: str) -> None:
        self.url = f"http://127.0.0.1:{port}{path}"
        self.outcomes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(20)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                key = str(requests.get(self.url, timeout=10, headers={"Connection": "close"}).status_code)
            except requests.ConnectionError as exc:
                key = "refused" if "refused" in str(exc).lower() else type(exc).__name__
            except requests.RequestException as exc:
                key = type(exc).__name__
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
            time.sleep(0.002)


def test_the_keeper_serves_on_a_socket_systemd_passes_and_its_crash_refuses_nothing() -> None:
    """Issue 10 item 5: `porch http-server` run by systemd with socket activation serves
    on the passed socket; kill -9 of the keeper refuses no connection (systemd holds the
    socket and starts the keeper again; the backlog holds the visitors meanwhile)."""
    node = Node(CONFIG)
    sock = listening_socket()
    port = sock.getsockname()[1]
    try:
        node.start("kernel")
        node.spawn("web:web:sys", APP, BINDINGS=json.dumps([{"path": "/dyn"}]))
        log = node.log_path("http-server")
        node.procs["http-server"] = as_systemd(sock, node.home.root, log, "-m", "porch.http_server",
                                               "--home", str(node.home.root))
        wait_for(lambda: _answers(port), 30, 0.1, "the app on the passed socket")
        assert (node.home.state_dir / "port").read_text().strip() == str(port)
        with Prober(port, "/web:web:sys/dyn") as probe:
            for _ in range(2):
                time.sleep(0.5)
                node.procs["http-server"].kill()  # kill -9 of the keeper
                node.procs["http-server"].wait(10)
                time.sleep(0.1)  # systemd's RestartSec default
                node.procs["http-server"] = as_systemd(sock, node.home.root, log, "-m", "porch.http_server",
                                                       "--home", str(node.home.root))
                wait_for(lambda: _answers(port), 30, 0.1, "the restarted keeper's worker")
            time.sleep(0.5)
        assert probe.outcomes.get("200", 0) > 0
        assert set(probe.outcomes) == {"200"}, f"nothing refused, nothing failed: {probe.outcomes}"
    finally:
        node.close()
        sock.close()


def test_porch_up_socket_activated_keeps_the_port_through_a_keeper_crash() -> None:
    """Issue 10 item 5: `porch up` (the unit's main process, in the foreground) is given
    the socket by systemd and holds it for the keeper, which supervisord starts and
    which cannot inherit it through supervisord: kill -9 of the keeper refuses nothing."""
    node = Node()  # a home only: `porch up` runs the node
    scripts = node.dir / "apps"
    scripts.mkdir()
    (scripts / "app.py").write_text(APP)
    bindings = json.dumps(json.dumps([{"path": "/dyn"}]))
    node.home.config_path.write_text(
        'node = "activated.os"\n'
        f'[[process]]\nid = "web:web:sys"\ncommand = "{PY} {scripts / "app.py"}"\n'
        f'capabilities = ["http-server:distro:sys"]\nenvironment = {{ BINDINGS = {bindings} }}\n')
    sock = listening_socket()
    port = sock.getsockname()[1]
    up = as_systemd(sock, node.home.root, node.dir / "up.log", "-m", "porch.cli", "up",
                    "--home", str(node.home.root))
    sock.close()  # `porch up` holds it now, as systemd would
    try:
        wait_for(lambda: _answers(port), 60, 0.2, "the node on the passed socket")
        wait_for(lambda: f"porch: Login at http://localhost:{port}" in (node.dir / "up.log").read_text(),
                 30, what="porch up to say where to log in")
        from porch.cli.supervise import Supervisor

        rpc = Supervisor(node.home).rpc
        with Prober(port, "/web:web:sys/dyn") as probe:
            for _ in range(2):
                time.sleep(0.5)
                keeper = int(rpc.getProcessInfo("http-server")["pid"])
                os.kill(keeper, signal.SIGKILL)
                wait_for(lambda k=keeper: int(rpc.getProcessInfo("http-server")["pid"]) not in (0, k),  # type: ignore[misc]
                         20, what="supervisord to start the keeper again")
                wait_for(lambda: _answers(port), 30, 0.1, "the new keeper's worker")
            time.sleep(0.5)
        assert probe.outcomes.get("200", 0) > 0
        assert set(probe.outcomes) == {"200"}, f"nothing refused, nothing failed: {probe.outcomes}"
    finally:
        porch_cli("down", home=node.home.root)
        try:
            up.wait(30)
        finally:
            if up.poll() is None:
                up.kill()
            node.close()
    assert not (node.home.run_dir / "http-listen.sock").exists()


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/web:web:sys/dyn", timeout=3).status_code == 200
    except requests.RequestException:
        return False
