"""porch.http.server helpers against a real http-server: serving files and UIs,
process_lib's bugs fixed (modify_http_path, serve_ui with no roots), and the asyncio
twin doing everything the blocking server does (issue 11 item 5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import porch
from porch.http.server import (
    HttpBindingConfig,
    HttpServer,
    HttpServerError,
    IncomingHttpRequest,
    get_mime_type,
)
from porch.wire import http_pb2
from support.node import Node, free_port

IDS = ["ui:pkg:pub.os", "mod:pkg:pub.os", "file:pkg:pub.os", "aio:pkg:pub.os"]
OPEN = HttpBindingConfig(authenticated=False)


@pytest.fixture(scope="module")
def base() -> Iterator[tuple[Node, str]]:
    grants = "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n' for pid in IDS)
    node = Node('node = "helpers.os"\n' + grants)
    try:
        node.start("kernel")
        port = free_port()
        node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "x"})
        yield node, f"http://127.0.0.1:{port}"
    finally:
        node.close()


def test_serve_ui_binds_every_file_and_index_even_without_roots(base: tuple[Node, str], tmp_path: Path) -> None:
    node, url = base
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<h1>index</h1>")
    (tmp_path / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path / "assets" / "index.html").write_text("nested index")
    server = HttpServer(node.process("ui:pkg:pub.os"))
    bound = server.serve_ui(tmp_path, roots=[], config=OPEN)
    assert sorted(bound) == ["/assets/app.js", "/assets/index.html", "/index.html"]
    # process_lib skipped index.html entirely with no roots (D13): here it is served
    assert requests.get(url + "/ui:pkg:pub.os/index.html", timeout=5).text == "<h1>index</h1>"
    js = requests.get(url + "/ui:pkg:pub.os/assets/app.js", timeout=5)
    assert js.headers["content-type"] in ("text/javascript", "application/javascript")
    server.serve_ui(tmp_path, roots=["/", "/app"], config=OPEN)
    assert requests.get(url + "/ui:pkg:pub.os/", timeout=5).text == "<h1>index</h1>"
    assert requests.get(url + "/ui:pkg:pub.os/app", timeout=5).text == "<h1>index</h1>", \
        "a nested index.html never replaces the top one at the roots"


def test_modify_http_path_sends_the_new_content(base: tuple[Node, str]) -> None:
    """process_lib's modify_http_path always failed with NoBlob (D13)."""
    node, url = base
    server = HttpServer(node.process("mod:pkg:pub.os"))
    with pytest.raises(HttpServerError) as err:
        server.modify_http_path("/never", OPEN)
    assert err.value.kind == "MalformedRequest"
    server.bind_http_static_path("/m", False, False, "text/plain", b"one")
    assert requests.get(url + "/mod:pkg:pub.os/m", timeout=5).text == "one"
    server.modify_http_path("/m", OPEN.with_(static_content=porch.Blob(b"two", "text/plain")))
    assert requests.get(url + "/mod:pkg:pub.os/m", timeout=5).text == "two"
    server.unbind_http_path("/m")
    assert requests.get(url + "/mod:pkg:pub.os/m", timeout=5).status_code == 404
    assert "/m" not in server.http_paths


def test_serve_file_with_its_mime_type(base: tuple[Node, str], tmp_path: Path) -> None:
    node, url = base
    style = tmp_path / "site.css"
    style.write_text("body { color: red }")
    server = HttpServer(node.process("file:pkg:pub.os"))
    server.serve_file(style, ["/a.css", "/b.css"], OPEN)
    server.serve_file_raw_path(style.resolve(), ["/c.css"], OPEN)  # process_lib's name, the same here
    for path in ("/a.css", "/b.css", "/c.css"):
        r = requests.get(url + "/file:pkg:pub.os" + path, timeout=5)
        assert (r.headers["content-type"], r.text) == ("text/css", "body { color: red }")


def test_incoming_request_accessors() -> None:
    proto = http_pb2.IncomingHttpRequest(method="GET", url="http://localhost/chess:chess:sys/games/42",
                                         bound_path="/chess:chess:sys/games/:id")
    proto.headers.add(name="x-a", value="1")
    proto.headers.add(name="x-a", value="2")
    proto.query_params.add(name="k", value="1")
    proto.query_params.add(name="k", value="2")
    req = IncomingHttpRequest.from_proto(proto, b"body")
    assert req.path() == "/games/42"
    assert req.bound_path_stripped("chess:chess:sys") == "/games/:id"
    assert req.headers["X-A"] == "2" and req.headers.get_all("x-a") == ["1", "2"]
    assert req.query_params == {"k": "2"} and req.query_list == [("k", "1"), ("k", "2")]
    assert req.source_socket_addr is None and req.body == b"body"
    assert get_mime_type("a.unknownext") == "application/octet-stream"


ASYNC_APP = """
import asyncio, os
import porch
from porch.http.server import (AsyncHttpServer, HttpBindingConfig, HttpResponse, WsBindingConfig,
                               send_ws_push)
async def main():
    proc = await porch.AsyncProcess.connect()
    server = AsyncHttpServer(proc)
    def http(req):
        return HttpResponse(200).header("Content-Type", "text/plain").body(b"async " + req.body)
    def ws(channel, kind, blob):
        send_ws_push(proc, channel, "Text", b"echo " + blob.bytes)
    proc.on_request(lambda msg: server.handle_request(msg, http, ws))
    OPEN = HttpBindingConfig().with_authenticated(False)
    await server.bind_http_path("/h", OPEN)
    await server.bind_ws_path("/ws", WsBindingConfig(authenticated=True))
    await server.modify_ws_path("/ws", WsBindingConfig().with_authenticated(False))
    await server.serve_file(__file__, ["/me.py"], OPEN)
    await server.serve_file_raw_path(os.path.abspath(__file__), ["/raw.py"], OPEN)
    await server.bind_http_static_path("/s", False, False, "text/plain", b"static one")
    await server.modify_http_path("/s", OPEN.with_static_content(b"static two", "text/plain"))
    await server.bind_multiple_http_paths(["/m1", "/m2"], OPEN)
    await server.secure_bind_http_path("/secure")
    await server.unbind_http_path("/m2")
    print("READY", sorted(server.http_paths), flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def test_async_http_server_serves_http_and_websockets(base: tuple[Node, str]) -> None:
    from websockets.sync.client import connect

    node, url = base
    node.spawn("aio:pkg:pub.os", ASYNC_APP)
    node.wait_log("aio:pkg:pub.os", "READY")
    assert requests.post(url + "/aio:pkg:pub.os/h", data=b"hi", timeout=5).text == "async hi"
    assert "AsyncHttpServer" in requests.get(url + "/aio:pkg:pub.os/me.py", timeout=5).text
    assert "AsyncHttpServer" in requests.get(url + "/aio:pkg:pub.os/raw.py", timeout=5).text
    assert requests.get(url + "/aio:pkg:pub.os/s", timeout=5).text == "static two"
    assert requests.post(url + "/aio:pkg:pub.os/m1", data=b"m", timeout=5).text == "async m"
    assert requests.get(url + "/aio:pkg:pub.os/m2", timeout=5).status_code == 404
    assert "'/m1', '/me.py', '/raw.py', '/s', '/secure']" in node.log("aio:pkg:pub.os")
    with connect(url.replace("http", "ws") + "/aio:pkg:pub.os/ws", open_timeout=10) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "echo x"
