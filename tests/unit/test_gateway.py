"""The http-server's gateway in-process: a fake exchange for the client's side and a
fake stub for the kernel's, so each decision (route, auth, local_only, static content,
the 503/504/502 mapping, binding actions) is checked without sockets or processes.
The real path is tested in integration/test_http_server*.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from porch.http_server import actions
from porch.http_server.bindings import BindingTable
from porch.http_server.gateway import Gateway
from porch.http_server.settings import HttpServerSettings
from porch.process.message import Blob, Message, Offline, Timeout
from porch.wire import http_pb2
from support.http_fakes import FakeExchange, fake_auth

NODE = "gw.os"
APP = "app:pkg:pub.os"


class FakeProc:
    """The stub as the gateway uses it: requests become futures the test settles."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, http_pb2.HttpServerRequest, asyncio.Future[Message]]] = []
        self.forgotten: list[int] = []
        self.responses: list[tuple[Message, bytes]] = []
        self.offline = False
        self.connected = True

    def request_future(self, target: str, body: bytes, *, timeout: float, blob: Blob | None = None,
                       metadata: str | None = None) -> tuple[int, asyncio.Future[Message]]:
        if self.offline:
            raise Offline(target, 0, "kernel away")
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.sent.append((target, http_pb2.HttpServerRequest.FromString(body), fut))
        return len(self.sent), fut

    def forget(self, id_: int) -> None:
        self.forgotten.append(id_)

    def respond(self, to: Message, body: bytes = b"", **kw: Any) -> bool:
        self.responses.append((to, body))
        return True

    def __getattr__(self, name: str) -> Any:  # anything else the gateway may read
        raise AttributeError(name)


def http_answer(status: int, headers: list[tuple[str, str]], body: bytes) -> Message:
    reply = http_pb2.HttpResponse(status=status)
    for name, value in headers:
        reply.headers.add(name=name, value=value)
    return Message(1, APP, "http-server:distro:sys", False, reply.SerializeToString(), Blob(body))


@pytest.fixture
def bed() -> Iterator[tuple[Gateway, FakeProc, BindingTable, list[Any]]]:
    table = BindingTable()
    proc = FakeProc()
    auth = fake_auth(NODE)
    saved: list[Any] = []
    executor = ThreadPoolExecutor(1)
    gateway = Gateway(HttpServerSettings(), NODE, table, auth, proc, saved.append, executor)  # type: ignore[arg-type]
    try:
        yield gateway, proc, table, saved
    finally:
        executor.shutdown(wait=False)


def run(coro_fn: Callable[[], Any]) -> Any:
    async def main() -> Any:
        return await coro_fn()
    return asyncio.run(main())


def bind(table: BindingTable, path: str, *, authenticated: bool = False, local_only: bool = False) -> None:
    """As the app's Bind action would (the table's own path rules)."""
    action = http_pb2.HttpServerAction()
    action.bind.path = path
    action.bind.authenticated = authenticated
    action.bind.local_only = local_only
    table.bind_http(actions.plan_binding(APP, "bind", action, None))


def test_an_unbound_path_is_404_and_nothing_is_forwarded(bed: Any) -> None:
    gateway, proc, _, _ = bed
    ex = FakeExchange("GET", "/nobody:pkg:pub.os/x")
    gateway.dispatch(ex)
    assert ex.status == 404 and proc.sent == []


