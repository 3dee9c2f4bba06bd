"""porch.http.server's pure parts, in process: parse_request, handle_request's error
handling (issue 14 item 3), the configs' builder form and the free ws_push_all_channels
(issue 14, Kinode parity)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import Any

import pytest

import porch
from porch.http.server import (
    AsyncHttpServer,
    HttpBindingConfig,
    HttpResponse,
    HttpServer,
    HttpServerError,
    IncomingHttpRequest,
    WsBindingConfig,
    WsClose,
    WsOpen,
    WsPush,
    parse_request,
    send_response,
    ws_push_all_channels,
)
from porch.http.server import _Operations as Operations
from porch.wire import http_pb2

ME = "app:pkg:pub.os"


class FakeProc:
    """What the helpers use of a process: its id, respond, send_request (and the
    sockets it holds: none, as a process on another machine)."""

    our = ME
    held_sockets = None
    can_hold_sockets = False

    def accept_direct(self) -> bool:
        return False

    def __init__(self) -> None:
        self.responses: list[tuple[porch.Message | None, bytes, Any]] = []
        self.sent: list[tuple[str, bytes, Any]] = []

    def respond(self, to: porch.Message | None = None, body: bytes | str = b"", *, blob: Any = None,
                mime: str | None = None, metadata: str | None = None) -> bool:
        self.responses.append((to, body if isinstance(body, bytes) else body.encode(), blob))
        return True

    def send_request(self, target: str, body: bytes | str = b"", **kw: Any) -> int:
        self.sent.append((target, body if isinstance(body, bytes) else body.encode(), kw.get("blob")))
        return 1


def from_server(request: http_pb2.HttpServerRequest, blob: bytes | None = None,
                source: str = porch.HTTP_SERVER) -> porch.Message:
    return porch.Message(7, source, ME, True, request.SerializeToString(),
                         porch.Blob(blob) if blob is not None else None)


def http_request(path: str = "/x") -> porch.Message:
    req = http_pb2.HttpServerRequest()
    req.http.method = "GET"
    req.http.url = f"http://localhost/{ME}{path}"
    req.http.bound_path = path
    return from_server(req, b"hello")


def answered(proc: FakeProc) -> tuple[int, bytes]:
    (_, body, blob), = proc.responses
    return http_pb2.HttpResponse.FromString(body).status, blob.bytes


# ---------------------------------------------------------------------------- parse_request


def test_parse_request_gives_each_kind() -> None:
    req = parse_request(http_request("/games/42"))
    assert isinstance(req, IncomingHttpRequest)
    assert (req.method, req.path(), req.body) == ("GET", "/games/42", b"hello")
    opened = http_pb2.HttpServerRequest()
    opened.web_socket_open.path, opened.web_socket_open.channel_id = f"/{ME}/ws", 3
    assert parse_request(from_server(opened)) == WsOpen(f"/{ME}/ws", 3)
    push = http_pb2.HttpServerRequest()
    push.web_socket_push.channel_id = 3
    push.web_socket_push.message_type = http_pb2.WsMessageType.Value("Binary")
    assert parse_request(from_server(push, b"\x00")) == WsPush(3, "Binary", porch.Blob(b"\x00"))
    closed = http_pb2.HttpServerRequest()
    closed.web_socket_close.channel_id = 3
    assert parse_request(from_server(closed)) == WsClose(3)


@pytest.mark.parametrize("msg", [
    porch.Message(1, porch.HTTP_SERVER, ME, True, b"\xff\xff not protobuf"),
    porch.Message(1, porch.HTTP_SERVER, ME, True, b""),                            # empty
    porch.Message(1, "mallory:pkg:pub.os", ME, True, http_request().body),        # spoofed
    porch.Message(1, porch.HTTP_SERVER, ME, False, http_request().body),          # a response
])
def test_parse_request_refuses_what_is_not_the_servers(msg: porch.Message) -> None:
    with pytest.raises(HttpServerError) as err:
        parse_request(msg)
    assert err.value.kind == "MalformedRequest"


# ---------------------------------------------------------------------------- handle_request


def ok(req: IncomingHttpRequest) -> HttpResponse:
    return HttpResponse(201).body(b"fine " + req.body)


def test_handle_request_answers_the_handlers_response() -> None:
    proc = FakeProc()
    assert Operations(proc, 5, 5).handle_request(http_request(), ok) is True  # type: ignore[arg-type]
    assert answered(proc) == (201, b"fine hello")
    proc = FakeProc()
    Operations(proc, 5, 5).handle_request(http_request(), lambda r: (HttpResponse(202), b"tuple"))  # type: ignore[arg-type]
    assert answered(proc) == (202, b"tuple")


def boom(req: IncomingHttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


@pytest.mark.parametrize("handler", [
    boom,
    lambda req: "a str",                                     # not an HttpResponse
    lambda req: None,
    lambda req: HttpResponse(200).header("X", 1),            # type: ignore[arg-type]  # not a str
    lambda req: HttpResponse("200"),                         # type: ignore[arg-type]  # not an int
    lambda req: HttpResponse(200).body(42),                  # type: ignore[arg-type]
])
def test_a_failing_handler_answers_500_and_logs(handler: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 14 item 3: the process goes on; the traceback is logged, not sent."""
    proc = FakeProc()
    with caplog.at_level(logging.ERROR, "porch.http"):
        assert Operations(proc, 5, 5).handle_request(http_request("/b"), handler) is True  # type: ignore[arg-type]
    assert answered(proc) == (500, b"internal error\n")
    record, = caplog.records
    assert record.exc_info is not None and "failed on GET" in record.getMessage()


