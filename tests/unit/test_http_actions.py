import pytest

from porch.http_server import actions
from porch.http_server.bindings import BindingTable
from porch.http_server.gateway import http_response
from porch.process.message import Blob, Message
from porch.wire import http_pb2

Kind = http_pb2.HttpServerError.Kind


def bind(path: str, cache: bool = False) -> http_pb2.HttpServerAction:
    a = http_pb2.HttpServerAction()
    a.bind.path, a.bind.cache = path, cache
    return a


def test_invalid_source_process() -> None:
    with pytest.raises(actions.ActionError) as err:
        actions.apply_binding(BindingTable(), "My_App:pkg:pub", "bind", bind("/x"), None)
    assert err.value.kind == Kind.InvalidSourceProcess


def test_no_blob_and_nothing_bound() -> None:
    table = BindingTable()
    with pytest.raises(actions.ActionError) as err:
        actions.apply_binding(table, "a:b:c", "bind", bind("/x", cache=True), None)
    assert err.value.kind == Kind.NoBlob
    assert table.resolve_http("/a:b:c/x") is None


def test_paths_land_under_the_sender() -> None:
    table = BindingTable()
    unbind = http_pb2.HttpServerAction()
    unbind.unbind.path = "/victim:b:c/x"
    assert actions.apply_binding(table, "mallory:b:c", "unbind", unbind, None) == "/mallory:b:c/victim:b:c/x"


def test_secure_bind_is_always_authenticated_and_on_the_subdomain() -> None:
    table = BindingTable()
    a = http_pb2.HttpServerAction()
    a.secure_bind.path = "/s"
    actions.apply_binding(table, "app:pkg:pub.os", "secure_bind", a, None)
    b = table.http.get("/app:pkg:pub.os/s")
    assert b is not None and b.authenticated and not b.local_only and b.secure_subdomain == "pkg-pub-os"


@pytest.mark.parametrize("body", [b"\xff\xff", http_pb2.HttpServerAction().SerializeToString()])
def test_malformed(body: bytes) -> None:
    with pytest.raises(actions.ActionError) as err:
        actions.decode(body)
    assert err.value.kind == Kind.MalformedRequest


Reply = tuple[int, list[tuple[str, str]], bytes]


def reply(status: int, headers: list[tuple[str, str]], body: bytes | None) -> Reply:
    r = http_pb2.HttpResponse(status=status)
    for k, v in headers:
        r.headers.add(name=k, value=v)
    msg = Message(1, "a:b:c", "http-server:distro:sys", False, r.SerializeToString(),
                  Blob(body) if body is not None else None)
    return http_response(msg)


def test_response_mapping() -> None:
    status, headers, body = reply(201, [("X-A", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], b"hi")
    assert status == 201 and body == b"hi"
    assert headers == [("X-A", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                       ("Content-Type", "application/octet-stream")]
    bad = [("bad name", "x"), ("X-B", "a\r\nInjected: 1"), ("Content-Length", "9")]
    _, headers, body = reply(200, bad, None)
    assert headers == [("Content-Type", "application/octet-stream")] and body == b""
    assert reply(99, [], None)[0] == 502
    assert reply(1000, [], None)[0] == 502
    garbage = Message(1, "a:b:c", "x", False, b"\xff\xff\xff")
    assert http_response(garbage)[0] == 502


@pytest.mark.parametrize("variant", ["bind", "web_socket_bind"])
def test_a_bind_that_omits_authenticated_needs_login(variant: str) -> None:
    """issue 9 item 9: protobuf reads an unset bool as false, so a producer that forgot
    `authenticated` bound a PUBLIC path. Unset now means authenticated; only an explicit
    false is public."""
    table = BindingTable()
    for path, value in (("/unset", None), ("/public", False), ("/private", True)):
        a = http_pb2.HttpServerAction()
        getattr(a, variant).path = path
        if value is not None:
            getattr(a, variant).authenticated = value
        actions.apply_binding(table, "app:pkg:pub.os", variant, a, None)
    routes = table.ws if variant == "web_socket_bind" else table.http
    flags = {p: routes.get("/app:pkg:pub.os" + p).authenticated  # type: ignore[union-attr]
             for p in ("/unset", "/public", "/private")}
    assert flags == {"/unset": True, "/public": False, "/private": True}


def test_the_stub_always_says_what_it_means() -> None:
    """The Python helpers set the field, false included (it is present on the wire)."""
    from porch.http.server import HttpBindingConfig, WsBindingConfig, bind_action, ws_bind_action

    public = bind_action("/p", HttpBindingConfig(authenticated=False))
    assert public.bind.HasField("authenticated") and not public.bind.authenticated
    ws = ws_bind_action("/w", WsBindingConfig(authenticated=False))
    assert ws.web_socket_bind.HasField("authenticated") and not ws.web_socket_bind.authenticated
    assert bind_action("/d", HttpBindingConfig()).bind.authenticated
