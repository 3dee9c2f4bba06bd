"""Ops restart one service of a running node at 3 a.m.: nothing else may notice more
than it must, and nothing hangs.

A supervised node (`porch up`) with an HTTP app and a WebSocket echo app, under a
steady HTTP load and with a WebSocket open, while `porch restart` takes down and brings
back one service at a time:

- the kernel: no connection is refused (the http-server holds the port), no request
  hangs (each is answered, at worst 503 while the app cannot be reached), the open
  WebSocket keeps working (it lives between the client and the http-server; its owner
  is still running), and afterwards every request is answered 200 again;
- the http-client: the others carry on untouched;

each by `porch restart` and by a crash (`kill -9`, supervisord brings it back),

and in every case no other program restarts (supervisord's pids are the same).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from support.load import Load
from support.node import PY, SupervisedNode, free_port, wait_for

HTTP_APP = (Path(__file__).parent.parent / "support" / "http_app.py").read_text()
WS_APP = """
import porch
from porch.http.server import HttpServer, WsBindingConfig, send_ws_push
from porch.wire import http_pb2
proc = porch.Process()
HttpServer(proc).bind_ws_path("/ws", WsBindingConfig(authenticated=False))
while True:
    msg = proc.await_message()
    req = http_pb2.HttpServerRequest.FromString(msg.body)
    if req.WhichOneof("request") == "web_socket_push":
        blob = proc.get_blob()
        send_ws_push(proc, req.web_socket_push.channel_id, "Text", blob.bytes if blob else b"")
"""
PROGRAMS = ("kernel", "http-server", "http-client", "web:web:sys", "wsa:web:sys")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SupervisedNode, int]]:
    scripts = tmp_path_factory.mktemp("apps")
    (scripts / "http_app.py").write_text(HTTP_APP)
    (scripts / "ws_app.py").write_text(WS_APP)
    bindings = json.dumps(json.dumps([{"path": "/dyn"}]))
    config = (
        'node = "load.os"\n'
        f'[[process]]\nid = "web:web:sys"\ncommand = "{PY} {scripts / "http_app.py"}"\n'
        f'capabilities = ["http-server:distro:sys"]\nenvironment = {{ BINDINGS = {bindings} }}\n'
        f'[[process]]\nid = "wsa:web:sys"\ncommand = "{PY} {scripts / "ws_app.py"}"\n'
        'capabilities = ["http-server:distro:sys"]\n'
    )
    port = free_port()
    n = SupervisedNode(config, "--port", str(port))
    assert n.up.returncode == 0, n.up.stdout + n.up.stderr
    try:
        wait_for(lambda: answers(port), 30, 0.2, "the app's path")
        wait_for(lambda: ws_echoes(port), 30, 0.2, "the WebSocket echo")
        yield n, port
    finally:
        n.close()


def answers(port: int) -> bool:
    try:
        r = requests.get(f"http://127.0.0.1:{port}/web:web:sys/dyn", timeout=3)
    except requests.RequestException:
        return False
    return r.status_code == 200


def ws_echoes(port: int) -> bool:
    try:
        with connect(f"ws://127.0.0.1:{port}/wsa:web:sys/ws", open_timeout=3) as ws:
            ws.send("ping")
            return ws.recv(timeout=3) == "ping"
    except (OSError, TimeoutError, Exception):
        return False


def pids(node: SupervisedNode) -> dict[str, int]:
    from porch.cli.supervise import program_name
    from porch.node.config import load

    config = load(node.home.config_path)
    return {name: node.pid_of(program_name(config, name)) for name in PROGRAMS}


def echo(ws: ClientConnection, text: str) -> None:
    ws.send(text)
    assert ws.recv(timeout=5) == text


@pytest.mark.parametrize("service, how", [("kernel", "restart"), ("kernel", "kill -9"),
                                          ("http-client", "restart"), ("http-client", "kill -9")])
def test_restarting_one_service_under_load(node: tuple[SupervisedNode, int], service: str, how: str) -> None:
    """`porch restart SERVICE`, or a crash (kill -9, supervisord restarts it)."""
    n, port = node
    before = pids(n)
    with connect(f"ws://127.0.0.1:{port}/wsa:web:sys/ws", open_timeout=10) as ws, Load(port) as load:
        echo(ws, "before")
        time.sleep(0.5)
        if how == "restart":
            result = n.cli("restart", service)
            assert result.returncode == 0, result.stdout + result.stderr
        else:
            os.kill(before[service], signal.SIGKILL)
            wait_for(lambda: n.pid_of(service) not in (0, before[service]), 20,
                     what=f"supervisord to restart {service}")
        # Back to answering every request, and the same socket still echoes.
        wait_for(lambda: answers(port), 20, 0.1, f"the app to answer after restarting {service}")
        wait_for(lambda: _echoes_on(ws), 20, 0.2, "the open WebSocket to echo again")
        time.sleep(0.5)
    after = pids(n)
    assert after[service] != before[service], f"{service} was restarted"
    others = {k: v for k, v in after.items() if k != service}
    assert others == {k: v for k, v in before.items() if k != service}, "nothing else restarted"
    assert load.errors == [], f"requests refused, reset or hung: {load.errors[:3]}"
    assert load.statuses.get(200, 0) > 0
    allowed = {200} if service == "http-client" else {200, 503}
    assert set(load.statuses) <= allowed, load.statuses


def _echoes_on(ws: ClientConnection) -> bool:
    try:
        echo(ws, "after")
        return True
    except TimeoutError:
        return False
