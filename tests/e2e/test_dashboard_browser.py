"""The node page's live view in Chromium (issue 13 item 3, "must show"): every process
with its state, and a process killed -9 going from running to restarting to running,
its restart count moving; the restart button; nothing fetched from anywhere else; the
screenshots in docs/screenshots/ (PORCH_SCREENSHOTS=1)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from support.node import SupervisedNode, free_port, wait_for

pytestmark = pytest.mark.browser
Shot = Callable[[Any, str], Path]
PASSWORD = "dashboard password"
NODE = "dash.os"
APP = "beat:demo:sys"
QUIET = "quiet:demo:sys"
COOKIE = f"kinode-auth_{NODE}"

# Connects only after START_DELAY seconds, so that a restart shows as "restarting".
APP_SOURCE = """
import os, time
import porch
from porch.http.server import HttpBindingConfig, HttpResponse, HttpServer
time.sleep(float(os.environ.get("START_DELAY", "0")))
proc = porch.Process()
server = HttpServer(proc)
server.bind_http_path("/api", HttpBindingConfig(authenticated=False))
print("READY", flush=True)
while True:
    msg = proc.await_message()
    server.handle_request(msg, lambda req: HttpResponse(500 if "fail" in req.url else 200).body(b"ok"))
"""


class Traffic(threading.Thread):
    """Steady requests (a few failing) while the page is open: the rates and sparklines
    have something to show."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.wait(0.05):
            i += 1
            try:
                requests.get(f"{self.base}/{APP}/api" + ("?fail=1" if i % 17 == 0 else ""), timeout=5)
            except requests.RequestException:
                pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SupervisedNode, str, str]]:
    folder = tmp_path_factory.mktemp("dash")
    script = folder / "beat.py"
    script.write_text(APP_SOURCE)
    port = free_port()
    entries = "".join(f'[[process]]\nid = "{pid}"\ncommand = "{sys.executable} {script}"\n'
                      'capabilities = ["http-server:distro:sys"]\n'
                      f'environment = {{ START_DELAY = "{delay}" }}\n'
                      for pid, delay in ((APP, "3"), (QUIET, "0")))
    node = SupervisedNode(f'node = "{NODE}"\n{entries}', "--port", str(port), "--password", PASSWORD)
    assert node.up.returncode == 0, node.up.stdout + node.up.stderr
    base = f"http://localhost:{port}"
    try:
        token = requests.post(base + "/login", json={"password": PASSWORD}, timeout=10).cookies[COOKIE]
        yield node, base, token
    finally:
        node.close()


def open_page(browser: Any, base: str, token: str, scheme: str = "light") -> tuple[Any, list[str]]:
    ctx = browser.new_context(viewport={"width": 1100, "height": 760}, color_scheme=scheme)
    ctx.add_cookies([{"name": COOKIE, "value": token, "url": base}])
    page = ctx.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith((base, "data:")) else None)
    page.goto(base + "/")
    return page, elsewhere


def state_of(page: Any, pid: str) -> str:
    return str(page.get_attribute(f"tr[data-process='{pid}'] [data-state]", "data-state"))


def test_a_killed_process_goes_running_restarting_running(browser: Any, site: tuple[SupervisedNode, str, str],
                                                          screenshot: Shot) -> None:
    node, base, token = site
    traffic = Traffic(base)
    traffic.start()
    try:
        page, elsewhere = open_page(browser, base, token)
        assert page.text_content("h1") == NODE and "Apps on this node" in page.content()
        for pid in ("kernel:distro:sys", "http-server:distro:sys", "http-client:distro:sys", APP, QUIET):
            page.wait_for_selector(f"tr[data-process='{pid}'] [data-state='running']", timeout=40_000)
        row = f"tr[data-process='{APP}']"
        wait_for(lambda: page.text_content(f"{row} td:nth-child(5)") not in ("-", "0.0"), 30, 0.3,
                 "a request rate on the page")
        page.wait_for_selector(f"{row} svg.spark polyline.rate", timeout=20_000)
        assert page.text_content(f"{row} td:nth-child(4)") == "0"

        pid = node.pid_of("app-beat-demo-sys")  # the launcher; the app dies with it
        os.kill(pid, signal.SIGKILL)
        page.wait_for_selector(f"{row} [data-state='restarting']", timeout=20_000)
        screenshot(page, "dashboard-restarting")
        page.wait_for_selector(f"{row} [data-state='running']", timeout=40_000)
        wait_for(lambda: page.text_content(f"{row} td:nth-child(4)") == "1", 20, 0.2,
                 "the restart count on the page")
        # A few samples more, for a sparkline worth a picture.
        wait_for(lambda: len((page.get_attribute(f"{row} polyline.rate", "points") or "").split()) >= 8,
                 40, 0.5, "eight samples")
        screenshot(page, "dashboard")
        assert elsewhere == [], f"the page fetched from elsewhere: {elsewhere}"
        page.context.close()
    finally:
        traffic.stop.set()
        traffic.join(10)


def test_the_restart_button_restarts_the_process(browser: Any, site: tuple[SupervisedNode, str, str],
                                                 screenshot: Shot) -> None:
    node, base, token = site
    page, _ = open_page(browser, base, token, scheme="dark")
    row = f"tr[data-process='{QUIET}']"
    page.wait_for_selector(f"{row} [data-state='running']", timeout=40_000)
    before = node.pid_of("app-quiet-demo-sys")
    restarts = page.text_content(f"{row} td:nth-child(4)")
    assert page.query_selector("tr[data-process='kernel:distro:sys'] button") is None, \
        "the node's services have no restart button"
    screenshot(page, "dashboard-dark")
    page.click(f"{row} button:has-text('Restart')")
    wait_for(lambda: node.pid_of("app-quiet-demo-sys") not in (before, 0), 30, 0.2, "supervisord to restart it")
    wait_for(lambda: page.text_content(f"{row} td:nth-child(4)") == str(int(restarts or "0") + 1), 30, 0.2,
             "the restart count on the page")
    page.wait_for_selector(f"{row} [data-state='running']", timeout=40_000)
    page.context.close()


def test_the_live_view_is_the_owners_only(browser: Any, site: tuple[SupervisedNode, str, str]) -> None:
    """Without the cookie the page is the login page and the socket refuses."""
    _, base, _ = site
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(base + "/")
    assert page.query_selector("#processes") is None and page.query_selector("#login") is not None
    opened = page.evaluate("""(url) => new Promise((done) => {
        const ws = new WebSocket(url);
        ws.onopen = () => done("open");
        ws.onerror = () => done("refused");
    })""", base.replace("http", "ws") + "/http-server:distro:sys/dashboard")
    assert opened == "refused"
    ctx.close()
