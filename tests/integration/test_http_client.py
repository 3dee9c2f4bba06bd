"""The http-client service with real processes: a kernel, the real http-client, callers
linking the stub, and a real Tornado HTTP + WebSocket server on loopback.

docs/kinode.md §12 items 51-58 (adapted to the protobuf wire), plus porch's own
promises: deadlines enforced on the request itself, a response-size cap, an outgoing
policy, WebSocket channels without cross-talk or stale closes, a bounded send queue per
WebSocket, and kill -9 recovery (openers of lost WebSockets are told when it returns).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import porch
from porch.http.client import (
    HttpClientError,
    HttpResponse,
    WsClose,
    WsPush,
    close_ws_connection,
    close_ws_connection_async,
    http_action,
    open_ws_connection,
    open_ws_connection_async,
    parse_response,
    parse_ws_message,
    send_request,
    send_request_await_response,
    send_request_await_response_async,
    send_ws_client_push,
    ws_close_action,
    ws_open_action,
    ws_push_action,
)
from porch.wire import http_pb2
from support.http_test_server import GreetServer, StalledServer, TestServer, pattern
from support.node import Node, free_port, wait_for

CLIENT = porch.HTTP_CLIENT
CAP = 'capabilities = ["http-client:distro:sys"]\n'
CALLERS = ("caller:demo:sys", "other:demo:sys", "opener:demo:sys", "async:demo:sys")
MAX_BYTES = 1_000_000


def config(http_client: str = "") -> str:
    text = 'node = "test.os"\n'
    for pid in CALLERS:
        text += f'[[process]]\nid = "{pid}"\ncommand = "true"\n{CAP}'
    return text + "[http_client]\n" + http_client


WS_MAX = 65536
WS_QUEUE = 256 * 1024
SHARED = config(f'max_response_bytes = {MAX_BYTES}\nworkers = 6\nws_max_message_bytes = {WS_MAX}\n'
                f'ws_send_queue_bytes = {WS_QUEUE}\n'
                'deny_hosts = ["denied.test", "*.denied.test", "localhost"]\n')
RECORD = "http-client-ws.json"


@pytest.fixture(scope="module")
def server() -> Iterator[TestServer]:
    srv = TestServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    n = Node(SHARED)
    try:
        n.start("kernel")
        n.start("http-client")
        yield n
    finally:
        n.close()


def _drain(proc: porch.Process) -> None:
    """Forget what earlier tests left in the inbox (late frames, acks)."""
    while True:
        try:
            proc.await_message(timeout=0)
        except porch.Timeout as exc:
            if exc.id == 0:
                return
        except porch.SendError:
            continue


@pytest.fixture(scope="module")
def _callers(node: Node) -> dict[str, porch.Process]:
    return {pid: node.process(pid) for pid in ("caller:demo:sys", "other:demo:sys")}


@pytest.fixture
def caller(_callers: dict[str, porch.Process]) -> porch.Process:
    proc = _callers["caller:demo:sys"]
    _drain(proc)
    return proc


@pytest.fixture
def other(_callers: dict[str, porch.Process]) -> porch.Process:
    proc = _callers["other:demo:sys"]
    _drain(proc)
    return proc


def get(proc: porch.Process, url: str) -> HttpResponse:
    return send_request_await_response(proc, "GET", url, timeout=10)


def error_of(proc: porch.Process, method: str, url: str, timeout: float = 10) -> HttpClientError:
    with pytest.raises(HttpClientError) as err:
        send_request_await_response(proc, method, url, timeout=timeout)
    return err.value


def raw_result(proc: porch.Process, body: bytes, blob: bytes | None = None,
               timeout: float = 5) -> tuple[http_pb2.HttpClientResult, porch.Message]:
    msg = proc.send_and_await_response(CLIENT, body, blob=blob, timeout=timeout)
    return http_pb2.HttpClientResult.FromString(msg.body), msg


def next_ws(proc: porch.Process, timeout: float = 5) -> tuple[WsPush | WsClose, porch.Message]:
    msg = proc.await_message(timeout=timeout)
    parsed = parse_ws_message(msg)
    assert parsed is not None, f"not a WebSocket message: {msg}"
    return parsed, msg


def no_message(proc: porch.Process, within: float) -> None:
    with pytest.raises(porch.Timeout):
        msg = proc.await_message(timeout=within)
        pytest.fail(f"unexpected message {parse_ws_message(msg) or msg}")


def echo(resp: HttpResponse) -> dict[str, object]:
    assert resp.status == 200, resp
    data: dict[str, object] = json.loads(resp.body)
    return data


# ------------------------------------------------------------------------------ HTTP


def test_get_answers_status_pascal_case_headers_and_body(node: Node, server: TestServer,
                                                         caller: porch.Process) -> None:
    """docs/kinode.md §12 item 51: Ok(Http{status, headers}) with Pascal-Case names, the body as blob."""
    msg = caller.send_and_await_response(CLIENT, http_action("GET", server.url("/hello")), timeout=5)
    result = http_pb2.HttpClientResult.FromString(msg.body)
    assert result.WhichOneof("result") == "ok"
    assert result.ok.http.status == 200
    names = [h.name for h in result.ok.http.headers]
    assert "Content-Type" in names and "Content-Length" in names
    assert all(n == "-".join(w.capitalize() for w in n.split("-")) for n in names)
    assert msg.blob is not None and msg.blob.bytes == b"hello"
    resp = parse_response(msg)
    assert resp.headers.get("content-type", "").startswith("text/html")
    assert resp.headers["CONTENT-LENGTH"] == "5"


@pytest.mark.parametrize("status", [404, 500, 418, 204])
def test_error_statuses_are_answers_not_errors(server: TestServer, caller: porch.Process,
                                               status: int) -> None:
    """docs/kinode.md §12 item 52."""
    resp = get(caller, server.url(f"/status/{status}"))
    assert resp.status == status
    assert resp.body == (b"" if status == 204 else f"status {status}".encode())


def test_request_validation_errors(server: TestServer, caller: porch.Process) -> None:
    """docs/kinode.md §12 item 53, in Kinode's order, with Kinode's variant fields."""
    err = error_of(caller, "GET", "not a url")
    assert (err.kind, err.url) == ("BadUrl", "not a url")
    err = error_of(caller, "G ET", server.url("/echo"))
    assert (err.kind, err.method) == ("BadMethod", "G ET")
    err = error_of(caller, "", server.url("/echo"))
    assert err.kind == "BadMethod"
    result, _ = raw_result(caller, http_action("GET", server.url("/echo"), version="HTTP/4"))
    assert http_pb2.HttpClientError.Kind.Name(result.err.kind) == "BadVersion"
    assert result.err.version == "HTTP/4"
    result, _ = raw_result(caller, http_action("GET", server.url("/echo"), version="HTTP/1.1"))
    assert result.ok.http.status == 200
    assert error_of(caller, "GET", "mailto:someone@example.com").kind == "BuildRequestFailed"
    assert error_of(caller, "GET", "ftp://127.0.0.1/x").kind == "ExecuteRequestFailed"
    assert error_of(caller, "GET", "http://[::1").kind == "BadUrl"
    refused = error_of(caller, "GET", f"http://127.0.0.1:{free_port()}/")
    assert refused.kind == "ExecuteRequestFailed"
    assert "refused" in refused.message.lower()


def test_methods_query_strings_and_binary_bodies(server: TestServer, caller: porch.Process) -> None:
    body = bytes(range(256)) * 64
    for method in ("POST", "PUT", "PATCH", "DELETE", "FOO", "get"):
        data = echo(send_request_await_response(
            caller, method, server.url("/echo/p%20q?a=1&a=2&b=x%2By&c="), body=body, timeout=10))
        assert data["method"] == method  # extension and lower-case methods go out as given
        assert data["path"] == "/echo/p%20q"
        assert data["query"] == "a=1&a=2&b=x%2By&c="
        assert data["args"] == [["a", "1"], ["a", "2"], ["b", "x+y"], ["c", ""]]
        assert bytes.fromhex(str(data["body"])) == body
    data = echo(get(caller, server.url("/echo")))
    assert data["body"] == ""
    assert ["Accept", "*/*"] in data["headers"]  # type: ignore[operator]


def test_repeated_request_headers_arrive_as_separate_lines(server: TestServer, caller: porch.Process) -> None:
    """The wire keeps repeats; so does the request on the network (the server records
    every header line): nothing is folded, nothing lost."""
    headers = [("X-Rep", "one"), ("X-Other", "o"), ("X-Rep", "two, still two"),
               ("Bad Name", "skipped"), ("X-Injected", "a\r\nEvil: 1"), ("X-Utf8", "caf\u00e9"),
               ("Accept", "text/plain"), ("Content-Length", "999")]
    data = echo(send_request_await_response(caller, "POST", server.url("/echo"), headers=headers,
                                            body=b"12345", timeout=10))
    lines = [tuple(h) for h in data["headers"]]  # type: ignore[attr-defined]
    assert [v for n, v in lines if n == "X-Rep"] == ["one", "two, still two"]
    assert ("X-Other", "o") in lines
    names = {n for n, _ in lines}
    assert "Bad Name" not in names and "X-Injected" not in names and "Evil" not in names
    assert ("Accept", "text/plain") in lines and ("Accept", "*/*") not in lines
    assert ("Content-Length", "5") in lines  # framing comes from the blob, not the caller
    utf8 = next(v for n, v in lines if n == "X-Utf8")
    assert utf8.encode("latin-1").decode("utf-8") == "caf\u00e9"


def test_repeated_response_headers_are_kept(server: TestServer, caller: porch.Process) -> None:
    resp = get(caller, server.url("/headers"))
    assert resp.headers.get_all("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert resp.headers.get_all("X-Multi") == ["one", "two"]
    assert resp.headers["X-Unicode"] == "caf\u00e9"


def test_redirects_are_followed_up_to_the_limit(server: TestServer, caller: porch.Process) -> None:
    resp = get(caller, server.url("/redirect/10"))
    assert (resp.status, resp.body) == (200, b"redirected")
    err = error_of(caller, "GET", server.url("/redirect/11"))
    assert err.kind == "ExecuteRequestFailed" and "too many redirects" in err.message


def test_redirect_methods_bodies_and_credentials(server: TestServer, caller: porch.Process) -> None:
    from urllib.parse import quote

    def to(url: str, status: int) -> str:
        return server.url(f"/redirect-to?status={status}&url={quote(url, safe='')}")

    auth = [("Authorization", "Bearer secret"), ("X-Keep", "1")]
    data = echo(send_request_await_response(caller, "POST", to("/echo/307", 307), headers=auth,
                                            body=b"payload", timeout=10))
    assert (data["method"], data["path"], data["body"]) == ("POST", "/echo/307", b"payload".hex())
    assert ["Authorization", "Bearer secret"] in data["headers"]  # type: ignore[operator]
    data = echo(send_request_await_response(caller, "POST", to("/echo/302", 302), body=b"payload",
                                            timeout=10))
    assert (data["method"], data["body"]) == ("GET", "")
    other = TestServer().start()
    try:
        data = echo(send_request_await_response(caller, "GET", to(other.url("/echo/x"), 302),
                                                headers=auth, timeout=10))
        names = [h[0] for h in data["headers"]]  # type: ignore[attr-defined]
        assert "Authorization" not in names, "credentials must not follow to another origin"
        assert "X-Keep" in names
    finally:
        other.stop()


def test_body_is_not_decompressed(server: TestServer, caller: porch.Process) -> None:
    """As Kinode (reqwest without compression): the bytes match Content-Encoding."""
    resp = get(caller, server.url("/gzip"))
    assert resp.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(resp.body) == b"compressed " * 100


def test_response_size_cap(server: TestServer, caller: porch.Process) -> None:
    resp = get(caller, server.url(f"/bytes/{MAX_BYTES}"))
    assert resp.body == pattern(MAX_BYTES)
    resp = get(caller, server.url(f"/bytes/{MAX_BYTES}?chunked=1"))
    assert resp.body == pattern(MAX_BYTES)
    for path in (f"/bytes/{MAX_BYTES + 1}", f"/bytes/{3 * MAX_BYTES}?chunked=1"):
        err = error_of(caller, "GET", server.url(path))
        assert err.kind == "ResponseTooLarge", path
        assert err.url == server.url(path)
    assert get(caller, server.url("/hello")).body == b"hello"  # the client is fine after


def test_slow_remote_times_out_while_others_are_answered(server: TestServer, caller: porch.Process) -> None:
    """docs/kinode.md §12 item 54, and porch's promise: a slow remote holds one worker, never the others."""
    slow = [send_request(caller, "GET", server.url("/delay/10"), timeout=2.0) for _ in range(3)]
    started = time.monotonic()
    for _ in range(5):
        assert get(caller, server.url("/hello")).body == b"hello"
    assert time.monotonic() - started < 1.8, "fast requests waited for the slow ones"
    failed = []
    for _ in slow:
        with pytest.raises(porch.Timeout) as err:
            caller.await_message(timeout=10)
        failed.append(err.value.id)
    assert sorted(failed) == sorted(slow)
    err2 = error_of(caller, "GET", server.url("/delay/10"), timeout=0.5)
    assert err2.kind == "Timeout" and isinstance(err2.send_error, porch.Timeout)


