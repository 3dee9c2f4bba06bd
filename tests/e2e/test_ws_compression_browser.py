"""permessage-deflate with a browser (issue 12 item 1): Chromium offers the extension
on every WebSocket (`client_max_window_bits`), so a node with `ws_compression = true`
agrees to it, and what the page sends through an echo process comes back whole:
text and binary, small and large, one message after another (context kept both
ways)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.node import Node, free_port

APP = "zbrowser:pkg:pub.os"
ECHO = """
import porch
from porch.http.server import HttpServer, WsBindingConfig, send_ws_push
proc = porch.Process()
server = HttpServer(proc)
server.bind_ws_path("/ws", WsBindingConfig(authenticated=False))
print("READY", flush=True)

def echo(channel, kind, blob):
    if blob is not None and kind in ("Text", "Binary"):
        send_ws_push(proc, channel, kind, blob.bytes)

while True:
    server.handle_request(proc.await_message(), lambda req: None, echo)
"""


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    node = Node('node = "zbrowser.os"\n[http_server]\nws_compression = true\n'
                f'[[process]]\nid = "{APP}"\ncapabilities = ["http-server:distro:sys"]\n')
    try:
        port = free_port()
        node.start("kernel")
        node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "pw"})
        node.spawn(APP, ECHO)
        node.wait_log(APP, "READY")
        yield f"http://localhost:{port}"
    finally:
        node.close()


ROUND_TRIPS = """async (url) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const inbox = [];
    let wake = null;
    ws.onmessage = (ev) => { inbox.push(ev.data); if (wake) { wake(); } };
    await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail("refused"); });
    const next = async () => {
        while (!inbox.length) { await new Promise((ok) => { wake = ok; }); }
        return inbox.shift();
    };
    const json = JSON.stringify({id: 1, name: "a process", state: "running", values: [1, 2, 3]});
    const texts = ["hi", "héllo ".repeat(50), json.repeat(1500), json.repeat(1500), "x".repeat(200000)];
    const results = [];
    for (const text of texts) {
        ws.send(text);
        results.push((await next()) === text);
    }
    const bytes = new Uint8Array(300000);
    for (let i = 0; i < bytes.length; i++) { bytes[i] = (i * 7919) % 251; }
    ws.send(bytes);
    const back = new Uint8Array(await next());
    results.push(back.length === bytes.length && back.every((b, i) => b === bytes[i]));
    ws.close();
    return {extensions: ws.extensions, results: results};
}"""


def test_chromium_agrees_and_every_message_round_trips(browser: Any, base: str) -> None:
    page = browser.new_page()
    try:
        page.goto(base + "/login")
        outcome = page.evaluate(ROUND_TRIPS, base.replace("http", "ws") + f"/{APP}/ws")
    finally:
        page.close()
    assert outcome["extensions"] == "permessage-deflate; client_max_window_bits=12"
    assert outcome["results"] == [True] * 6