def test_failing_websocket_callbacks_are_logged_and_the_channel_kept(caplog: pytest.LogCaptureFixture) -> None:
    proc = FakeProc()
    server = Operations(proc, 5, 5)  # type: ignore[arg-type]
    opened = http_pb2.HttpServerRequest()
    opened.web_socket_open.path, opened.web_socket_open.channel_id = "/ws", 9
    push = http_pb2.HttpServerRequest()
    push.web_socket_push.channel_id = 9
    closed = http_pb2.HttpServerRequest()
    closed.web_socket_close.channel_id = 9

    def fail(*args: object) -> None:
        raise ValueError("callback")

    with caplog.at_level(logging.ERROR, "porch.http"):
        assert server.handle_request(from_server(opened), ok, fail, on_open=fail, on_close=fail)
        assert server.get_ws_channels() == {"/ws": {9}}, "opened even though on_open failed"
        assert server.handle_request(from_server(push, b"x"), ok, fail)
        assert server.handle_request(from_server(closed), ok, on_close=fail)
    assert server.get_ws_channels() == {"/ws": set()}
    assert len(caplog.records) == 3 and all("stays open" in r.getMessage() for r in caplog.records)
    assert proc.responses == [] and proc.sent == []


def test_handle_request_ignores_other_messages() -> None:
    proc = FakeProc()
    other = porch.Message(1, "friend:pkg:pub.os", ME, True, http_request().body)
    assert Operations(proc, 5, 5).handle_request(other, boom) is False  # type: ignore[arg-type]
    assert proc.responses == []


# ---------------------------------------------------------------------------- free functions


def test_free_ws_push_all_channels_pushes_to_every_channel_of_the_path() -> None:
    proc = FakeProc()
    ws_push_all_channels(proc, {"/ws": {3, 1}, "/other": {2}}, "/ws", "Text", b"hi")  # type: ignore[arg-type]
    assert [(t, http_pb2.HttpServerAction.FromString(b).web_socket_push.channel_id, blob)
            for t, b, blob in proc.sent] == [(porch.HTTP_SERVER, 1, porch.Blob(b"hi")),
                                             (porch.HTTP_SERVER, 3, porch.Blob(b"hi"))]
    ws_push_all_channels(proc, {}, "/none", "Text", b"hi")  # type: ignore[arg-type]
    assert len(proc.sent) == 2
    with pytest.raises(ValueError):
        ws_push_all_channels(proc, {"/ws": {1}}, "/ws", "Texty", b"hi")  # type: ignore[arg-type]