def test_trickling_body_is_abandoned_at_the_deadline(server: TestServer, caller: porch.Process) -> None:
    """Headers at once, then a byte every 0.1 s for 10 s: no socket timeout ever fires,
    yet the http-client must let go at the caller's deadline (Kinode keeps reading)."""
    before = len(server.state.drips_cut)
    err = error_of(caller, "GET", server.url("/drip?n=100&interval=0.1"), timeout=1.0)
    assert err.kind == "Timeout"
    cut = wait_for(lambda: server.state.drips_cut[before:], 5, what="the client to drop the drip")
    assert cut[0] < 4.0, f"connection held {cut[0]:.1f} s past a 1 s deadline"


def test_policy_denies_hosts_before_and_after_redirects(server: TestServer, caller: porch.Process) -> None:
    for url in ("http://denied.test/", "https://api.denied.test/x", f"http://localhost:{server.port}/echo"):
        err = error_of(caller, "GET", url)
        assert (err.kind, err.url) == ("Denied", url)
        assert "deny_hosts" in err.message
    before = server.state.requests
    from urllib.parse import quote
    hop = server.url("/redirect-to?url=" + quote(f"http://localhost:{server.port}/echo", safe=""))
    err = error_of(caller, "GET", hop)
    assert err.kind == "Denied"
    assert server.state.requests == before, "the denied hop must not be requested"


