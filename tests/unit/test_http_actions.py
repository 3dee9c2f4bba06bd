import pytest

from porch.http_server import actions
from porch.http_server.bindings import BindingTable
from porch.http_server.gateway import BadAnswer, http_response
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
    _, headers, body = reply(200, [("Content-Length", "9"), ("Transfer-Encoding", "chunked")], None)
    assert headers == [("Content-Type", "application/octet-stream")] and body == b""
    # Latin-1 (obs-text), tabs and spaces are what a header value may hold
    assert reply(200, [("X-L", "caf\xe9\tok ~")], None)[1][0] == ("X-L", "caf\xe9\tok ~")
    for status in (99, 1000):
        with pytest.raises(BadAnswer, match="invalid status"):
            reply(status, [], None)
    garbage = Message(1, "a:b:c", "x", False, b"\xff\xff\xff")
    with pytest.raises(BadAnswer, match="not an HttpResponse"):
        http_response(garbage)

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



@pytest.mark.parametrize("header", [
    ("bad name", "x"), ("", "x"), ("X:Y", "x"), ("X-\u00e9", "x"),
    ("X-B", "a\r\nInjected: 1"), ("X-B", "a\nb"), ("X-B", "nul\x00"), ("X-B", "bell\x07"),
    ("X-B", "del\x7f"), ("X-B", "euro \u20ac"), ("X-B", "\U0001f600"),
])
def test_a_header_http_cannot_carry_is_a_bad_answer(header: tuple[str, str]) -> None:
    """Issue 9 item 6: the whole answer is refused (the client gets 502), never sent
    without the header nor left hanging."""
    with pytest.raises(BadAnswer, match="header"):
        reply(200, [("X-Fine", "1"), header], b"body")


@pytest.mark.parametrize("path", [
    "/victim:b:c/x", "victim:b:c/x", "/victim:b:c", "rpc:distro:sys/message", "/rpc:distro:sys/message",
    "/http-server:distro:sys/status", "/*", "*", "/:anything", "/:a/x", "/x.*", "/x.:p",
])
def test_the_homepage_cannot_bind_into_a_process_namespace(path: str) -> None:
    """Issue 9 item 1: the homepage binds raw paths, but none that a process owns (the
    routing table ignores a leading "/", and patterns in the first segment would match
    every process's paths)."""
    table = BindingTable()
    before = table.resolve_http("/rpc:distro:sys/message")
    for which in ("bind", "unbind", "web_socket_bind", "web_socket_unbind"):
        a = http_pb2.HttpServerAction()
        getattr(a, which).path = path
        with pytest.raises(actions.ActionError) as err:
            actions.apply_binding(table, "homepage:homepage:sys", which, a, None)
        assert err.value.kind == Kind.InvalidSourceProcess
    assert table.resolve_http("/rpc:distro:sys/message") == before
    assert [p for p, _ in table.http.items()] == ["/rpc:distro:sys/message"] and not len(table.ws)


@pytest.mark.parametrize(("path", "full"), [("/", ""), ("/our", "/our"), ("apps/x", "apps/x"),
                                            ("/favicon.ico", "/favicon.ico"), ("/a/:id", "/a/:id"),
                                            ("/games/:id/moves", "/games/:id/moves")])
def test_the_homepage_binds_its_own_raw_paths(path: str, full: str) -> None:
    table = BindingTable()
    assert actions.apply_binding(table, "homepage:homepage:sys", "bind", bind(path), None) == full
