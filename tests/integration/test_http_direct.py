"""Direct HTTP (`HttpBindingConfig(direct=True)`, issue 12) on a real node: the first
request for such a binding goes through the kernel, and the http-server's worker
offers the app a link of its own; once the stub took it, that worker sends the
binding's requests on the link and reads the answers there, without the kernel.

Each test pins one rule an app author relies on, for the blocking stub (`HttpServer`)
and, where cheap, the asyncio one (`AsyncHttpServer`): a direct path answers exactly
as an ordinary one; requests bypass a stopped kernel; the app never sees the offer;
an app's death fails what is in flight on its link (502, at once) and a restarted
app gets a new link; the worker keeps the binding's deadline (504); a client leaving
disturbs nothing; an http-server restart, several workers and a kernel restart keep
direct requests working; an ordinary binding beside a direct one goes on as before;
auth and local_only hold; a blocking app's large answer leaves whole at once, even
when the app is busy with the next request or exits right after it.

The apps are ordinary porch apps answering with a JSON echo of what they were told
(and whether the message came on a link: `Message.via`); query parameters steer them
(do=sleep|reply|mirror|big|raise), and they print every message their handler does not
handle (the tests read their logs).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from porch.cli.procinfo import children
from support.node import SERVING, Node, free_port, running, stopped, wait_for

NODE = "hdirect.os"
PASSWORD = "direct http pass"
BLOCKING = "hblock:hdirect:pub.os"
ASYNC = "hasync:hdirect:pub.os"
VICTIM = "hvictim:hdirect:pub.os"
APPS = (BLOCKING, ASYNC, VICTIM)
MiB = 1024 * 1024
COOKIE = f"kinode-auth_{NODE}"

# What both apps do with a request. `state["direct"]` is set by the loop from the
# message (`via`: the link it came on) just before the handler runs.
COMMON = """
import base64
import json
import time

import porch
from porch.http.server import HttpBindingConfig, HttpResponse

def say(*words):
    print(*words, flush=True)

state = {"direct": False, "exit": False}

BINDINGS = [
    ("/d", HttpBindingConfig(authenticated=False, direct=True)),
    ("/p", HttpBindingConfig(authenticated=False)),
    ("/d/item/:id", HttpBindingConfig(authenticated=False, direct=True)),
    ("/p/item/:id", HttpBindingConfig(authenticated=False)),
    ("/slow", HttpBindingConfig(authenticated=False, timeout=1.0, direct=True)),
    ("/d3", HttpBindingConfig(authenticated=False, timeout=3.0, direct=True)),
    ("/p3", HttpBindingConfig(authenticated=False, timeout=3.0)),
    ("/da", HttpBindingConfig(authenticated=True, direct=True)),
    ("/dl", HttpBindingConfig(authenticated=False, local_only=True, direct=True)),
]

