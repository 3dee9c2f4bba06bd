"""The blocking and asyncio twins keep one surface (issue 11 item 5, "Twin APIs").

`porch.Process` / `porch.AsyncProcess` and `HttpServer` / `AsyncHttpServer` (and the
http-client helpers with their `_async` forms): every operation both have carries the
same name, parameters (names, kinds, defaults, annotations) and return type; the async
one differs only by being a coroutine where the blocking one waits. What only one twin
has is listed here with its reason, so a method added to one side alone fails until it
is added to the other or listed. Also: one Headers type with one rule for repeated
names, and one copy of each shared helper.
"""

from __future__ import annotations

import ast
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import porch
from porch.http import client, server
from porch.http.headers import Headers
from porch.http.server import AsyncHttpServer, HttpServer
from porch.process.shared import answer_args

SERVICES = Path(porch.__file__).parent

# Members only one twin has, and why.
ONLY: dict[type, dict[str, str]] = {
    porch.Process: {
        "get_blob": "the blob of 'the last message': with many in flight there is no last; use msg.blob",
    },
    porch.AsyncProcess: {
        "connect": "the constructor (a coroutine: it waits for the registration); twin of Process()",
        "on_request": "a handler called for every request: what an event loop does instead of a loop",
        "on_reconnect": "callbacks run by the loop; a blocking process sees a restart as Offline",
        "on_disconnect": "callbacks run by the loop",
        "watch": "a callback when another process exits, run by the loop",
        "on_superseded": "a callback when a new process takes the id over (a node service's restart)",
        "on_undelivered": "a callback for one-way requests the kernel could not hand over",
        "request_future": "the id with the future, for callers that forget what they await",
        "forget": "drops the future of a request whose caller went away",
        "request": "older name of send_and_await_response (the same coroutine)",
        "recv": "older name of await_message (the same coroutine)",
    },
    HttpServer: {},
    AsyncHttpServer: {},
}
ALIASES = {(porch.AsyncProcess, "request"): "send_and_await_response",
           (porch.AsyncProcess, "recv"): "await_message"}
# Process operations that wait, hence coroutines on AsyncProcess.
PROCESS_WAITS = {"send_and_await_response", "await_message", "registry"}
# Renames of the twins' own types inside annotations.
TWIN_NAMES = {"AsyncProcess": "Process", "AsyncHttpServer": "HttpServer"}


def public(cls: type) -> dict[str, Any]:
    return {name: inspect.getattr_static(cls, name) for name in dir(cls) if not name.startswith("_")}


def comparable(sig: inspect.Signature) -> list[tuple[str, Any, Any, str]]:
    def norm(annotation: Any) -> str:
        text = str(annotation)
        for twin, blocking in TWIN_NAMES.items():
            text = text.replace(twin, blocking)
        return text
    params = [(p.name, p.kind, p.default, norm(p.annotation)) for p in sig.parameters.values()]
    return [*params, ("return", None, None, norm(sig.return_annotation))]


def kind(member: Any) -> str:
    if isinstance(member, property):
        return "property"
    if isinstance(member, classmethod):
        return "classmethod"
    if isinstance(member, staticmethod):
        return "staticmethod"
    return "method" if callable(member) else "attribute"


def function(member: Any) -> Callable[..., Any]:
    if isinstance(member, classmethod | staticmethod):
        return member.__func__  # type: ignore[no-any-return]
    return member  # type: ignore[no-any-return]


@pytest.mark.parametrize(("blocking", "aio"), [(porch.Process, porch.AsyncProcess),
                                               (HttpServer, AsyncHttpServer)])
def test_every_operation_has_one_signature(blocking: type, aio: type) -> None:
    b, a = public(blocking), public(aio)
    assert set(b) - set(a) == set(ONLY[blocking]), "a blocking operation the asyncio twin lacks"
    assert set(a) - set(b) == set(ONLY[aio]), "an asyncio operation the blocking twin lacks"
    for name in sorted(set(b) & set(a)):
        assert kind(b[name]) == kind(a[name]), name
        if kind(b[name]) != "method":
            continue
        fb, fa = function(b[name]), function(a[name])
        assert comparable(inspect.signature(fb)) == comparable(inspect.signature(fa)), name
        assert not inspect.iscoroutinefunction(fb), f"blocking {name} is a coroutine"
        # Every HttpServer method of its own talks to the http-server; inherited ones do not.
        waits = name in PROCESS_WAITS if blocking is porch.Process else name in vars(HttpServer)
        assert inspect.iscoroutinefunction(fa) == waits, f"{aio.__name__}.{name}"
        if fa is fb:
            continue  # inherited: one function
        if blocking is HttpServer:
            assert fb.__doc__ and fa.__doc__ == fb.__doc__, f"{name}: one docstring for both"
        elif fb.__doc__:
            assert fa.__doc__, f"{aio.__name__}.{name} has no docstring"


