"""The HTTP side of a supervised node: port choice, restarts, crashes of the server."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

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


class Hammer:
    """Requests in a loop from another thread; counts what went wrong."""

    def __init__(self, port: int, path: str = "/web:web:sys/page") -> None:
        self.port = port
        self.path = path
        self.refused = 0
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                r = session.get(f"http://127.0.0.1:{self.port}{self.path}", timeout=10)
                self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
            except requests.ConnectionError as exc:
                if "refused" in str(exc).lower():
                    self.refused += 1
                session = requests.Session()
            time.sleep(0.01)


def test_restart_http_server_keeps_port_bindings_and_static_content(sup: tuple[SupervisedNode, int]) -> None:
    node, port = sup
    wait_for(lambda: serving(port), 30, 0.2, "the app's paths")
    status = node.cli("status")
    assert f"http://localhost:{port}" in status.stdout
    with Hammer(port) as hammer:
        time.sleep(0.3)
        result = node.cli("restart", "http-server")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: "restarting the worker" in (node.home.logs_dir / "http-server.log").read_text(),
                 10, what="the worker restart")
        time.sleep(1.0)
    assert hammer.refused == 0, "the keeper holds the port: no connection may be refused"
    assert set(hammer.statuses) == {200}, hammer.statuses
    assert serving(port)


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
    other = Hammer(port, "/other:web:sys/dyn")
    with other:
        result: dict[str, int] = {}
        slow = threading.Thread(target=lambda: result.setdefault(
            "status", requests.get(base + "/web:web:sys/dyn?do=sleep&s=30", timeout=20).status_code))
        slow.start()
        time.sleep(0.5)
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


def test_busy_8080_takes_the_next_free_port(tmp_path: Path) -> None:
    held = []
    for port in (8080, 8081):
        s = socket.socket()
        try:
            s.bind(("0.0.0.0", port))
            s.listen()
            held.append(s)
        except OSError:
            s.close()  # already busy: just as good for this test
    expected = None
    for port in range(8082, 8999):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
                expected = port
                break
            except OSError:
                continue
    n = SupervisedNode(config(tmp_path))
    try:
        assert n.up.returncode == 0, n.up.stderr
        assert f"Login at http://localhost:{expected}" in n.up.stdout
        assert (n.home.state_dir / "port").read_text().strip() == str(expected)
    finally:
        n.close()
        for s in held:
            s.close()


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