def handle(req):
    q = req.query_params
    do = q.get("do", "")
    if do == "sleep":
        say("sleeping", q.get("tag", ""))
        time.sleep(float(q["s"]))
    elif do == "reply":
        resp = HttpResponse(int(q.get("status", "200")))
        for name, value in req.query_list:
            if name == "h":
                hname, _, hvalue = value.partition(":")
                resp.header(hname, hvalue)
        return resp.body(q.get("body", ""))
    elif do == "mirror":
        return HttpResponse(200).header("Content-Type", "application/octet-stream").body(req.body)
    elif do == "raise":
        raise RuntimeError("the handler failed")
    elif do == "big":
        n = int(q["n"])
        state["exit"] = q.get("then") == "exit"
        if "pause" in q:
            say("pausing", q.get("tag", ""))
            time.sleep(float(q["pause"]))
        return HttpResponse(200).header("Content-Type", "application/octet-stream").body(
            (bytes(range(256)) * (n // 256 + 1))[:n])
    echo = {
        "method": req.method,
        "url": req.url,
        "bound_path": req.bound_path,
        "headers": req.headers.items(),
        "url_params": req.url_params,
        "query": req.query_list,
        "source_ip": (req.source_socket_addr or "").rsplit(":", 1)[0],
        "body": base64.b64encode(req.body).decode(),
        "direct": state["direct"],
    }
    return HttpResponse(200).header("Content-Type", "application/json").body(json.dumps(echo))

def filed(msg, handled):
    if msg.body[:1] == b"\\x2a":  # a DirectLink offer: the stub's, never the app's
        say("offer seen by the app")
    if not handled:
        say("unhandled", msg.source, msg.body[:16].hex())
"""

BLOCKING_APP = COMMON + """
import sys
from porch.http.server import HttpServer

proc = porch.Process()
server = HttpServer(proc)
for path, config in BINDINGS:
    server.bind_http_path(path, config)
say("READY")
while True:
    try:
        msg = proc.await_message()
    except porch.PorchError as exc:
        say("error", exc)
        continue
    state["direct"] = msg.via is not None
    filed(msg, server.handle_request(msg, handle))
    if state["exit"]:  # its answer given, the app ends (as a one-shot tool may)
        say("exiting")
        sys.exit(0)
"""

ASYNC_APP = COMMON + """
import asyncio
from porch.http.server import AsyncHttpServer

async def main():
    proc = await porch.AsyncProcess.connect()
    server = AsyncHttpServer(proc)

    def on_request(msg):
        state["direct"] = msg.via is not None
        filed(msg, server.handle_request(msg, handle))

    proc.on_request(on_request)
    for path, config in BINDINGS:
        await server.bind_http_path(path, config)
    say("READY")
    await asyncio.Event().wait()

asyncio.run(main())
"""

SOURCES = {BLOCKING: BLOCKING_APP, ASYNC: ASYNC_APP, VICTIM: BLOCKING_APP}


class Site:
    """A node (kernel, http-server) with the apps asked for."""

    def __init__(self, extra_settings: str = "") -> None:
        grants = "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                         for pid in APPS)
        self.node = Node(f'node = "{NODE}"\n[http_server]\n{extra_settings}' + grants)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self, *apps: str) -> None:
        self.node.start("kernel")
        self.node.start("http-server", "--port", str(self.port), env={"PORCH_PASSWORD": PASSWORD})
        for app in apps:
            self.spawn(app)
        for app in apps:
            self.node.wait_log(app, "READY", 30)

    def spawn(self, app: str) -> None:
        self.node.spawn(app, SOURCES[app])

    def get(self, path: str, **kw: Any) -> requests.Response:
        """A GET on a connection of its own (so that with several workers any may get it)."""
        kw.setdefault("timeout", 10)
        return requests.get(self.base + path, **kw)

    def kernel_pid(self) -> int:
        return self.node.procs["kernel"].pid

    def http_log(self) -> str:
        return self.node.log("http-server")

    def links_up(self, app: str) -> int:
        """Links to `app` taken and not closed (over every worker, this one's life)."""
        log = self.http_log()
        return log.count(f"direct link to {app} taken") - log.count(f"direct link to {app} closed")

    def taken(self, app: str) -> int:
        return self.http_log().count(f"direct link to {app} taken")

    def inflight(self) -> int:
        status = requests.get(self.base + "/http-server:distro:sys/status", timeout=10)
        assert status.status_code == 200, status.text
        return int(status.json()["inflight"])

    def serving(self) -> int:
        return self.http_log().count(SERVING)


@contextmanager
def site_of(*apps: str, extra_settings: str = "") -> Iterator[Site]:
    """A node of its own, stopped whatever happens (also when it fails to start)."""
    site = Site(extra_settings)
    try:
        site.start(*apps)
        yield site
    finally:
        site.node.close()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with site_of(BLOCKING, ASYNC) as s:
        yield s


def echo(r: requests.Response) -> dict[str, Any]:
    assert r.status_code == 200, (r.status_code, r.text)
    return dict(r.json())


def tagged(site: Site, path: str, tag: str) -> dict[str, Any]:
    """GET path?tag=<tag> and check the answer is this request's own (its tag echoed)."""
    got = echo(site.get(f"{path}?tag={tag}"))
    assert got["query"] == [["tag", tag]], "an answer paired with another request"
    return got


def linked(site: Site, app: str, links: int = 1, path: str = "/d", timeout: float = 20) -> None:
    """Make requests on `app`'s direct path until `links` links to it are up (the first
    request of each worker goes through the kernel and has the link offered)."""
    def up() -> bool:
        r = site.get(f"/{app}{path}")
        assert r.status_code == 200, (r.status_code, r.text)
        return site.links_up(app) >= links
    wait_for(up, timeout, 0.05, f"{links} direct link(s) to {app} taken")


def call(site: Site, method: str, target: str, headers: Sequence[tuple[str, str]] = (),
         body: bytes | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request on a fresh connection, repeated headers allowed (Host: 127.0.0.1
    unless given): (status, the response's headers in order without Date, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=20)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        if not any(name.lower() == "host" for name, _ in headers):
            conn.putheader("Host", "127.0.0.1")
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, [(k.lower(), v) for k, v in resp.getheaders() if k.lower() != "date"], data
    finally:
        conn.close()


def comparable(got: dict[str, Any]) -> dict[str, Any]:
    """An echo without what differs between /d and /p by design: the path, and whether
    it came on the link; the request id is checked apart."""
    out = dict(got)
    for key in ("url", "bound_path", "direct"):
        out.pop(key)
    out["headers"] = [h for h in got["headers"] if h[0] != "x-request-id"]
    return out


def request_ids(got: dict[str, Any]) -> list[str]:
    return [v for k, v in got["headers"] if k == "x-request-id"]


# ---------------------------------------------------------------------------- 1: the same answers


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_a_direct_path_answers_exactly_as_an_ordinary_one(site: Site, app: str) -> None:
    """Status, repeated response headers (Set-Cookie too), body bytes; what the app is
    told: method (an extension method too), repeated request headers, query and url
    params, the request body, one x-request-id of the node's (a client's is replaced):
    the same on /d (on the link, once it is up) as on /p (through the kernel)."""
    linked(site, app)
    d, p = f"/{app}/d", f"/{app}/p"
    sent = [("Host", "127.0.0.1"), ("X-Dup", "one"), ("X-Dup", "two"), ("X-Request-Id", "client's own"),
            ("Content-Type", "application/x-thing"), ("Cookie", f"{COOKIE}=not-the-app's; theirs=1")]
    ids: list[str] = []
    for method, body in (("GET", None), ("POST", b"\x00\x01body\xff"), ("PUT", b"put"), ("DELETE", None),
                         ("PATCH", b"{}"), ("OPTIONS", None), ("PROPFIND", b"<x/>")):
        query = "?a=1&a=2&q=a%20b+c&empty="
        got: dict[str, dict[str, Any]] = {}
        for which in (d, p):
            status, headers, data = call(site, method, which + query, sent, body)
            assert status == 200, (method, which, status, data)
            got[which] = json.loads(data)
        assert got[d]["direct"] is True and got[p]["direct"] is False
        assert comparable(got[d]) == comparable(got[p]), method
        assert got[d]["method"] == method
        assert [v for k, v in got[d]["headers"] if k == "x-dup"] == ["one", "two"]
        assert [v for k, v in got[d]["headers"] if k == "cookie"] == ["theirs=1"], "the node's cookie stripped"
        assert got[d]["query"] == [["a", "1"], ["a", "2"], ["q", "a b c"], ["empty", ""]]
        assert got[d]["url"] == f"http://127.0.0.1/{app}/d" and got[d]["bound_path"] == f"/{app}/d"
        assert got[d]["source_ip"] == "127.0.0.1"
        for which in (d, p):
            rid = request_ids(got[which])
            assert len(rid) == 1 and rid[0] and rid[0] != "client's own", rid
            ids.append(rid[0])
    assert len(set(ids)) == len(ids), "every request has an id of its own"
    # The same kind of id either way: the worker's prefix, then a counter.
    assert len({i[:8] for i in ids}) == 1, ids

    # url params (":id"), raw as on any binding
    for item in ("42", "%20x"):
        dd = echo(site.get(f"{d}/item/{item}"))
        pp = echo(site.get(f"{p}/item/{item}"))
        assert dd["direct"] is True
        assert dd["url_params"] == pp["url_params"] == {"id": item}
        assert dd["bound_path"] == f"/{app}/d/item/:id"

    # the app's answers: status, repeated headers, body
    for reply in ("do=reply&status=201&h=Set-Cookie:a%3D1&h=Set-Cookie:b%3D2&h=X-Multi:1&h=X-Multi:2&body=made",
                  "do=reply&status=404&body=nothing%20here",
                  "do=reply&status=204",
                  "do=reply&status=200&h=Content-Type:text/plain%3B%20charset%3Dutf-8&body=%C3%A9t%C3%A9"):
        a, b = call(site, "GET", f"{d}?{reply}"), call(site, "GET", f"{p}?{reply}")
        assert a == b, reply
        assert a[0] == int(reply.split("status=")[1].split("&")[0]), a
    for failing, status in (("do=raise", 500), ("do=reply&status=1000", 502)):
        a, b = call(site, "GET", f"{d}?{failing}"), call(site, "GET", f"{p}?{failing}")
        assert a[0] == b[0] == status, (failing, a, b)
        assert a[1] == b[1], failing
    status, headers, data = call(site, "GET", f"{d}?do=reply&status=201&h=Set-Cookie:a%3D1&h=Set-Cookie:b%3D2")
    assert (status, data) == (201, b"")
    assert [v for k, v in headers if k == "set-cookie"] == ["a=1", "b=2"]
    # HEAD: the same head, no body
    head = call(site, "HEAD", f"{d}?do=reply&status=200&h=X-A:1&body=sized")
    assert head == call(site, "HEAD", f"{p}?do=reply&status=200&h=X-A:1&body=sized")
    assert head[0] == 200 and ("content-length", "5") in head[1] and head[2] == b""


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_large_bodies_both_ways(site: Site, app: str) -> None:
    """A request body of a few MB reaches the app whole, an answer of a few MB reaches
    the client whole, on the link as through the kernel (where they travel as memfds)."""
    linked(site, app)
    payload = os.urandom(4 * MiB + 17)
    for which in ("d", "p"):
        r = requests.post(f"{site.base}/{app}/{which}?do=mirror", data=payload, timeout=30)
        assert r.status_code == 200 and r.content == payload, which
        n = 3 * MiB + 5
        r = site.get(f"/{app}/{which}?do=big&n={n}", timeout=30)
        assert r.status_code == 200 and r.content == (bytes(range(256)) * (n // 256 + 1))[:n], which
    got = echo(requests.post(f"{site.base}/{app}/d", data=b"z" * (2 * MiB), timeout=30))
    assert got["direct"] is True and base64.b64decode(got["body"]) == b"z" * (2 * MiB)


# ---------------------------------------------------------------------------- 2, 3, 9: the link


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_direct_requests_bypass_a_stopped_kernel(site: Site, app: str) -> None:
    """Once the link is taken, a SIGSTOPped kernel does not matter to a direct path:
    sequential and concurrent requests (on connections of their own) are answered,
    each with its own answer."""
    linked(site, app)
    with stopped(site.kernel_pid()):
        for i in range(30):
            assert tagged(site, f"/{app}/d", f"seq{i}")["direct"] is True
        assert echo(site.get(f"/{app}/d/item/7"))["url_params"] == {"id": "7"}
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: tagged(site, f"/{app}/d", f"conc{i}"), range(64)))
        assert all(r["direct"] for r in results)
    assert echo(site.get(f"/{app}/p"))["direct"] is False, "the kernel works again"


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_the_app_never_sees_the_offer(site: Site, app: str) -> None:
    """The DirectLink offer is the stub's: it was made (the link is taken), and the
    app's loop was handed nothing its handler does not handle."""
    linked(site, app)
    for i in range(5):
        tagged(site, f"/{app}/d", f"after{i}")
    log = site.node.log(app)
    assert "offer seen by the app" not in log
    assert "unhandled" not in log


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_an_ordinary_binding_beside_a_direct_one_goes_through_the_kernel(site: Site, app: str) -> None:
    """The same app's non-direct bindings keep coming through the kernel (never on the
    link) and keep working, interleaved with direct ones."""
    linked(site, app)
    for i in range(10):
        assert tagged(site, f"/{app}/p", f"p{i}")["direct"] is False
        assert tagged(site, f"/{app}/d", f"d{i}")["direct"] is True
        assert echo(site.get(f"/{app}/p/item/{i}"))["direct"] is False


def test_auth_and_local_only_hold_on_a_direct_binding(site: Site) -> None:
    """The worker checks a direct binding as any other before it uses the link:
    authenticated=True without the cookie is 401 (with it the request goes on the link
    and the app does not see the node's cookie), local_only refuses a proxied request."""
    linked(site, BLOCKING)
    assert site.get(f"/{BLOCKING}/da").status_code == 401
    login = requests.post(f"{site.base}/login", json={"password": PASSWORD}, timeout=10)
    assert login.status_code == 200, login.text
    got = echo(site.get(f"/{BLOCKING}/da", cookies={COOKIE: login.cookies[COOKIE], "theirs": "1"}))
    assert got["direct"] is True
    assert [v for k, v in got["headers"] if k == "cookie"] == ["theirs=1"]
    assert site.get(f"/{BLOCKING}/dl", headers={"X-Forwarded-For": "1.2.3.4"}).status_code == 403
    assert echo(site.get(f"/{BLOCKING}/dl"))["direct"] is True


# ---------------------------------------------------------------------------- 5, 6: deadline, clients leaving


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_a_handler_slower_than_the_binding_timeout_is_504(site: Site, app: str) -> None:
    """timeout=1.0 on a direct binding: the worker keeps the deadline itself (504 in
    about a second, not the node's 15 s), the late answer is dropped, and the next
    requests get their own answers."""
    linked(site, app)
    linked(site, app, path="/slow")  # the same link serves every direct binding of the app
    assert echo(site.get(f"/{app}/slow"))["direct"] is True
    started = time.monotonic()
    r = site.get(f"/{app}/slow?do=sleep&s=2.5&tag=late")
    assert r.status_code == 504, (r.status_code, r.text)
    assert time.monotonic() - started < 6, "the binding's 1 s deadline, not the node's 15 s"
    assert tagged(site, f"/{app}/d", "next")["direct"] is True  # answered once the app is awake
    assert tagged(site, f"/{app}/slow", "quick")["direct"] is True
    assert site.links_up(app) == 1, "a deadline does not end the link"


@pytest.mark.parametrize("app", [BLOCKING, ASYNC])
def test_clients_leaving_mid_request_disturb_nothing(site: Site, app: str) -> None:
    """A client that closes its connection while its request is in the app (and many
    that close at once after sending) leave no request counted in flight, and the
    next requests get their own answers on the same link."""
    linked(site, app)
    taken = site.taken(app)
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as s:
        s.sendall(f"GET /{app}/d?do=sleep&s=1&tag=left HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        wait_for(lambda: "sleeping left" in site.node.log(app), 10, what="the request in the app")
    for i in range(20):
        with socket.create_connection(("127.0.0.1", site.port), timeout=10) as s:
            s.sendall(f"GET /{app}/d?tag=gone{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as s:  # a body never finished
        s.sendall(f"POST /{app}/d HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\npartial".encode())
    wait_for(lambda: site.inflight() == 0, 10, what="nothing in flight")
    for i in range(10):
        assert tagged(site, f"/{app}/d", f"after{i}")["direct"] is True
    assert site.taken(app) == taken and site.links_up(app) == 1, "the same link throughout"
    assert site.inflight() == 0
    assert "Traceback" not in site.http_log()


# ---------------------------------------------------------------------------- 4: the app dies


def test_kill_9_of_the_app_fails_its_link_requests_502_and_a_restart_links_again(site: Site) -> None:
    """The app dies (kill -9) with requests in flight on its link (one in its handler,
    others queued behind it): each gets 502 at once, not a hang nor a 504. Restarted,
    the app is served through the kernel, is offered a new link and takes it."""
    site.spawn(VICTIM)
    try:
        site.node.wait_log(VICTIM, "READY", 30)
        linked(site, VICTIM)
        taken = site.taken(VICTIM)
        results: dict[int, tuple[int, float]] = {}

        def slow(i: int) -> None:
            r = site.get(f"/{VICTIM}/d?do=sleep&s=30&tag=s{i}", timeout=25)
            results[i] = (r.status_code, time.monotonic())

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: "sleeping s" in site.node.log(VICTIM), 10, what="a request in the app")
        wait_for(lambda: site.inflight() >= 4, 10, what="four requests in flight")
        killed = time.monotonic()
        site.node.kill(VICTIM)
        for t in threads:
            t.join(20)
        assert sorted(code for code, _ in results.values()) == [502] * 4, results
        assert max(at for _, at in results.values()) - killed < 5, "502 at once, not at a deadline"
        wait_for(lambda: site.links_up(VICTIM) == 0, 5, what="the link closed")
        assert site.get(f"/{VICTIM}/p").status_code == 503, "not running (through the kernel)"

        site.spawn(VICTIM)
        site.node.wait_log(VICTIM, "READY", 30)
        first = echo(site.get(f"/{VICTIM}/d?tag=first"))
        assert first["direct"] is False, "the first request after a restart comes through the kernel"
        wait_for(lambda: site.taken(VICTIM) > taken, 10, what="a new link taken")
        linked(site, VICTIM)
        with stopped(site.kernel_pid()):
            for i in range(10):
                assert tagged(site, f"/{VICTIM}/d", f"again{i}")["direct"] is True
    finally:
        if site.node.procs[VICTIM].poll() is None:
            site.node.kill(VICTIM)


def test_a_large_answer_is_not_held_back_by_the_next_handler(site: Site) -> None:
    """The blocking app answers a 4 MiB request well within its binding's timeout (3 s),
    then spends 4 s on the next request (already waiting on the link): the answer given
    reaches the client, as it does through the kernel (/p3, checked first)."""
    linked(site, BLOCKING)
    for which in ("p3", "d3"):
        got: dict[str, requests.Response] = {}

        def large(which: str = which, got: dict[str, requests.Response] = got) -> None:
            target = f"/{BLOCKING}/{which}?do=big&n={4 * MiB}&pause=0.5&tag=large-{which}"
            got["r"] = site.get(target, timeout=30)

        t = threading.Thread(target=large)
        t.start()
        try:
            site.node.wait_log(BLOCKING, f"pausing large-{which}", 10)
            assert echo(site.get(f"/{BLOCKING}/d?do=sleep&s=4&tag=next-{which}", timeout=30))["direct"]
        finally:
            t.join(30)
        r = got["r"]
        assert (r.status_code, len(r.content)) == (200, 4 * MiB), (which, r.status_code, r.text)


def test_an_answer_given_just_before_the_app_exits_still_leaves(site: Site) -> None:
    """An app that answers and exits at once (a one-shot tool, say): the answer
    arrives whole, as through the kernel (checked first, /p)."""
    try:
        for which in ("p", "d"):
            site.spawn(VICTIM)
            site.node.wait_log(VICTIM, "READY", 30)
            linked(site, VICTIM)
            r = site.get(f"/{VICTIM}/{which}?do=big&n={4 * MiB}&then=exit", timeout=30)
            site.node.procs[VICTIM].wait(10)
            assert (r.status_code, len(r.content)) == (200, 4 * MiB), (which, r.status_code, r.text)
    finally:
        if site.node.procs[VICTIM].poll() is None:
            site.node.kill(VICTIM)


# ---------------------------------------------------------------------------- 7, 10: restarts


def sighup_restart(site: Site) -> None:
    """A graceful restart of the http-server: a new worker serves, the old one is gone."""
    old = children(site.node.procs["http-server"].pid)
    served = site.serving()
    site.node.procs["http-server"].send_signal(signal.SIGHUP)
    wait_for(lambda: site.serving() > served, 30, what="the new worker serving")
    wait_for(lambda: not any(running(pid) for pid in old), 30, what="the old worker gone")


def test_an_http_server_restart_keeps_direct_requests_working_and_links_again() -> None:
    """SIGHUP to the keeper while a client makes direct requests: every one is answered
    (by the old worker, through its link, or by the new one), and the new worker offers
    a link of its own that the app takes (then it bypasses a stopped kernel)."""
    with site_of(BLOCKING) as site:
        linked(site, BLOCKING)
        taken = site.taken(BLOCKING)
        codes: list[int] = []
        done = threading.Event()

        def client() -> None:
            i = 0
            while not done.is_set():
                r = site.get(f"/{BLOCKING}/d?tag=r{i}")
                codes.append(r.status_code)
                if r.status_code == 200:
                    assert r.json()["query"] == [["tag", f"r{i}"]]
                i += 1

        t = threading.Thread(target=client)
        t.start()
        slow: dict[str, requests.Response] = {}
        in_flight = threading.Thread(target=lambda: slow.setdefault(
            "r", site.get(f"/{BLOCKING}/d?do=sleep&s=1.5&tag=inflight", timeout=30)))
        in_flight.start()
        try:
            wait_for(lambda: "sleeping inflight" in site.node.log(BLOCKING), 10, what="a request in the app")
            sighup_restart(site)
            wait_for(lambda: site.taken(BLOCKING) > taken, 20, what="a link taken by the new worker")
        finally:
            done.set()
            t.join(20)
            in_flight.join(30)
        assert codes and set(codes) == {200}, codes
        assert ["tag", "inflight"] in echo(slow["r"])["query"], "the old worker answered it before it went"
        assert site.links_up(BLOCKING) == 1, "the old worker's link closed, the new one's is up"
        with stopped(site.kernel_pid()):
            for i in range(10):
                assert tagged(site, f"/{BLOCKING}/d", f"new{i}")["direct"] is True


def test_a_kernel_restart_does_not_break_direct_requests() -> None:
    """kill -9 of the kernel with the link up: direct requests are answered while there
    is no kernel at all; once it is back (and everyone re-registered) both kinds of
    binding work, and direct ones still bypass it."""
    with site_of(BLOCKING) as site:
        linked(site, BLOCKING)
        re_registered = site.http_log().count("http-server:distro:sys: re-registered")
        site.node.kill("kernel")
        for i in range(20):
            assert tagged(site, f"/{BLOCKING}/d", f"nokernel{i}")["direct"] is True
        site.node.start("kernel")
        wait_for(lambda: site.http_log().count("http-server:distro:sys: re-registered") > re_registered, 30,
                 what="the http-server on the new kernel")
        wait_for(lambda: site.get(f"/{BLOCKING}/p").status_code == 200, 30, 0.2,
                 what="the app on the new kernel")
        assert tagged(site, f"/{BLOCKING}/p", "plain")["direct"] is False
        linked(site, BLOCKING)
        with stopped(site.kernel_pid()):
            for i in range(10):
                assert tagged(site, f"/{BLOCKING}/d", f"after{i}")["direct"] is True


# ---------------------------------------------------------------------------- 8: several workers


def test_each_of_several_workers_takes_a_link() -> None:
    """With [http_server] workers = 2 each worker offers its own link (two links up at
    once: a worker holds at most one per app), and requests over many connections,
    whichever worker accepts them, are answered with the kernel stopped."""
    with site_of(BLOCKING, ASYNC, extra_settings="workers = 2\n") as site:
        wait_for(lambda: site.serving() >= 2, 30, what="two workers serving")
        for app in (BLOCKING, ASYNC):
            def both_up(app: str = app) -> bool:
                with ThreadPoolExecutor(8) as pool:
                    codes = list(pool.map(lambda _: site.get(f"/{app}/d").status_code, range(16)))
                assert set(codes) == {200}, codes
                return site.links_up(app) >= 2
            wait_for(both_up, 30, 0.05, f"both workers' links to {app}")
            assert site.links_up(app) == 2
        with stopped(site.kernel_pid()):
            for app in (BLOCKING, ASYNC):
                with ThreadPoolExecutor(8) as pool:
                    results = list(pool.map(lambda i, app=app: tagged(site, f"/{app}/d", f"w{i}"), range(48)))
                assert all(r["direct"] for r in results)