def test_malformed_action(caller: porch.Process) -> None:
    """docs/kinode.md §12 item 55: answered only when a response is expected."""
    result, _ = raw_result(caller, b"\xff\xff not protobuf")
    assert http_pb2.HttpClientError.Kind.Name(result.err.kind) == "MalformedRequest"
    result, _ = raw_result(caller, b"")  # decodes, but no action
    assert http_pb2.HttpClientError.Kind.Name(result.err.kind) == "MalformedRequest"
    caller.send_request(CLIENT, b"\xff\xff not protobuf")
    no_message(caller, 0.5)


def test_fire_and_forget_request_is_made_and_not_answered(server: TestServer, caller: porch.Process) -> None:
    before = server.state.requests
    send_request(caller, "POST", server.url("/echo/ff"), body=b"x")
    wait_for(lambda: server.state.requests > before, 5, what="the fire-and-forget request")
    no_message(caller, 0.3)


def test_capability_is_required(node: Node, server: TestServer) -> None:
    stranger = node.process("stranger:demo:sys")
    with pytest.raises(HttpClientError) as err:
        send_request_await_response(stranger, "GET", server.url("/hello"), timeout=2)
    assert err.value.kind == "NoCapability"


def test_async_helpers_many_in_flight(node: Node, server: TestServer) -> None:
    async def run() -> None:
        proc = await porch.AsyncProcess.connect("async:demo:sys", home=node.home.root)
        try:
            resps = await asyncio.gather(*(
                send_request_await_response_async(proc, "GET", server.url(f"/echo?i={i}"), timeout=10)
                for i in range(40)))
            assert [json.loads(r.body)["query"] for r in resps] == [f"i={i}" for i in range(40)]
            await open_ws_connection_async(proc, server.ws_url("/ws"), channel_id=3)
            await close_ws_connection_async(proc, 3)
            with pytest.raises(HttpClientError) as err:
                await close_ws_connection_async(proc, 3)
            assert (err.value.kind, err.value.channel_id) == ("WsCloseFailed", 3)
        finally:
            proc.close()

    run_in_thread(run)


