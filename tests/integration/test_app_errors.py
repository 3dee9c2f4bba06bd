"""An exception in an app's handler answers 500 for that request and the process goes
on (issue 14 item 3): real kernel, real http-server, apps using the blocking and the
asyncio helpers.

Before: the blocking app died (that request 502, every request 503 until it was
restarted, its in-memory state lost); the asyncio one logged and never answered (504
after the binding's deadline). A WebSocket handler that raised closed every socket of
a blocking app; now it is logged and the socket stays open.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from support.node import Node, free_port

HANDLERS = """
import os
from porch.http.server import HttpResponse, send_ws_push

count = 0

def http(req):
    global count
    count += 1
    if req.path() == "/boom":
        raise RuntimeError("boom in the handler")
    if req.path() == "/bad":
        return "not a response"
    if req.path() == "/badheader":
        return HttpResponse(200).header("X-N", 42)
    return HttpResponse(200).header("Content-Type", "text/plain").body(f"{os.getpid()} {count}")

def ws(channel, kind, blob):
    if blob.bytes == b"boom":
        raise ValueError("boom in the WebSocket handler")
    send_ws_push(proc, channel, "Text", b"echo " + blob.bytes)

def opened(path, channel):
    raise KeyError("boom in on_open")
"""

BLOCKING = """
import porch
from porch.http.server import HttpBindingConfig, HttpServer, WsBindingConfig
proc = porch.Process()
server = HttpServer(proc)
""" + HANDLERS + """
OPEN = HttpBindingConfig(authenticated=False)
for path in ("/ok", "/boom", "/bad", "/badheader"):
    server.bind_http_path(path, OPEN)
server.bind_ws_path("/ws", WsBindingConfig(authenticated=False))
print("READY", flush=True)
while True:
    server.handle_request(proc.await_message(), http, ws, on_open=opened)
"""

ASYNCIO = """
import asyncio
import porch
from porch.http.server import AsyncHttpServer, HttpBindingConfig, WsBindingConfig
proc = None
""" + HANDLERS + """
async def main():
    global proc
    proc = await porch.AsyncProcess.connect()
    server = AsyncHttpServer(proc)
    proc.on_request(lambda msg: server.handle_request(msg, http, ws, on_open=opened))
    OPEN = HttpBindingConfig(authenticated=False)
    for path in ("/ok", "/boom", "/bad", "/badheader"):
        await server.bind_http_path(path, OPEN)
    await server.bind_ws_path("/ws", WsBindingConfig(authenticated=False))
    print("READY", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

APPS = {"blocking": ("errb:pkg:pub.os", BLOCKING), "asyncio": ("erra:pkg:pub.os", ASYNCIO)}


@pytest.fixture(scope="module")
def base() -> Iterator[tuple[Node, str]]:
    grants = "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                     for pid, _ in APPS.values())
    node = Node('node = "errors.os"\n' + grants)
    try:
        node.start("kernel")
        port = free_port()
        node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "x"})
        yield node, f"http://127.0.0.1:{port}"
    finally:
        node.close()


@pytest.mark.parametrize("flavour", sorted(APPS))
def test_a_handler_that_raises_answers_500_and_the_process_goes_on(base: tuple[Node, str],
                                                                   flavour: str) -> None:
    """Issue 14 item 3: 500 for that request, 200 for the next, same pid, state kept,
    the traceback in the app's log."""
    node, url = base
    pid, source = APPS[flavour]
    app = node.spawn(pid, source)
    node.wait_log(pid, "READY")
    first = requests.get(f"{url}/{pid}/ok", timeout=10)
    assert first.status_code == 200
    os_pid, count = first.text.split()
    assert int(os_pid) == app.pid and count == "1"

    boom = requests.get(f"{url}/{pid}/boom", timeout=10)
    assert boom.status_code == 500, boom.text
    assert boom.text == "internal error\n", "no traceback for the client"
    bad = requests.get(f"{url}/{pid}/bad", timeout=10)
    assert bad.status_code == 500
    bad_header = requests.get(f"{url}/{pid}/badheader", timeout=10)
    assert bad_header.status_code == 500

    after = requests.get(f"{url}/{pid}/ok", timeout=10)
    assert (after.status_code, after.text) == (200, f"{app.pid} 5"), "same process, state kept"
    assert app.poll() is None
    log = node.log(pid)
    assert "Traceback" in log and "RuntimeError: boom in the handler" in log
    assert re.search(r"the HTTP handler failed on GET \S+/boom; answered 500", log)
    assert "returned str, not an HttpResponse" in log


@pytest.mark.parametrize("flavour", sorted(APPS))
def test_a_websocket_handler_that_raises_leaves_the_socket_open(base: tuple[Node, str],
                                                                flavour: str) -> None:
    """Issue 14 item 3: a WebSocket handler (and on_open) that raises is logged; the
    socket stays open and the next frame is handled."""
    from websockets.sync.client import connect

    node, url = base
    pid, source = APPS[flavour]
    if node.procs.get(pid) is None or node.procs[pid].poll() is not None:
        node.spawn(pid, source)
        node.wait_log(pid, "READY")
    with connect(url.replace("http", "ws") + f"/{pid}/ws", open_timeout=10) as ws:
        ws.send("boom")
        ws.send("x")
        assert ws.recv(timeout=10) == "echo x"
        ws.send("y")
        assert ws.recv(timeout=10) == "echo y"
    log = node.log(pid)
    assert "ValueError: boom in the WebSocket handler" in log and "KeyError: 'boom in on_open'" in log
    assert "the socket stays open" in log
    assert node.procs[pid].poll() is None
