"""A real browser, logged in to the node, visits a hostile site (issue 9 items 1 and
15): the site's page tries the RPC endpoint every way a page can without a CORS grant
(a no-cors fetch, a CORS fetch, a text/plain form) and frames the login page. Nothing
reaches the target process and the login page does not render in the frame."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

import porch
from support.node import Node, free_port

PASSWORD = "attack pass"
NODE = "attack.os"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[Node, str, str]]:
    n = Node(f'node = "{NODE}"\n')
    try:
        n.start("kernel")
        port = free_port()
        n.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": PASSWORD})
        base = f"http://localhost:{port}"
        login = requests.post(base + "/login", json={"password": PASSWORD}, timeout=10)
        yield n, base, login.cookies[f"kinode-auth_{NODE}"]
    finally:
        n.close()


def evil_page(base: str) -> str:
    rpc = base + "/rpc:distro:sys/message"
    call = json.dumps({"process": "victim:pkg:pub.os", "body": "csrf"})
    # A text/plain form whose body is JSON: {"process": ..., "body": "csrf-form", "x": "="}
    field = json.dumps({"process": "victim:pkg:pub.os", "body": "csrf-form"})[:-1] + ', "x": "'
    return f"""<!doctype html><title>cute cats</title>
<iframe name="sink"></iframe>
<form id="f" method="POST" enctype="text/plain" action="{rpc}" target="sink">
<input name='{field}' value='"}}'></form>
<iframe id="framed" src="{base}/login"></iframe>
<script>
window.results = (async () => {{
  const out = {{}};
  try {{
    await fetch("{rpc}", {{method: "POST", mode: "no-cors", credentials: "include",
                          headers: {{"Content-Type": "text/plain"}}, body: {json.dumps(call)}}});
    out.nocors = "sent";
  }} catch (e) {{ out.nocors = "blocked: " + e; }}
  try {{
    const r = await fetch("{rpc}", {{method: "POST", credentials: "include",
                                    headers: {{"Content-Type": "application/json", "X-Porch-RPC": "1"}},
                                    body: {json.dumps(call)}}});
    out.cors = "answered " + r.status;
  }} catch (e) {{ out.cors = "blocked"; }}
  await new Promise(done => {{
    document.querySelector("iframe[name=sink]").onload = done;
    document.getElementById("f").submit();
    setTimeout(done, 5000);
  }});
  out.form = "submitted";
  return out;
}})();
</script>"""


@pytest.fixture
def evil_site(node: tuple[Node, str, str]) -> Iterator[str]:
    """The hostile site, on loopback too (a local dev server, say; and Chromium's
    Private Network Access, which other browsers lack, does not step in between two
    loopback sites). evil.localhost is another site than localhost."""
    page = evil_page(node[1]).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://evil.localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_hostile_page_cannot_drive_rpc_nor_frame_the_login(
        browser: Any, node: tuple[Node, str, str], evil_site: str) -> None:
    n, base, cookie = node
    victim = n.process("victim:pkg:pub.os")
    context = browser.new_context()
    context.add_cookies([{"name": f"kinode-auth_{NODE}", "value": cookie, "url": base}])
    page = context.new_page()
    page.goto(evil_site + "/cats")
    results = page.evaluate("window.results")
    assert results["cors"] == "blocked", results  # the preflight is never granted
    assert results["form"] == "submitted"
    with pytest.raises(porch.Timeout):
        msg = victim.await_message(timeout=1.0)
        raise AssertionError(f"the victim received {msg.body!r} from {msg.source}")
    # The login page refused to render inside the other site's frame.
    assert len(page.frames) == 3, [f.url for f in page.frames]
    assert not any(f.query_selector("#password") for f in page.frames), "the login page rendered in a frame"
    context.close()
