"""The chat example in two real browsers: what one types, the other sees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from support.node import Node, free_port

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat" / "app.py"
PASSWORD = "chat pass"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chat() -> Iterator[tuple[str, str]]:
    node = Node('node = "chat.os"\n[[process]]\nid = "chat:chat:sys"\n'
                'capabilities = ["http-server:distro:sys"]\n')
    try:
        node.start("kernel")
        port = free_port()
        node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": PASSWORD})
        node.spawn("chat:chat:sys", f"import runpy, sys\nsys.argv = [{str(CHAT)!r}]\n"
                   f"runpy.run_path({str(CHAT)!r}, run_name='__main__')\n")
        node.wait_log("chat:chat:sys", "chat room ready")
        login = requests.post(f"http://localhost:{port}/login", json={"password": PASSWORD}, timeout=10)
        yield f"http://localhost:{port}", login.cookies["kinode-auth_chat.os"]
    finally:
        node.close()


def page_for(browser: Any, base: str, token: str, name: str) -> Any:
    context = browser.new_context()
    context.add_cookies([{"name": "kinode-auth_chat.os", "value": token, "url": base}])
    page = context.new_page()
    page.goto(base + "/chat:chat:sys/")
    page.wait_for_selector("#status:has-text('connected')")
    page.fill("#author", name)
    return page


def test_two_browsers_chat(browser: Any, chat: tuple[str, str]) -> None:
    base, token = chat
    alice = page_for(browser, base, token, "alice")
    bob = page_for(browser, base, token, "bob")
    alice.fill("#text", "hello from alice")
    alice.press("#text", "Enter")
    bob.wait_for_selector("#log li:has-text('hello from alice')")
    bob.fill("#text", "hi alice <b>not bold</b>")
    bob.press("#text", "Enter")
    alice.wait_for_selector("#log li:has-text('hi alice')")
    assert alice.locator("#log li b").all_inner_texts()[-1] == "bob:"
    assert "<b>not bold</b>" in alice.locator("#log li").all_inner_texts()[-1], "text, never HTML"
    # a third browser arriving later gets the history
    carol = page_for(browser, base, token, "carol")
    carol.wait_for_selector("#log li:has-text('hello from alice')")
    for p in (alice, bob, carol):
        p.context.close()


def test_chat_needs_login(chat: tuple[str, str]) -> None:
    base, _ = chat
    assert requests.get(base + "/chat:chat:sys/history", timeout=10).status_code == 401