def run_in_thread(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """asyncio.run in a thread of its own: the browser tests' session-wide Playwright
    keeps an event loop running on the main thread."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the asyncio part did not finish"
    if failure:
        raise failure[0]


# ------------------------------------------------------------------------------ WebSockets


def open_raw(proc: porch.Process, url: str, channel: int,
             headers: list[tuple[str, str]] | None = None) -> int:
    """Open and return the open request's id (incoming frames carry it)."""
    id_ = proc.send_request(CLIENT, ws_open_action(url, headers, channel), expects_response=5)
    reply = proc.await_message(timeout=5)
    assert reply.id == id_
    result = http_pb2.HttpClientResult.FromString(reply.body)
    assert result.ok.WhichOneof("response") == "web_socket_ack", result
    return id_


def push(proc: porch.Process, channel: int, kind: str, blob: bytes | None = None) -> http_pb2.HttpClientResult:
    """A push sent expecting its (always sent) ack, to see errors."""
    result, _ = raw_result(proc, ws_push_action(channel, kind), blob=blob)
    return result


def err_kind(result: http_pb2.HttpClientResult) -> str:
    assert result.WhichOneof("result") == "err", result
    return http_pb2.HttpClientError.Kind.Name(result.err.kind)


def test_ws_text_and_binary_frames_carry_the_open_id(server: TestServer, caller: porch.Process) -> None:
    """docs/kinode.md §12 item 56."""
    open_id = open_raw(caller, server.ws_url("/ws"), 11)
    send_ws_client_push(caller, 11, "Text", "h\u00e9llo")
    frame, msg = next_ws(caller)
    assert frame == WsPush(11, "Text", porch.Blob("h\u00e9llo".encode(), "text/plain"))
    assert (msg.id, msg.source, msg.expects_response) == (open_id, CLIENT, False)
    data = bytes(range(256)) * 10
    send_ws_client_push(caller, 11, "Binary", data)
    frame, msg = next_ws(caller)
    assert frame == WsPush(11, "Binary", porch.Blob(data, "application/octet-stream"))
    assert msg.id == open_id
    close_ws_connection(caller, 11)


def test_ws_ping_and_pong_carry_payloads(server: TestServer, caller: porch.Process) -> None:
    """Kinode sends and delivers Ping/Pong empty; porch keeps the payload both ways."""
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=12)
    assert err_kind(push(caller, 12, "Ping", b"x" * 126)) == "BuildRequestFailed"
    assert push(caller, 12, "Ping", b"abc").WhichOneof("result") == "ok"
    frame, _ = next_ws(caller)
    assert frame == WsPush(12, "Pong", porch.Blob(b"abc", "application/octet-stream"))
    send_ws_client_push(caller, 12, "Text", "ping:xyz")  # the server pings us
    frame, _ = next_ws(caller)
    assert isinstance(frame, WsPush) and (frame.message_type, frame.data) == ("Ping", b"xyz")
    frame, _ = next_ws(caller)  # the pong answered for us reached the server, payload and all
    assert isinstance(frame, WsPush) and frame.data == b"pong:xyz"
    send_ws_client_push(caller, 12, "Pong", b"p1")  # an unsolicited pong too
    frame, _ = next_ws(caller)
    assert isinstance(frame, WsPush) and frame.data == b"pong:p1"
    close_ws_connection(caller, 12)


