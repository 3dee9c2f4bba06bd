"""The http-client speaks the HTTP version a request asks for (issue 14, Kinode parity):
HTTP/1.0 and HTTP/1.1 go out as such; HTTP/0.9, HTTP/2.0 and HTTP/3.0, which Kinode
accepts, fail with ExecuteRequestFailed instead of going out as HTTP/1.1 unasked (a
documented deviation for HTTP/2.0, which Kinode's reqwest speaks). Real kernel, real
http-client, a real Tornado server on loopback that reports the version it received.

Before: `version` was checked and ignored; every request went out as HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

import porch
from porch.http.client import (
    HttpClientError,
    HttpResponse,
    parse_response,
    send_request,
    send_request_await_response,
    send_request_await_response_async,
)
from support.http_test_server import TestServer
from support.node import Node

CONFIG = ('node = "test.os"\n'
          '[[process]]\nid = "caller:demo:sys"\ncommand = "true"\ncapabilities = ["http-client:distro:sys"]\n'
          '[[process]]\nid = "acaller:demo:sys"\ncommand = "true"\ncapabilities = ["http-client:distro:sys"]\n')


@pytest.fixture(scope="module")
def server() -> Iterator[TestServer]:
    srv = TestServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    n = Node(CONFIG)
    try:
        n.start("kernel")
        n.start("http-client")
        yield n
    finally:
        n.close()


@pytest.fixture(scope="module")
def caller(node: Node) -> porch.Process:
    return node.process("caller:demo:sys")


def seen(resp: HttpResponse) -> dict[str, object]:
    assert resp.status == 200, resp
    data: dict[str, object] = json.loads(resp.body)
    return data


def test_http_1_0_goes_out_as_http_1_0_with_its_host(server: TestServer, caller: porch.Process) -> None:
    echo = seen(send_request_await_response(caller, "GET", server.url("/echo"), timeout=10,
                                            version="HTTP/1.0"))
    assert echo["version"] == "HTTP/1.0"
    assert ["Host", f"127.0.0.1:{server.port}"] in echo["headers"]  # type: ignore[operator]
    # Posting a body: a Content-Length, never chunks (HTTP/1.0 has none).
    echo = seen(send_request_await_response(caller, "POST", server.url("/echo"), timeout=10,
                                            body=b"payload", version="HTTP/1.0"))
    assert (echo["version"], bytes.fromhex(str(echo["body"]))) == ("HTTP/1.0", b"payload")


def test_http_1_1_and_the_default_on_the_same_connections(server: TestServer, caller: porch.Process) -> None:
    """A kept-alive connection that carried an HTTP/1.0 request speaks 1.1 again."""
    for version in ("HTTP/1.0", None, "HTTP/1.1", "HTTP/1.0", None):
        echo = seen(send_request_await_response(caller, "GET", server.url("/echo"), timeout=10,
                                                version=version))
        assert echo["version"] == (version or "HTTP/1.1")


@pytest.mark.parametrize("version", ["HTTP/0.9", "HTTP/2.0", "HTTP/3.0"])
def test_versions_it_does_not_speak_fail_rather_than_downgrade(server: TestServer, caller: porch.Process,
                                                               version: str) -> None:
    with pytest.raises(HttpClientError) as err:
        send_request_await_response(caller, "GET", server.url("/echo"), timeout=10, version=version)
    assert err.value.kind == "ExecuteRequestFailed"
    assert f"{version} is not spoken" in err.value.message


def test_an_unknown_version_is_bad_version(server: TestServer, caller: porch.Process) -> None:
    with pytest.raises(HttpClientError) as err:
        send_request_await_response(caller, "GET", server.url("/echo"), timeout=10, version="HTTP/1.2")
    assert (err.value.kind, err.value.version) == ("BadVersion", "HTTP/1.2")


def test_every_helper_passes_the_version(node: Node, server: TestServer, caller: porch.Process) -> None:
    send_request(caller, "GET", server.url("/echo"), timeout=10, version="HTTP/1.0")
    assert seen(parse_response(caller.await_message(timeout=10)))["version"] == "HTTP/1.0"

    async def main() -> None:
        proc = await porch.AsyncProcess.connect("acaller:demo:sys", home=node.home.root, connect_timeout=10)
        try:
            resp = await send_request_await_response_async(proc, "GET", server.url("/echo"), timeout=10,
                                                           version="HTTP/1.0")
            assert seen(resp)["version"] == "HTTP/1.0"
            # The asyncio twin of send_request(timeout=...): the answer from await_message.
            send_request(proc, "GET", server.url("/echo"), timeout=10, version="HTTP/1.0")
            assert seen(parse_response(await proc.await_message(timeout=10)))["version"] == "HTTP/1.0"
        finally:
            proc.close()

    asyncio.run(main())