def test_send_response_answers_the_given_request() -> None:
    proc = FakeProc()
    msg = http_request()
    send_response(proc, 404, {"Content-Type": "text/plain"}, b"no", to=msg)  # type: ignore[arg-type]
    to, body, blob = proc.responses[0]
    assert to is msg and blob == porch.Blob(b"no")
    assert http_pb2.HttpResponse.FromString(body).headers[0].name == "Content-Type"


# ---------------------------------------------------------------------------- configs


def test_configs_builder_and_keywords_are_the_same_config() -> None:
    """Kinode's chained builder (with a with_ prefix) beside keyword arguments."""
    blob = porch.Blob(b"<p>", "text/html")
    built = (HttpBindingConfig().with_authenticated(False).with_local_only(True)
             .with_secure_subdomain(False).with_static_content(b"<p>", "text/html").with_timeout(3))
    assert built == HttpBindingConfig(authenticated=False, local_only=True, static_content=blob, timeout=3)
    assert built.with_static_content(None).static_content is None
    assert HttpBindingConfig() == HttpBindingConfig(True, False, False, None)  # Kinode's default()/new()
    ws = WsBindingConfig().with_authenticated(False).with_secure_subdomain(True).with_extension(True)
    assert ws == WsBindingConfig(authenticated=False, secure_subdomain=True, extension=True)
    base = HttpBindingConfig()
    base.with_authenticated(False)
    assert base.authenticated is True, "configs are immutable: each with_* returns a new one"
    with pytest.raises(FrozenInstanceError):
        base.authenticated = False  # type: ignore[misc]


@pytest.mark.parametrize("bad", [
    {"authenticated": "false"}, {"local_only": 1}, {"secure_subdomain": None},
    {"static_content": b"raw bytes"}, {"timeout": 0}, {"timeout": -1},
])
def test_configs_refuse_what_would_be_misread(bad: dict[str, Any]) -> None:
    """A flag given as "false" would be truthy: refused rather than guessed."""
    with pytest.raises((TypeError, ValueError)):
        HttpBindingConfig(**bad)


def test_ws_config_flags_are_bools() -> None:
    with pytest.raises(TypeError):
        WsBindingConfig(extension="yes")  # type: ignore[arg-type]


def test_each_builder_step_sets_its_field() -> None:
    assert HttpBindingConfig().with_secure_subdomain(True).secure_subdomain is True
    changed = HttpBindingConfig().with_(local_only=True, timeout=2.5)
    assert changed == HttpBindingConfig(local_only=True, timeout=2.5)
    assert WsBindingConfig().with_(extension=True, authenticated=False) == WsBindingConfig(False, False, True)


def test_a_timeout_under_a_second_is_a_timeout() -> None:
    assert HttpBindingConfig(timeout=0.25).timeout == 0.25