def test_ws_push_and_close_errors(server: TestServer, caller: porch.Process) -> None:
    """docs/kinode.md §12 item 57: bad text, no blob, unknown channel, close of an unknown channel."""
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=13)
    assert err_kind(push(caller, 13, "Text", b"\xff\xfe")) == "WsPushBadText"
    assert err_kind(push(caller, 13, "Text")) == "WsPushNoBlob"
    assert err_kind(push(caller, 13, "Binary")) == "WsPushNoBlob"
    result = push(caller, 99, "Text", b"hi")
    assert (err_kind(result), result.err.channel_id) == ("WsPushUnknownChannel", 99)
    with pytest.raises(HttpClientError) as err:
        close_ws_connection(caller, 98)
    assert (err.value.kind, err.value.channel_id) == ("WsCloseFailed", 98)
    # The connection is still fine after the refused pushes.
    send_ws_client_push(caller, 13, "Text", "still here")
    frame, _ = next_ws(caller)
    assert isinstance(frame, WsPush) and frame.data == b"still here"
    close_ws_connection(caller, 13)


def test_ws_open_errors(server: TestServer, caller: porch.Process) -> None:
    for url, kind in (("not a url", "BadUrl"), (server.url("/ws"), "WsOpenFailed"),
                      (f"ws://127.0.0.1:{free_port()}/ws", "WsOpenFailed"),
                      (server.ws_url("/hello"), "WsOpenFailed"),
                      (f"ws://localhost:{server.port}/ws", "Denied")):
        with pytest.raises(HttpClientError) as err:
            open_ws_connection(caller, url, channel_id=14)
        assert (err.value.kind, err.value.url) == (kind, url)


def test_ws_remote_close_is_reported_once(server: TestServer, caller: porch.Process) -> None:
    open_id = open_raw(caller, server.ws_url("/ws"), 15)
    send_ws_client_push(caller, 15, "Text", "close")
    frame, msg = next_ws(caller)
    assert frame == WsClose(15) and msg.id == open_id
    assert err_kind(push(caller, 15, "Text", b"x")) == "WsPushUnknownChannel"
    no_message(caller, 0.3)


def test_ws_message_over_the_cap_closes_the_connection(server: TestServer, caller: porch.Process) -> None:
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=18)
    send_ws_client_push(caller, 18, "Binary", b"x" * WS_MAX)  # echoed: exactly the cap is fine
    frame, _ = next_ws(caller)
    assert isinstance(frame, WsPush) and len(frame.data) == WS_MAX
    send_ws_client_push(caller, 18, "Binary", b"x" * (WS_MAX + 1))
    frame, _ = next_ws(caller)
    assert frame == WsClose(18)


def test_ws_close_push_closes_with_code_and_reports(server: TestServer, caller: porch.Process) -> None:
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=16)
    before = len(server.state.ws_closed)
    send_ws_client_push(caller, 16, "Close", (4001).to_bytes(2, "big") + b"done")
    frame, _ = next_ws(caller)
    assert frame == WsClose(16)
    wait_for(lambda: len(server.state.ws_closed) > before, 5, what="the server to see the close")


def test_ws_process_close_closes_remote_without_echo(server: TestServer, caller: porch.Process) -> None:
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=17)
    send_ws_client_push(caller, 17, "Text", "id")
    frame, _ = next_ws(caller)
    serial = int(frame.data) if isinstance(frame, WsPush) else -1
    close_ws_connection(caller, 17)
    wait_for(lambda: serial in server.state.ws_closed, 5, what="the remote to be closed")
    no_message(caller, 0.3)  # no WebSocketClose for a close the process asked for


def test_ws_same_channel_id_in_two_processes(server: TestServer, caller: porch.Process,
                                             other: porch.Process) -> None:
    """docs/kinode.md §12 item 58: (process, channel) is the key; no cross-talk."""
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=1)
    open_ws_connection(other, server.ws_url("/ws"), channel_id=1)
    serials = []
    for proc in (caller, other):
        send_ws_client_push(proc, 1, "Text", "id")
        frame, _ = next_ws(proc)
        serials.append(int(frame.data) if isinstance(frame, WsPush) else -1)
    assert serials[0] != serials[1]
    close_ws_connection(caller, 1)
    send_ws_client_push(other, 1, "Text", "other still open")
    frame, _ = next_ws(other)
    assert isinstance(frame, WsPush) and frame.data == b"other still open"
    no_message(caller, 0.2)
    close_ws_connection(other, 1)


def test_ws_reopen_of_a_channel_is_not_closed_by_its_predecessor(server: TestServer,
                                                                  caller: porch.Process) -> None:
    """Kinode's hazard (docs/kinode.md §6.5, D12): the old connection's close removed the new entry."""
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=5)
    send_ws_client_push(caller, 5, "Text", "id")
    first = int(next_ws(caller)[0].data)  # type: ignore[union-attr]
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=5)
    wait_for(lambda: first in server.state.ws_closed, 5, what="the first connection to close")
    no_message(caller, 0.5)  # no spurious WebSocketClose
    send_ws_client_push(caller, 5, "Text", "id")
    second = int(next_ws(caller)[0].data)  # type: ignore[union-attr]
    assert second != first and second in server.state.ws_open
    close_ws_connection(caller, 5)


