"""The HTTP side of a supervised node: port choice, restarts, crashes of the server."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from support.load import Load
from support.node import PY, SupervisedNode, alive, children, free_port, wait_for

APP = (Path(__file__).parent.parent / "support" / "http_app.py").read_text()
BINDINGS = [{"path": "/dyn"}, {"path": "/page", "static": "static page", "mime": "text/html"}]


def config(scripts: Path, port_line: str = "") -> str:
    (scripts / "app.py").write_text(APP)
    return (
        'node = "sup.os"\n'
        f"[http_server]\n{port_line}\n"
        + "".join(
            f'[[process]]\nid = "{pid}"\ncommand = "{PY} {scripts / "app.py"}"\n'
            'capabilities = ["http-server:distro:sys"]\n'
            f"environment = {{ BINDINGS = {json.dumps(json.dumps(BINDINGS))} }}\n"
            for pid in ("web:web:sys", "other:web:sys")
        )
    )


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SupervisedNode, int]]:
    port = free_port()
    n = SupervisedNode(config(tmp_path_factory.mktemp("s")), "--port", str(port))
    assert n.up.returncode == 0, n.up.stdout + n.up.stderr
    assert f"Login at http://localhost:{port}" in n.up.stdout
    try:
        yield n, port
    finally:
        n.close()


def serving(port: int) -> bool:
    try:
        dyn = requests.get(f"http://127.0.0.1:{port}/web:web:sys/dyn", timeout=3)
        page = requests.get(f"http://127.0.0.1:{port}/web:web:sys/page", timeout=3)
    except requests.RequestException:
        return False
    return dyn.status_code == 200 and dyn.json()["me"] == "web:web:sys" and page.text == "static page"


def test_restart_http_server_keeps_port_bindings_and_static_content(sup: tuple[SupervisedNode, int]) -> None:
    node, port = sup
    wait_for(lambda: serving(port), 30, 0.2, "the app's paths")
    status = node.cli("status")
    assert f"http://localhost:{port}" in status.stdout
    (worker_before,) = children(node.pid_of("http-server"))
    assert f"worker pid {worker_before}" in status.stdout
    in_flight: dict[str, int] = {}
    slow = threading.Thread(target=lambda: in_flight.setdefault("status", requests.get(
        f"http://127.0.0.1:{port}/web:web:sys/dyn?do=sleep&s=1.5", timeout=20).status_code))
    app_log = node.home.logs_dir / "app-web-web-sys.log"
    asleep = app_log.read_text().count("sleeping")
    with Load(port, "/web:web:sys/page", threads=1) as hammer:
        slow.start()
        wait_for(lambda: app_log.read_text().count("sleeping") > asleep, 10, what="a request in flight")
        result = node.cli("restart", "http-server")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: "restarting the worker" in (node.home.logs_dir / "http-server.log").read_text(),
                 10, what="the worker restart")
        time.sleep(1.0)
        slow.join(20)
    assert in_flight["status"] == 200, "the old worker answers what it holds before it goes"
    assert hammer.refused == 0, "the keeper holds the port: no connection may be refused"
    # Nothing hung, nothing reset: the old worker answers the request that comes on its
    # kept-alive connection with `Connection: close` (issue 10 item 4).
    assert hammer.errors == [], hammer.errors
    assert set(hammer.statuses) == {200}, hammer.statuses
    assert serving(port)
    # The keeper keeps its pid; `porch status` shows the new worker beside it, once the
    # old one has finished what it held.
    keeper = node.pid_of("http-server")
    wait_for(lambda: len(children(keeper)) == 1, 15, what="the previous worker to finish")
    (worker,) = children(keeper)
    line = next(x for x in node.cli("status").stdout.splitlines() if x.strip().startswith("http-server"))
    assert f"pid {keeper}" in line and re.search(rf"worker pid {worker}, uptime \d+:\d\d:\d\d", line), line
    assert f"worker pid {worker_before}" not in line


def test_worker_crash_is_restarted_on_the_same_port(sup: tuple[SupervisedNode, int]) -> None:
    node, port = sup
    wait_for(lambda: serving(port), 30, 0.2, "the app's paths")
    keeper = node.pid_of("http-server")
    worker = children(keeper)
    assert len(worker) == 1
    os.kill(worker[0], signal.SIGKILL)
    wait_for(lambda: serving(port), 20, 0.2, "a new worker")
    assert node.pid_of("http-server") == keeper
    assert children(keeper) != worker


def test_keeper_killed_comes_back_on_the_same_port(sup: tuple[SupervisedNode, int]) -> None:
    node, port = sup
    wait_for(lambda: serving(port), 30, 0.2, "the app's paths")
    keeper = node.pid_of("http-server")
    worker = children(keeper)
    os.kill(keeper, signal.SIGKILL)
    wait_for(lambda: not alive(worker[0]), 10, what="the orphaned worker to exit with its keeper")
    wait_for(lambda: node.pid_of("http-server") not in (0, keeper), 20, what="supervisord's restart")
    wait_for(lambda: serving(port), 30, 0.2, "the paths on the same port")


def test_app_killed_mid_request_502_then_503_until_supervisord_restarts_it(
        sup: tuple[SupervisedNode, int]) -> None:
    node, port = sup
    wait_for(lambda: serving(port), 30, 0.2, "the app's paths")
    base = f"http://127.0.0.1:{port}"
    other = Load(port, "/other:web:sys/dyn", threads=1)
    with other:
        result: dict[str, int] = {}
        slow = threading.Thread(target=lambda: result.setdefault(
            "status", requests.get(base + "/web:web:sys/dyn?do=sleep&s=30", timeout=20).status_code))
        app_log = node.home.logs_dir / "app-web-web-sys.log"
        asleep = app_log.read_text().count("sleeping")
        slow.start()
        wait_for(lambda: app_log.read_text().count("sleeping") > asleep, 10, what="the request in the app")
        os.kill(node.pid_of("app-web-web-sys"), signal.SIGKILL)
        started = time.monotonic()
        slow.join(10)
        assert result["status"] == 502
        assert time.monotonic() - started < 2.0
        # until supervisord has it running again: 503 at once, never a hang
        seen = set()
        while not serving(port):
            r = requests.get(base + "/web:web:sys/dyn", timeout=5)
            seen.add(r.status_code)
            time.sleep(0.05)
        assert seen <= {503, 200} and 503 in seen, seen
    assert other.refused == 0 and set(other.statuses) == {200}, "the other app never noticed"
    assert other.errors == [], other.errors[:3]


def hold(port: int) -> socket.socket | None:
    """A listening socket on port (as the node would bind it), or None if it is busy."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as port.py: TIME_WAIT is free
    try:
        s.bind(("0.0.0.0", port))
        s.listen()
    except OSError:
        s.close()
        return None
    return s