def test_aliases_are_the_same_coroutine() -> None:
    for (cls, alias), name in ALIASES.items():
        assert getattr(cls, alias) is getattr(cls, name)


def test_constructors_take_the_same_arguments() -> None:
    """Process(...) and await AsyncProcess.connect(...); the servers' __init__."""
    proc = comparable(inspect.signature(porch.Process.__init__))[1:-1]  # without self, return
    connect = comparable(inspect.signature(porch.AsyncProcess.connect.__func__))[1:-1]  # type: ignore[attr-defined]
    assert proc == connect
    assert comparable(inspect.signature(HttpServer.__init__)) == \
        comparable(inspect.signature(AsyncHttpServer.__init__))


def test_context_managers_on_both() -> None:
    assert callable(porch.Process.__enter__) and callable(porch.Process.__exit__)
    assert inspect.iscoroutinefunction(porch.AsyncProcess.__aenter__)
    assert inspect.iscoroutinefunction(porch.AsyncProcess.__aexit__)


@pytest.mark.parametrize("name", ["send_request_await_response", "open_ws_connection", "close_ws_connection"])
def test_http_client_helpers_and_their_async_forms(name: str) -> None:
    sync, aio = getattr(client, name), getattr(client, name + "_async")
    assert comparable(inspect.signature(sync)) == comparable(inspect.signature(aio))
    assert inspect.iscoroutinefunction(aio) and not inspect.iscoroutinefunction(sync)


def test_respond_takes_the_request_first_in_both() -> None:
    for cls in (porch.Process, porch.AsyncProcess):
        params = list(inspect.signature(cls.respond).parameters.values())
        assert [p.name for p in params[:3]] == ["self", "to", "body"], cls
        assert params[1].default is None


def test_the_old_respond_body_first_form_warns() -> None:
    msg = porch.Message(1, "a:b:c", "d:e:f", True, b"")
    assert answer_args(msg, b"x") == (msg, b"x")
    assert answer_args(None, "x") == (None, "x")
    with pytest.warns(DeprecationWarning, match="respond"):
        assert answer_args(b"old", b"") == (None, b"old")
    with pytest.raises(TypeError):
        answer_args(b"ambiguous", b"body")
    with pytest.raises(TypeError):
        answer_args(42, b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        answer_args(msg, b"")  # the one form: no warning


# ---------------------------------------------------------------------------- Headers


def test_one_headers_type_for_requests_and_responses() -> None:
    assert server.Headers is client.Headers is Headers
    assert inspect.signature(server.IncomingHttpRequest).parameters["headers"].annotation == "Headers"
    assert inspect.signature(client.HttpResponse).parameters["headers"].annotation == "Headers"


def test_headers_rule_for_repeated_names_is_the_last() -> None:
    h = Headers([("Set-Cookie", "a=1"), ("x-a", "1"), ("set-cookie", "b=2"), ("X-A", "2")])
    assert h.get("set-cookie") == "b=2" and h["SET-COOKIE"] == "b=2"
    assert h.get_all("Set-Cookie") == ["a=1", "b=2"] and h.get_all("x-a") == ["1", "2"]
    assert h.get("missing") is None and h.get("missing", "d") == "d" and h.get_all("missing") == []
    with pytest.raises(KeyError) as missing:
        h["Missing"]
    assert missing.value.args == ("Missing",), "a dict's KeyError: the name asked for"
    assert "X-a" in h and "x-b" not in h and 3 not in h
    assert list(h) == h.items() == [("Set-Cookie", "a=1"), ("x-a", "1"), ("set-cookie", "b=2"), ("X-A", "2")]
    assert len(h) == 4 and h.names() == ["set-cookie", "x-a"]
    assert h == Headers(h.items()) and h != Headers([])


# ---------------------------------------------------------------------------- one copy


def top_level_definitions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in SERVICES.rglob("*.py"):
        if path.name.endswith("_pb2.py"):
            continue
        for node in ast.parse(path.read_text()).body:
            names: list[str] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign) and not isinstance(node.value, ast.Subscript):
                # (a type alias such as `Headers = list[tuple[str, str]]` is no helper)
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in names:
                found.setdefault(name.lstrip("_"), []).append(str(path.relative_to(SERVICES)))
    return found


@pytest.mark.parametrize("name", ["as_blob", "as_bytes", "ws_type", "WS_TYPES", "now_ms", "read_port",
                                  "Headers", "respond_or_drop", "WsPush", "WsClose"])
def test_each_shared_helper_is_written_once(name: str) -> None:
    assert len(top_level_definitions().get(name, [])) == 1, top_level_definitions().get(name)