def test_ws_slow_handshake_blocks_nothing_else(server: TestServer, caller: porch.Process) -> None:
    """D12: Kinode awaits the handshake inside its only loop."""
    slow_id = caller.send_request(CLIENT, ws_open_action(server.ws_url("/ws-slow?delay=3"), None, 21),
                                  expects_response=10)
    started = time.monotonic()
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=22)
    assert get(caller, server.url("/hello")).body == b"hello"
    assert time.monotonic() - started < 2.5, "other actions waited for the slow handshake"
    reply = caller.await_message(timeout=10)
    assert reply.id == slow_id
    assert http_pb2.HttpClientResult.FromString(reply.body).ok.WhichOneof("response") == "web_socket_ack"
    for channel in (21, 22):
        close_ws_connection(caller, channel)


def test_ws_frames_sent_with_the_handshake_are_not_lost(caller: porch.Process) -> None:
    """A frame in the same packet as the 101 answer is delivered, after the WebSocketAck
    (whichever order Tornado hands them over in; the unit tests cover the early case)."""
    greeter = GreetServer()
    try:
        open_id = open_raw(caller, greeter.url, 23)
        frame, msg = next_ws(caller)
        assert frame == WsPush(23, "Text", porch.Blob(b"hello", "text/plain")) and msg.id == open_id
        close_ws_connection(caller, 23)
    finally:
        greeter.close()


def test_ws_handshake_headers_repeats_kept(server: TestServer, caller: porch.Process) -> None:
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=24,
                       headers=[("X-Token", "t"), ("X-Rep", "1"), ("X-Rep", "2")])
    send_ws_client_push(caller, 24, "Text", "headers")
    frame, _ = next_ws(caller)
    lines = [tuple(h) for h in json.loads(frame.data)]  # type: ignore[union-attr]
    assert ("X-Token", "t") in lines
    assert [v for n, v in lines if n == "X-Rep"] == ["1", "2"]
    close_ws_connection(caller, 24)


def test_ws_channel_close_cancels_a_pending_handshake(server: TestServer, caller: porch.Process) -> None:
    before = server.state.ws_serial
    slow_id = caller.send_request(CLIENT, ws_open_action(server.ws_url("/ws-slow?delay=1"), None, 25),
                                  expects_response=10)
    time.sleep(0.2)
    result, _ = raw_result(caller, ws_close_action(25))
    assert result.ok.WhichOneof("response") == "web_socket_ack"
    reply = caller.await_message(timeout=10)
    assert reply.id == slow_id
    result = http_pb2.HttpClientResult.FromString(reply.body)
    assert err_kind(result) == "WsOpenFailed"
    wait_for(lambda: all(s in server.state.ws_closed
                         for s in range(before + 1, server.state.ws_serial + 1)), 5,
             what="the late connection to be closed")
    assert err_kind(push(caller, 25, "Text", b"x")) == "WsPushUnknownChannel"


def test_ws_remote_that_stops_reading_is_closed_at_the_send_queue_cap(server: TestServer,
                                                                       caller: porch.Process) -> None:
    """A remote that never reads must not grow the http-client without limit: past
    ws_send_queue_bytes unsent, its connection is closed (1008), the opener told, the
    overflowing push answered with an error, and the process's other connection carries
    on throughout."""
    stalled = StalledServer()
    try:
        open_id = open_raw(caller, stalled.url, 31)
        open_ws_connection(caller, server.ws_url("/ws"), channel_id=32)
        chunk = b"s" * 65536
        result = None
        for i in range(400):  # 26 MB at most: far past the socket buffers and the 256 KiB cap
            result = push(caller, 31, "Binary", chunk)
            if result.WhichOneof("result") == "err":
                break
            if i % 10 == 0:  # the same process's other connection is served all along
                send_ws_client_push(caller, 32, "Text", f"tick {i}")
                frame, _ = next_ws(caller)
                assert frame == WsPush(32, "Text", porch.Blob(f"tick {i}".encode(), "text/plain"))
        assert result is not None and err_kind(result) == "ExecuteRequestFailed", result
        assert "stopped reading" in result.err.message and str(WS_QUEUE) in result.err.message
        frame, msg = next_ws(caller)
        assert frame == WsClose(31) and msg.id == open_id
        assert err_kind(push(caller, 31, "Binary", b"x")) == "WsPushUnknownChannel"
        send_ws_client_push(caller, 32, "Binary", chunk)
        frame, _ = next_ws(caller)
        assert frame == WsPush(32, "Binary", porch.Blob(chunk, "application/octet-stream"))
        # What was queued for the stalled remote is let go: its connection is torn down.
        assert stalled.drain_until_closed(0, 20), "the stalled connection was never closed"
        no_message(caller, 0.3)  # one WebSocketClose, not two
        close_ws_connection(caller, 32)
    finally:
        stalled.close()