def test_a_public_path_is_forwarded_and_the_answer_mapped(bed: Any) -> None:
    gateway, proc, table, _ = bed
    bind(table, "/api/:id")

    async def main() -> FakeExchange:
        ex = FakeExchange("POST", f"/{APP}/api/42", query="a=1&a=2", body=b"in",
                          headers=[("Host", "localhost:8080"), ("X-Thing", "v"),
                                   ("Cookie", f"kinode-auth_{NODE}=secret; mine=1")])
        gateway.dispatch(ex)
        target, request, fut = proc.sent[0]
        incoming = request.http
        assert (target, incoming.method, incoming.url, incoming.bound_path) == (
            APP, "POST", f"http://localhost/{APP}/api/42", f"/{APP}/api/:id")
        assert dict(incoming.url_params) == {"id": "42"}
        assert [(q.name, q.value) for q in incoming.query_params] == [("a", "1"), ("a", "2")]
        headers = [(h.name, h.value) for h in incoming.headers]
        assert ("x-thing", "v") in headers
        assert ("cookie", "mine=1") in headers, "the node's login cookie is not the app's"
        assert incoming.source_socket_addr == "127.0.0.1:5000"
        fut.set_result(http_answer(201, [("X-A", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], b"out"))
        await asyncio.sleep(0)
        return ex

    ex = run(main)
    assert ex.status == 201 and ex.answer is not None and ex.answer[2] == b"out"
    assert [v for k, v in ex.answer[1] if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert gateway.pending() == 0


@pytest.mark.parametrize(("outcome", "status"), [
    (Offline(APP, 1, "never arrived"), 503),
    (Offline(APP, 1, "died", delivered=True), 502),
    (Timeout(APP, 1, "late"), 504),
])
def test_what_the_kernel_says_becomes_503_502_or_504(bed: Any, outcome: Exception, status: int) -> None:
    gateway, proc, table, _ = bed
    bind(table, "/")

    async def main() -> FakeExchange:
        ex = FakeExchange("GET", f"/{APP}/")
        gateway.dispatch(ex)
        proc.sent[0][2].set_exception(outcome)
        await asyncio.sleep(0)
        return ex

    assert run(main).status == status


@pytest.mark.parametrize("answer", [
    Message(1, APP, "x", False, b"\xff\xff garbage"),
    http_answer(99, [], b""),
    http_answer(200, [("X-Bad", "line\r\nInjected: 1")], b""),
    http_answer(200, [("Bad Name", "x")], b""),
])
def test_an_answer_http_cannot_carry_is_502(bed: Any, answer: Message) -> None:
    gateway, proc, table, _ = bed
    bind(table, "/")

    async def main() -> FakeExchange:
        ex = FakeExchange("GET", f"/{APP}/")
        gateway.dispatch(ex)
        proc.sent[0][2].set_result(answer)
        await asyncio.sleep(0)
        return ex

    assert run(main).status == 502


def test_a_kernel_that_is_away_is_503_at_once(bed: Any) -> None:
    gateway, proc, table, _ = bed
    bind(table, "/")
    proc.offline = True

    async def main() -> FakeExchange:
        ex = FakeExchange("GET", f"/{APP}/")
        gateway.dispatch(ex)
        return ex

    assert run(main).status == 503 and gateway.pending() == 0


def test_a_client_that_goes_away_makes_the_request_forgotten(bed: Any) -> None:
    gateway, proc, table, _ = bed
    bind(table, "/")

    async def main() -> None:
        ex = FakeExchange("GET", f"/{APP}/")
        gateway.dispatch(ex)
        assert ex.closed is not None
        ex.done = True  # the connection closed
        ex.closed()
        proc.sent[0][2].set_result(http_answer(200, [], b"late"))
        await asyncio.sleep(0)
        assert ex.answer is None

    run(main)
    assert proc.forgotten == [1] and gateway.pending() == 0


def test_an_authenticated_path_without_a_login(bed: Any) -> None:
    gateway, proc, table, _ = bed
    bind(table, "/", authenticated=True)
    api = FakeExchange("GET", f"/{APP}/", headers=[("Accept", "application/json")])
    gateway.dispatch(api)
    browser = FakeExchange("GET", f"/{APP}/", headers=[("Accept", "text/html")])
    gateway.dispatch(browser)
    assert api.status == 401 and browser.status == 200 and proc.sent == []
    assert browser.answer is not None and b"password" in browser.answer[2].lower()


def test_an_authenticated_path_with_a_login_is_forwarded_and_kept_private(bed: Any) -> None:
    gateway, proc, table, _ = bed
    bind(table, "/", authenticated=True)
    token = gateway.auth.issue()

    async def main() -> FakeExchange:
        ex = FakeExchange("GET", f"/{APP}/", headers=[("Cookie", f"kinode-auth_{NODE}={token}")])
        gateway.dispatch(ex)
        proc.sent[0][2].set_result(http_answer(200, [], b"mine"))
        await asyncio.sleep(0)
        return ex

    ex = run(main)
    assert ex.status == 200 and ex.got("Cache-Control") == "private, no-store"


@pytest.mark.parametrize(("peer", "headers"), [
    ("10.1.2.3", []),
    ("127.0.0.1", [("X-Forwarded-For", "10.1.2.3")]),
    ("127.0.0.1", [("Forwarded", "for=10.1.2.3")]),
])
def test_local_only_refuses_remote_and_proxied_clients(bed: Any, peer: str, headers: list[Any]) -> None:
    gateway, proc, table, _ = bed
    bind(table, "/", local_only=True)
    ex = FakeExchange("GET", f"/{APP}/", headers=headers, peer_ip=peer)
    gateway.dispatch(ex)
    assert ex.status == 403 and proc.sent == []


def test_static_content_is_served_with_its_etag_and_304_when_unchanged(bed: Any) -> None:
    gateway, proc, table, _ = bed
    action = http_pb2.HttpServerAction()
    action.bind.path = "/page"
    action.bind.authenticated = False
    action.bind.cache = True
    table.bind_http(actions.plan_binding(APP, "bind", action, Blob(b"<p>hi</p>", "text/html")))
    ex = FakeExchange("GET", f"/{APP}/page")
    gateway.dispatch(ex)
    assert ex.status == 200 and ex.answer is not None and ex.answer[2] == b"<p>hi</p>"
    etag = ex.got("ETag")
    assert etag and ex.got("X-Content-Type-Options") == "nosniff"
    again = FakeExchange("GET", f"/{APP}/page", headers=[("If-None-Match", etag)])
    gateway.dispatch(again)
    assert again.status == 304 and proc.sent == []


def action_message(source: str, action: http_pb2.HttpServerAction, blob: Blob | None = None) -> Message:
    return Message(7, source, "http-server:distro:sys", True, action.SerializeToString(), blob,
                   expects_response=True)


def result(body: bytes) -> str:
    r = http_pb2.HttpServerResult.FromString(body)
    return "ok" if r.WhichOneof("result") == "ok" else http_pb2.HttpServerError.Kind.Name(r.err.kind)


def test_a_bind_is_saved_then_applied_then_acknowledged(bed: Any) -> None:
    gateway, proc, table, saved = bed
    action = http_pb2.HttpServerAction()
    action.bind.path = "/x"
    gateway.on_message(action_message(APP, action))
    assert [b.path for b in saved] == [f"/{APP}/x"]
    assert table.resolve_http(f"/{APP}/x") is not None
    assert result(proc.responses[-1][1]) == "ok"
    assert saved[0].authenticated, "a bind that says nothing needs login"


@pytest.mark.parametrize("source", ["http-server:distro:sys", "rpc:distro:sys", "http-client:distro:sys"])
def test_the_nodes_services_never_bind(bed: Any, source: str) -> None:
    gateway, proc, _, saved = bed
    action = http_pb2.HttpServerAction()
    action.bind.path = "/x"
    gateway.on_message(action_message(source, action))
    assert saved == [] and result(proc.responses[-1][1]) != "ok"


def test_garbage_actions_are_malformed(bed: Any) -> None:
    gateway, proc, _, saved = bed
    gateway.on_message(Message(8, APP, "http-server:distro:sys", True, b"\xff\xfe", None,
                               expects_response=True))
    assert saved == [] and result(proc.responses[-1][1]) == "MalformedRequest"
