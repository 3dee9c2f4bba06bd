"""What a new user's browser meets on a real node (kernel, http-server, an app), issue 14:
the 404 page (item 6), the app root's trailing-slash redirect (item 4), /our, /our.js
and /favicon.ico (Kinode parity, item 6), and the login limit's answers (item 6).
Each failed before the change: the 404 was empty, `/app` was served as is, the node
paths were 404 and the 429 was a line of text."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from support.node import Node, free_port

APP_SOURCE = (Path(__file__).parent.parent / "support" / "http_app.py").read_text()
NODE = "pages.os"
PASSWORD = "pages password"
HTML_ACCEPT = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
PAGE = "<!doctype html><title>ui</title><link rel=stylesheet href=style.css><h1>ui</h1>"


class Site:
    def __init__(self) -> None:
        grants = "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                         for pid in ("ui:ui:sys", "homepage:homepage:sys"))
        self.node = Node(f'node = "{NODE}"\n[http_server]\nlogin_attempts_per_minute = 2\n{grants}')
        self.port = free_port()
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": PASSWORD})
        self.base = f"http://127.0.0.1:{self.port}"

    def app(self, pid: str, bindings: list[dict[str, Any]]) -> None:
        self.node.spawn(pid, APP_SOURCE, BINDINGS=json.dumps(bindings))
        self.node.wait_log(pid, "READY")

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 10)
        kw.setdefault("allow_redirects", False)
        return requests.get(self.base + path, **kw)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    try:
        s.app("ui:ui:sys", [{"path": "/", "static": PAGE, "mime": "text/html"},
                            {"path": "/api"}])
        yield s
    finally:
        s.node.close()


def own_headers(r: requests.Response) -> bool:
    return (r.headers.get("X-Frame-Options") == "DENY"
            and r.headers.get("X-Content-Type-Options") == "nosniff"
            and "frame-ancestors 'none'" in r.headers.get("Content-Security-Policy", ""))


def test_an_unbound_path_shows_browsers_a_page_with_a_way_back(site: Site) -> None:
    """issue 14 item 6: an empty 404 made the browser show its own error page."""
    for path in ("/nope", "/ui:ui:sys.nope", "/a:b:c/x"):
        page = site.get(path, headers=HTML_ACCEPT)
        assert page.status_code == 404, path
        assert page.headers["Content-Type"].startswith("text/html")
        assert "Not found" in page.text and 'href="/"' in page.text, page.text
        assert own_headers(page), page.headers
    hostile = site.get("/<script>alert(1)</script>", headers=HTML_ACCEPT)
    assert hostile.status_code == 404 and "<script>alert" not in hostile.text
    api = site.get("/nope")  # no Accept: an API client keeps Kinode's empty 404
    assert (api.status_code, api.content) == (404, b"") and own_headers(api)


def test_an_app_root_without_its_slash_sends_browsers_to_it_with_the_slash(site: Site) -> None:
    """issue 14 item 4: at /ui:ui:sys the page's relative URL style.css resolved to
    /style.css (404); a browser is now sent to /ui:ui:sys/ (query kept)."""
    r = site.get("/ui:ui:sys", headers=HTML_ACCEPT)
    assert (r.status_code, r.headers["Location"]) == (301, "/ui:ui:sys/")
    r = site.get("/ui:ui:sys?x=1&y=%2F", headers=HTML_ACCEPT)
    assert (r.status_code, r.headers["Location"]) == (301, "/ui:ui:sys/?x=1&y=%2F")
    followed = site.get("/ui:ui:sys", headers=HTML_ACCEPT, allow_redirects=True)
    assert followed.status_code == 200 and followed.url.endswith("/ui:ui:sys/")
    assert "<h1>ui</h1>" in followed.text
    # what Kinode does for everyone else: the root binding itself, no redirect
    assert site.get("/ui:ui:sys").status_code == 200
    assert site.get("/ui:ui:sys/", headers=HTML_ACCEPT).status_code == 200
    posted = requests.post(site.base + "/ui:ui:sys", headers=HTML_ACCEPT, allow_redirects=False,
                           timeout=10)
    assert posted.status_code == 200 and json.loads(posted.text)["method"] == "POST"
    # only the bare root: other paths, and fallbacks to the root, are served as they are
    assert site.get("/ui:ui:sys/api", headers=HTML_ACCEPT).status_code == 200
    assert site.get("/ui:ui:sys/deep/link", headers=HTML_ACCEPT).status_code == 200


def test_our_and_our_js_name_the_node_and_the_icon_is_served(site: Site) -> None:
    """Kinode parity (docs/kinode.md §1.3, §8): its homepage serves the node's name at
    /our and /our.js, and "yes" at /amionline; and /favicon.ico, which every page asks
    for, was a 404 (item 6)."""
    our = site.get("/our")
    assert (our.status_code, our.text) == (200, NODE)
    assert our.headers["Content-Type"].startswith("text/plain") and own_headers(our)
    js = site.get("/our.js")
    assert js.status_code == 200 and js.headers["Content-Type"].startswith("application/javascript")
    assert js.text == f'window.our = {{}}; window.our.node = "{NODE}";'
    assert site.get("/amionline").text == "yes"
    icon = site.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg")
    assert requests.post(site.base + "/our", timeout=10).status_code == 404
    # the homepage's own /our wins, as in Kinode where the homepage is what serves it
    site.app("homepage:homepage:sys", [{"path": "/our", "static": "mine", "mime": "text/plain"}])
    assert site.get("/our").text == "mine"
    assert site.get("/our.js").status_code == 200


def login_from(site: Site, source: str, body: str, content_type: str) -> tuple[int, dict[str, str], str]:
    """POST /login from another loopback address: the limit counts per client, and this
    test must not hold back the address the other tests use."""
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", "/login", body=body, headers={"Content-Type": content_type,
                                                          "Accept": "text/html"})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


def test_the_login_limit_says_so_in_words(site: Site) -> None:
    """issue 14 item 6: a 429 was the text line "too many failed login attempts", which
    the login page's script showed as "login failed (429)", and a form without
    JavaScript left the browser on a bare text page."""
    source = "127.0.0.7"
    wrong = json.dumps({"password": "wrong"})
    codes = [login_from(site, source, wrong, "application/json")[0] for _ in range(3)]
    assert codes == [401, 401, 429]
    status, headers, body = login_from(site, source, wrong, "application/json")
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert headers["content-type"] == "application/json"
    assert "Too many failed attempts" in json.loads(body)["error"]
    status, headers, body = login_from(site, source, "password=wrong&redirect=%2Fui%3Aui%3Asys%2F",
                                       "application/x-www-form-urlencoded")
    assert status == 429 and headers["content-type"].startswith("text/html")
    assert "<form" in body and "Too many failed attempts" in body
    assert 'value="/ui:ui:sys/"' in body, "the form still leads back where the user was going"