def test_ws_push_larger_than_the_cap_goes_out_when_nothing_waits(server: TestServer,
                                                                 caller: porch.Process) -> None:
    """The cap bounds what piles up, not the size of one message (that is the kernel's
    business): a single push bigger than the queue is sent to a remote that reads."""
    open_ws_connection(caller, server.ws_url("/ws"), channel_id=33)
    assert push(caller, 33, "Text", b"b" * (WS_QUEUE + 1)).WhichOneof("result") == "ok"
    # The server got it: its echo comes back, over ws_max_message_bytes, and closes (1009).
    frame, _ = next_ws(caller)
    assert frame == WsClose(33)


OPENER = """
    import sys, time, porch
    from porch.http.client import open_ws_connection
    p = porch.Process()
    open_ws_connection(p, sys.argv[1], channel_id=1)
    print("open", flush=True)
    time.sleep(60)
"""


def test_ws_connections_of_a_dead_opener_are_closed(node: Node, server: TestServer) -> None:
    before = server.state.ws_serial
    opener = node.spawn("opener:demo:sys", OPENER, server.ws_url("/ws"))
    serial = wait_for(lambda: next((s for s in server.state.ws_open if s > before), None), 10,
                      what="the opener's connection")
    wait_for(lambda: "open" in node.log("opener:demo:sys"), 5, what="the opener's ack")
    opener.send_signal(signal.SIGKILL)
    opener.wait(5)
    wait_for(lambda: serial in server.state.ws_closed, 5, what="the dead opener's connection to close")


# ------------------------------------------------------------------------------ policy, crash


def test_network_policy_checks_resolved_addresses(server: TestServer) -> None:
    n = Node(config('deny_networks = ["127.0.0.0/8", "::1/128"]\n'))
    try:
        n.start("kernel")
        n.start("http-client")
        proc = n.process("caller:demo:sys")
        for url in (server.url("/echo"), f"http://localhost:{server.port}/echo",
                    f"http://[::ffff:127.0.0.1]:{server.port}/echo"):
            err = error_of(proc, "GET", url)
            assert err.kind == "Denied", url
            assert "denied network" in err.message
        with pytest.raises(HttpClientError) as ws_err:
            open_ws_connection(proc, f"ws://localhost:{server.port}/ws", channel_id=1)
        assert ws_err.value.kind == "Denied"
        assert "denied" in n.log("http-client")
    finally:
        n.close()


def test_deny_private_refuses_private_ipv4_hosts_inside_ipv6_addresses(server: TestServer) -> None:
    """issue 16 (deny_private and NAT64): an IPv6 address that carries a private IPv4
    address (NAT64's 64:ff9b::/96, 6to4, Teredo, IPv4-compatible) reaches that host
    through a gateway or tunnel, so it is refused as that host would be, before any
    connection (the unit tests show the NAT64 form of a public address is not: no
    traffic leaves loopback here)."""
    n = Node(config("deny_private = true\n"))
    try:
        n.start("kernel")
        n.start("http-client")
        proc = n.process("caller:demo:sys")
        for host in ("64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:a00:1::1",
                     "2001:0:a00:1::f5ff:fffe", "::ffff:0:7f00:1", "64:ff9b:1::a00:1"):
            url = f"http://[{host}]:{server.port}/echo"
            err = error_of(proc, "GET", url)
            assert (err.kind, err.url) == ("Denied", url), err
            assert "denied network" in err.message
        with pytest.raises(HttpClientError) as ws_err:
            open_ws_connection(proc, f"ws://[64:ff9b::7f00:1]:{server.port}/ws", channel_id=1)
        assert ws_err.value.kind == "Denied"
    finally:
        n.close()


def test_kill_9_gives_offline_fast_a_restart_needs_nothing_and_a_stop_is_prompt(server: TestServer) -> None:
    n = Node(config())
    try:
        n.start("kernel")
        n.start("http-client")
        proc = n.process("caller:demo:sys")
        assert get(proc, server.url("/hello")).body == b"hello"
        pending = [send_request(proc, "GET", server.url("/delay/10"), timeout=30) for _ in range(3)]
        time.sleep(0.3)
        n.kill("http-client")
        killed = time.monotonic()
        offline = []
        for _ in pending:
            with pytest.raises(porch.Offline) as err:
                proc.await_message(timeout=5)
            offline.append(err.value.id)
        assert time.monotonic() - killed < 2.0
        assert sorted(offline) == sorted(pending)
        with pytest.raises(HttpClientError) as down:
            get(proc, server.url("/hello"))
        assert down.value.kind == "Offline"
        n.start("http-client")
        assert get(proc, server.url("/hello")).body == b"hello"
        # A clean stop cuts what is in flight instead of waiting for it.
        pending = [send_request(proc, "GET", server.url("/drip?n=100&interval=0.1"), timeout=30)]
        time.sleep(0.3)
        stopping = time.monotonic()
        n.stop("http-client")
        with pytest.raises(porch.Offline) as err:
            proc.await_message(timeout=5)
        assert err.value.id == pending[0]
        assert time.monotonic() - stopping < 2.0
        assert "abandoned: the http-client is stopping" in n.log("http-client")
    finally:
        n.close()