def test_config_refusals_say_which_field_and_what_was_given() -> None:
    with pytest.raises(TypeError) as err:
        HttpBindingConfig(local_only="no")  # type: ignore[arg-type]
    assert str(err.value) == "HttpBindingConfig.local_only must be a bool, not 'no'"
    with pytest.raises(TypeError, match=r"WsBindingConfig\.extension must be a bool, not 1"):
        WsBindingConfig(extension=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be positive seconds, not -2"):
        HttpBindingConfig(timeout=-2)
    with pytest.raises(TypeError, match=r"static_content must be a porch\.Blob"):
        HttpBindingConfig(static_content=b"raw")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the twins' plans


class ActingProc(FakeProc):
    """Answers each action Ok, or Err for the paths in `refuse`; records what was asked."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.refuse = refuse
        self.actions: list[tuple[str, str, Any]] = []

    def send_and_await_response(self, target: str, body: bytes | str = b"", *, timeout: float = 5,
                                blob: Any = None, mime: str | None = None,
                                metadata: str | None = None) -> porch.Message:
        action = http_pb2.HttpServerAction.FromString(body if isinstance(body, bytes) else body.encode())
        which = action.WhichOneof("action")
        path = getattr(getattr(action, which), "path", "")
        self.actions.append((which, path, blob))
        result = http_pb2.HttpServerResult()
        if path in self.refuse:
            result.err.kind = http_pb2.HttpServerError.Kind.Value("NoBlob")
        else:
            result.ok.SetInParent()
        return porch.Message(1, porch.HTTP_SERVER, ME, False, result.SerializeToString())


class AsyncActingProc(ActingProc):
    async def send_and_await_response(self, *args: Any, **kw: Any) -> porch.Message:  # type: ignore[override]
        return super().send_and_await_response(*args, **kw)


def run_both(refuse: tuple[str, ...], operation: Callable[[Any], Any]) -> list[tuple[ActingProc, Any, Any]]:
    """Run the same operation on an HttpServer and an AsyncHttpServer; (proc, server,
    result or exception) for each."""
    out = []
    for proc, cls in ((ActingProc(refuse), HttpServer), (AsyncActingProc(refuse), AsyncHttpServer)):
        server = cls(proc)  # type: ignore[arg-type]
        try:
            result = operation(server)
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
        except HttpServerError as exc:
            result = exc
        out.append((proc, server, result))
    return out


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def test_bind_multiple_unbinds_what_it_bound_when_one_fails() -> None:
    paths = ["/a", "/b", "/c", "/d"]
    for proc, server, result in run_both(("/c",), lambda s: s.bind_multiple_http_paths(paths)):
        assert isinstance(result, HttpServerError) and result.kind == "NoBlob"
        assert [(w, p) for w, p, _ in proc.actions] == [
            ("bind", "/a"), ("bind", "/b"), ("bind", "/c"), ("unbind", "/a"), ("unbind", "/b")]
        assert server.http_paths == {}


def test_modify_needs_a_path_it_bound_and_sends_the_new_content() -> None:
    for proc, _, result in run_both((), lambda s: s.modify_http_path("/never", HttpBindingConfig())):
        assert isinstance(result, HttpServerError) and result.kind == "MalformedRequest"
        assert proc.actions == []
    new = HttpBindingConfig().with_static_content(b"two", "text/plain")

    def bind_then_modify(server: Any) -> Any:
        if isinstance(server, AsyncHttpServer):
            async def both() -> None:
                await server.bind_http_static_path("/m", False, False, "text/plain", b"one")
                await server.modify_http_path("/m", new)
            return both()
        server.bind_http_static_path("/m", False, False, "text/plain", b"one")
        return server.modify_http_path("/m", new)

    for proc, server, result in run_both((), bind_then_modify):
        assert result is None
        assert [(w, p, b) for w, p, b in proc.actions] == [
            ("bind", "/m", porch.Blob(b"one", "text/plain")), ("bind", "/m", porch.Blob(b"two", "text/plain"))]
        assert server.http_paths["/m"] == new


def test_serve_file_raw_path_serves_the_file(tmp_path: Any) -> None:
    page = tmp_path / "page.html"
    page.write_text("<p>raw</p>")
    for proc, server, result in run_both((), lambda s: s.serve_file_raw_path(page, ["/p", "/q"])):
        assert result is None
        assert [(w, p, b) for w, p, b in proc.actions] == [
            ("bind", "/p", porch.Blob(b"<p>raw</p>", "text/html")),
            ("bind", "/q", porch.Blob(b"<p>raw</p>", "text/html"))]
        assert set(server.http_paths) == {"/p", "/q"}


def test_secure_binds_and_ws_operations_in_both() -> None:
    def ops(server: Any) -> Any:
        calls = [lambda: server.secure_bind_http_path("/s"), lambda: server.bind_ws_path("/w"),
                 lambda: server.modify_ws_path("/w", WsBindingConfig(authenticated=False)),
                 lambda: server.secure_bind_ws_path("/sw"), lambda: server.unbind_ws_path("/w"),
                 lambda: server.close_ws(5)]
        if isinstance(server, AsyncHttpServer):
            async def run() -> None:
                for call in calls:
                    await call()
            return run()
        for call in calls:
            call()
        return None

    for proc, server, result in run_both((), ops):
        assert result is None
        assert [w for w, _, _ in proc.actions] == ["secure_bind", "web_socket_bind", "web_socket_bind",
                                                   "web_socket_secure_bind", "web_socket_unbind",
                                                   "web_socket_close"]
        assert set(server.ws_paths) == {"/sw"}
