"""The worker on either event loop (issue 12 item 4): the suite runs it on uvloop (the
default when installed); this runs HTTP and a WebSocket through a worker told to use
asyncio's own loop, and checks each says which loop it runs."""

from __future__ import annotations

import importlib.util

import pytest
import requests
from websockets.sync.client import connect

from porch.wire import http_pb2
from support.node import Node, free_port

APP = "loop:pkg:pub.os"


@pytest.mark.parametrize("setting", ["asyncio", "auto"])
def test_http_and_websockets_on_the_chosen_loop(setting: str) -> None:
    node = Node(f'node = "loop.os"\n[http_server]\nevent_loop = "{setting}"\n'
                f'[[process]]\nid = "{APP}"\ncapabilities = ["http-server:distro:sys"]\n')
    try:
        node.start("kernel")
        port = free_port()
        node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "pw"})
        # What the setting means, decided here, not by the code under test.
        expected = "uvloop" if setting == "auto" and importlib.util.find_spec("uvloop") else "asyncio"
        node.wait_log("http-server", f"worker on the {expected} event loop")
        app = node.process(APP)
        action = http_pb2.HttpServerAction()
        action.web_socket_bind.path = "/ws"
        action.web_socket_bind.authenticated = False
        reply = app.send_and_await_response("http-server:distro:sys", action.SerializeToString())
        assert http_pb2.HttpServerResult.FromString(reply.body).WhichOneof("result") == "ok"
        assert requests.get(f"http://127.0.0.1:{port}/our", timeout=10).text == "loop.os"
        with connect(f"ws://127.0.0.1:{port}/{APP}/ws", open_timeout=10) as client:
            opened = http_pb2.HttpServerRequest.FromString(app.await_message(timeout=10).body)
            channel = opened.web_socket_open.channel_id
            client.send("ping")
            pushed = app.await_message(timeout=10)
            assert pushed.blob is not None and pushed.blob.bytes == b"ping"
            push = http_pb2.HttpServerAction()
            push.web_socket_push.channel_id = channel
            push.web_socket_push.message_type = http_pb2.WsMessageType.Text
            app.send_request("http-server:distro:sys", push.SerializeToString(), blob=b"pong")
            assert client.recv(timeout=10) == "pong"
    finally:
        node.close()