def recorded(node: Node) -> set[tuple[str, int]]:
    """(process, channel id) of the WebSockets the http-client has written down as open."""
    try:
        entries = json.loads((node.home.state_dir / RECORD).read_bytes())
    except FileNotFoundError:
        return set()
    return {(e["process"], e["channel_id"]) for e in entries}


def test_ws_openers_are_told_when_a_killed_http_client_comes_back(server: TestServer) -> None:
    """kill -9 loses every outgoing WebSocket; the next http-client, before it serves,
    tells each opener WebSocketClose for each channel it had open (with the open's id,
    as a remote close), and only for those."""
    n = Node(config())
    try:
        n.start("kernel")
        n.start("http-client")
        caller, other = n.process("caller:demo:sys"), n.process("other:demo:sys")
        ids = {ch: open_raw(caller, server.ws_url("/ws"), ch) for ch in (1, 2, 3)}
        other_id = open_raw(other, server.ws_url("/ws"), 1)
        expected = {("caller:demo:sys", 1), ("caller:demo:sys", 2), ("other:demo:sys", 1)}
        wait_for(lambda: recorded(n) == expected | {("caller:demo:sys", 3)}, 10,
                 what="the open WebSockets to be recorded")
        close_ws_connection(caller, 3)  # closed before the crash: not lost with it
        wait_for(lambda: recorded(n) == expected, 10, what="the closed one to be struck off")
        n.kill("http-client")
        n.start("http-client")
        told = {}
        for _ in range(2):
            frame, msg = next_ws(caller)
            assert isinstance(frame, WsClose) and msg.source == CLIENT and not msg.expects_response
            told[frame.channel_id] = msg.id
        assert told == {1: ids[1], 2: ids[2]}
        frame, msg = next_ws(other)
        assert frame == WsClose(1) and msg.id == other_id
        assert "told openers of 3 WebSocket connection(s) lost" in n.log("http-client")
        assert not (n.home.state_dir / RECORD).exists()
        # The new http-client serves, and has nothing more to say about the old channels.
        open_ws_connection(caller, server.ws_url("/ws"), channel_id=1)
        send_ws_client_push(caller, 1, "Text", "back")
        frame, _ = next_ws(caller)
        assert frame == WsPush(1, "Text", porch.Blob(b"back", "text/plain"))
        no_message(other, 0.3)
    finally:
        n.close()


def test_ws_sigterm_closes_connections_and_tells_openers_once(server: TestServer) -> None:
    n = Node(config())
    try:
        n.start("kernel")
        n.start("http-client")
        caller = n.process("caller:demo:sys")
        open_id = open_raw(caller, server.ws_url("/ws"), 4)
        send_ws_client_push(caller, 4, "Text", "id")
        serial = int(next_ws(caller)[0].data)  # type: ignore[union-attr]
        wait_for(lambda: recorded(n), 10, what="the open WebSocket to be recorded")
        n.stop("http-client")
        frame, msg = next_ws(caller)
        assert frame == WsClose(4) and msg.id == open_id
        wait_for(lambda: serial in server.state.ws_closed, 5, what="the remote to be closed")
        assert not (n.home.state_dir / RECORD).exists()
        n.start("http-client")
        open_ws_connection(caller, server.ws_url("/ws"), channel_id=5)  # it serves: any
        no_message(caller, 0.3)  # announcement came before this ack; there was none
        assert "lost with the previous" not in n.log("http-client")
        close_ws_connection(caller, 5)
    finally:
        n.close()


def test_a_full_queue_fails_new_requests_at_once_and_drains(server: TestServer) -> None:
    """Every worker busy and max_waiting_requests waiting: the next request fails at
    once with ExecuteRequestFailed ("busy") instead of queueing without bound, and the
    service takes requests again once the queue drains."""
    n = Node(config("workers = 2\nmax_waiting_requests = 3\n"))
    try:
        n.start("kernel")
        n.start("http-client")
        caller = n.process("caller:demo:sys")
        # Two running, three waiting (the waiting ones' deadlines pass in the queue).
        slow = [send_request(caller, "GET", server.url("/delay/10"), timeout=6.0) for _ in range(5)]
        started = time.monotonic()
        err = error_of(caller, "GET", server.url("/hello"))
        assert time.monotonic() - started < 3.0, "refused at once, not once the slow ones end (6 s)"
        assert err.kind == "ExecuteRequestFailed" and "http-client busy" in err.message
        n.wait_log("http-client", "max_waiting_requests", 5)
        for _ in slow:
            with pytest.raises(porch.Timeout):
                caller.await_message(timeout=10)
        wait_for(lambda: _answers(caller, server), 10, interval=0.2, what="the queue to drain")
    finally:
        n.close()


def _answers(proc: porch.Process, server: TestServer) -> bool:
    try:
        return get(proc, server.url("/hello")).body == b"hello"
    except HttpClientError:
        return False