def bindable(port: int) -> bool:
    s = hold(port)
    if s is None:
        return False
    s.close()
    return True


def http_server_log(node: SupervisedNode) -> str:
    path = node.home.logs_dir / "http-server.log"
    return path.read_text(errors="replace") if path.exists() else ""


def announced(node: SupervisedNode, port: int, log_from: int = 0) -> None:
    """The port is where `porch up`, `porch status` and the http-server's own log (from
    offset log_from: this run's part) say."""
    url = f"http://localhost:{port}"
    assert f"porch: Login at {url}" in node.up.stdout, node.up.stdout
    assert f"http  {url}" in node.cli("status").stdout
    wait_for(lambda: f"Login at {url}" in http_server_log(node)[log_from:], 10,
             what=f"'Login at {url}' in the http-server's log")


def test_busy_8080_takes_exactly_8081(tmp_path: Path) -> None:
    held = hold(8080)  # None: something on this machine holds it, just as good
    try:
        if not bindable(8081):
            pytest.skip("port 8081 is in use on this machine")
        n = SupervisedNode(config(tmp_path))
        try:
            assert n.up.returncode == 0, n.up.stderr
            chosen = int((n.home.state_dir / "port").read_text())
            if chosen != 8081 and not bindable(8081):
                pytest.skip(f"port 8081 was taken by another program meanwhile (the node took {chosen})")
            assert chosen == 8081, "the first free port after the busy 8080"
            announced(n, 8081)
            wait_for(lambda: serving(8081), 30, 0.2, "the app's paths on 8081")
        finally:
            n.close()
    finally:
        if held is not None:
            held.close()


def test_chosen_port_is_remembered_across_down_and_up(tmp_path: Path) -> None:
    """First start without --port: the first free port from 8080. We hold that one, so
    the node takes a later one; after `porch down` we free ours, and `porch up` must
    come back on the node's port rather than choose again (which would take ours)."""
    ours = next((sock for sock in map(hold, range(8080, 8990)) if sock is not None), None)
    if ours is None:
        pytest.skip("no free port from 8080 to 8990 on this machine")
    first_free = ours.getsockname()[1]
    n = SupervisedNode(config(tmp_path))
    try:
        assert n.up.returncode == 0, n.up.stderr
        chosen = int((n.home.state_dir / "port").read_text())
        assert chosen > first_free
        announced(n, chosen)
        wait_for(lambda: serving(chosen), 30, 0.2, "the app's paths")
        down = n.cli("down")
        assert down.returncode == 0, down.stderr
        ours.close()
        log_from = len(http_server_log(n))
        n.up = n.cli("up", "--detach")
        assert n.up.returncode == 0, n.up.stderr
        assert int((n.home.state_dir / "port").read_text()) == chosen
        announced(n, chosen, log_from)
        wait_for(lambda: serving(chosen), 30, 0.2, "the app's paths on the remembered port")
    finally:
        ours.close()
        n.close()


def test_busy_port_flag_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        n = SupervisedNode(config(tmp_path), "--port", str(port))
        try:
            assert n.up.returncode == 2
            assert f"couldn't bind {port}; first available port found was" in n.up.stderr
            assert not n.home.supervisord_pid.exists(), "nothing was started"
        finally:
            n.close()
