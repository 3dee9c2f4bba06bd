"""The demo and porch's own pages in a real browser, issue 14 item 6: the hello page in
porch's look and honest about the login, the chat on a 390 px phone, the 404 page, a
login at /login, the login limit in words, no /favicon.ico 404. The screenshots in
docs/screenshots/ come from here (PORCH_SCREENSHOTS=1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from support.node import Node, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PASSWORD = "demo password"
NODE = "demo.os"
COOKIE = f"kinode-auth_{NODE}"
ELSEWHERE = "198.51.100.9"  # the rate-limited "client": a trusted proxy forwards for it

pytestmark = pytest.mark.browser
Shot = Callable[[Any, str], Path]


def run_example(name: str) -> str:
    path = EXAMPLES / name / "app.py"
    return (f"import runpy, sys\nsys.argv = [{str(path)!r}]\n"
            f"runpy.run_path({str(path)!r}, run_name='__main__')\n")


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, str]]:
    grants = "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                     for pid in ("hello:hello:sys", "chat:chat:sys"))
    node = Node(f'node = "{NODE}"\n[http_server]\nlogin_attempts_per_minute = 2\n'
                f'trusted_proxies = ["127.0.0.1"]\n{grants}')
    try:
        node.start("kernel")
        port = free_port()
        node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": PASSWORD})
        node.spawn("hello:hello:sys", run_example("hello"))
        node.spawn("chat:chat:sys", run_example("chat"))
        node.wait_log("hello:hello:sys", "bound")
        node.wait_log("chat:chat:sys", "chat room ready")
        base = f"http://localhost:{port}"
        login = requests.post(base + "/login", json={"password": PASSWORD}, timeout=10)
        yield base, login.cookies[COOKIE]
    finally:
        node.close()


def context(browser: Any, base: str, token: str | None = None, **options: Any) -> Any:
    ctx = browser.new_context(**{"viewport": {"width": 1000, "height": 700}, **options})
    if token:
        ctx.add_cookies([{"name": COOKIE, "value": token, "url": base}])
    return ctx


def failed_requests(page: Any) -> list[str]:
    """Every response of 400 or more the page receives, as "status url"."""
    bad: list[str] = []
    page.on("response", lambda r: bad.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return bad


def test_hello_looks_like_porch_and_knows_whether_you_are_logged_in(
        browser: Any, site: tuple[str, str], screenshot: Shot) -> None:
    base, token = site
    anonymous = context(browser, base).new_page()
    anonymous.goto(base + "/hello:hello:sys")  # no slash: porch adds it, style.css resolves
    assert anonymous.url == base + "/hello:hello:sys/"
    anonymous.wait_for_selector("#me:has-text('not logged in')")
    assert anonymous.get_attribute("#me a", "href") == "/login?redirect=%2Fhello%3Ahello%3Asys%2F"
    anonymous.context.close()
    for scheme in ("light", "dark"):
        page = context(browser, base, token, color_scheme=scheme).new_page()
        bad = failed_requests(page)
        page.goto(base + "/hello:hello:sys/")
        page.wait_for_selector("#me:has-text('You are logged in')")
        assert page.inner_text("#node") == f"on {NODE}", "from /our.js"
        assert page.get_attribute("nav a", "href") == "/", "a way back to the app list"
        assert not page.is_visible("#out"), "no empty grey box before there is an answer"
        page.fill("#name", "porch")
        page.click("button")
        page.wait_for_selector("#out:has-text('hello, porch')")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(21, 21, 21)" if scheme == "dark" else "rgb(246, 246, 243)")
        assert bad == [], f"failed requests: {bad}"  # /favicon.ico included
        screenshot(page, "hello" if scheme == "light" else "hello-dark")
        page.context.close()


def test_chat_fits_a_phone_and_a_desktop(browser: Any, site: tuple[str, str], screenshot: Shot) -> None:
    base, token = site
    for name, size in (("chat", {"width": 1000, "height": 640}), ("chat-phone", {"width": 390, "height": 844})):
        page = context(browser, base, token, viewport=size).new_page()
        page.goto(base + "/chat:chat:sys/")
        page.wait_for_selector("#status:has-text('connected')")
        send = page.locator("#send button").bounding_box()
        assert send is not None and send["x"] >= 0 and send["x"] + send["width"] <= size["width"], send
        page.fill("#author", "ada" if name == "chat" else "bob")
        page.fill("#text", f"hello from {size['width']} px")
        page.click("#send button")
        page.wait_for_selector(f"#log li:has-text('hello from {size['width']} px')")
        screenshot(page, name)
        page.context.close()


def test_a_path_nothing_answers_shows_a_page_with_a_way_back(
        browser: Any, site: tuple[str, str], screenshot: Shot) -> None:
    base, token = site
    page = context(browser, base, token).new_page()
    response = page.goto(base + "/no-such-app/page")
    assert response is not None and response.status == 404
    assert page.inner_text("h1") == "Not found"
    screenshot(page, "404")
    page.click("nav a")
    page.wait_for_selector("text=Apps on this node")
    assert page.url == base + "/"
    page.context.close()


def test_logging_in_at_login_lands_on_the_app_list(browser: Any, site: tuple[str, str]) -> None:
    """It reloaded /login: the form again, as if the login had failed."""
    base, _ = site
    page = context(browser, base).new_page()
    page.goto(base + "/login")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Apps on this node")
    assert page.url == base + "/"
    assert page.locator("a[href='/hello:hello:sys/']").count() == 1
    page.context.close()


def test_the_login_limit_is_said_in_words(browser: Any, site: tuple[str, str], screenshot: Shot) -> None:
    """It showed "login failed (429)"."""
    base, _ = site
    page = context(browser, base, extra_http_headers={"X-Forwarded-For": ELSEWHERE}).new_page()
    page.goto(base + "/login")
    for attempt in range(3):
        page.fill("#password", f"wrong {attempt}")
        page.click("button[type=submit]")
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        if attempt < 2:
            assert page.inner_text("#error") == "wrong password"
            page.evaluate("document.getElementById('error').textContent = ''")
    message = page.inner_text("#error")
    assert message.startswith("Too many failed attempts from here. Try again in "), message
    screenshot(page, "login-rate-limited")
    page.context.close()
