import pytest

from porch.http_server import actions
from porch.http_server.bindings import BindingTable, HttpBinding, Static, WsBinding
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


SRC = "app:pkg:pub.os"


def action(which: str, **fields: object) -> http_pb2.HttpServerAction:
    a = http_pb2.HttpServerAction()
    variant = getattr(a, which)
    variant.SetInParent()
    for name, value in fields.items():
        setattr(variant, name, value)
    return a


@pytest.mark.parametrize(("which", "fields", "expected"), [
    ("bind", {"path": "/b", "authenticated": False, "local_only": True, "timeout_ms": 1500},
     HttpBinding(f"/{SRC}/b", SRC, False, True, None, None, 1500)),
    ("bind", {"path": "/b"}, HttpBinding(f"/{SRC}/b", SRC, True, False, None, None, 0)),
    ("secure_bind", {"path": "/s", "timeout_ms": 700},
     HttpBinding(f"/{SRC}/s", SRC, True, False, "pkg-pub-os", None, 700)),
    ("unbind", {"path": "/b"}, HttpBinding(f"/{SRC}/b", None)),
    ("web_socket_bind", {"path": "/w", "authenticated": False, "extension": True},
     WsBinding(f"/{SRC}/w", SRC, False, None, True)),
    ("web_socket_bind", {"path": "/w"}, WsBinding(f"/{SRC}/w", SRC, True, None, False)),
    ("web_socket_secure_bind", {"path": "/ws", "extension": True},
     WsBinding(f"/{SRC}/ws", SRC, True, "pkg-pub-os", True)),
    ("web_socket_secure_bind", {"path": "/ws"}, WsBinding(f"/{SRC}/ws", SRC, True, "pkg-pub-os", False)),
    ("web_socket_unbind", {"path": "/w"}, WsBinding(f"/{SRC}/w", None)),
])
def test_each_binding_action_plans_exactly_its_binding(which: str, fields: dict[str, object],
                                                       expected: HttpBinding | WsBinding) -> None:
    """Every field of the binding each action asks for, of the right kind (HTTP or
    WebSocket; an unbind is a tombstone, owned by nobody), secure ones always with login."""
    planned = actions.plan_binding(SRC, which, action(which, **fields), None)
    assert type(planned) is type(expected) and planned == expected
    table = BindingTable()
    assert actions.apply_binding(table, SRC, which, action(which, **fields), None) == expected.path
    routes = table.ws if isinstance(expected, WsBinding) else table.http
    assert routes.get(expected.path) == expected


@pytest.mark.parametrize("which", ["bind", "secure_bind"])
def test_a_cached_bind_serves_the_blob_with_its_mime(which: str) -> None:
    a = action(which, path="/c.css", cache=True)
    planned = actions.plan_binding(SRC, which, a, Blob(b"body{}", "text/css"))
    assert isinstance(planned, HttpBinding) and planned.static == Static.of(b"body{}", "text/css")
    table = BindingTable()
    actions.apply_binding(table, SRC, which, a, Blob(b"x", None))
    bound = table.http.get(f"/{SRC}/c.css")
    assert bound is not None and bound.static == Static.of(b"x", None)
    uncached = actions.plan_binding(SRC, which, action(which, path="/d"), Blob(b"ignored", "text/plain"))
    assert isinstance(uncached, HttpBinding) and uncached.static is None, "no cache: dynamic"


@pytest.mark.parametrize("which", ["bind", "secure_bind"])
def test_a_cached_bind_without_its_blob_is_refused_saying_why(which: str) -> None:
    with pytest.raises(actions.ActionError) as err:
        actions.plan_binding(SRC, which, action(which, path="/c", cache=True), None)
    assert err.value.kind == Kind.NoBlob and "blob" in err.value.detail


@pytest.mark.parametrize("which", ["web_socket_push", "web_socket_close", "web_socket_ext_push_outgoing"])
def test_only_binding_actions_are_planned(which: str) -> None:
    with pytest.raises(actions.ActionError) as err:
        actions.plan_binding(SRC, which, action(which), None)
    assert err.value.kind == Kind.MalformedRequest and which in err.value.detail


def test_refusals_name_the_source_and_path_they_refuse() -> None:
    with pytest.raises(actions.ActionError) as err:
        actions.plan_binding("Bad_Id:x:y", "bind", bind("/x"), None)
    assert "Bad_Id:x:y" in err.value.detail
    with pytest.raises(actions.ActionError) as err:
        actions.plan_binding("homepage:homepage:sys", "bind", bind("/victim:b:c/x"), None)
    assert "/victim:b:c/x" in err.value.detail
    assert str(err.value) == f"InvalidSourceProcess: {err.value.detail}", "logs say the kind and why"


@pytest.mark.parametrize("which", ["bind", "unbind", "web_socket_bind", "web_socket_close", "web_socket_push"])
def test_an_action_decodes_to_its_variant(which: str) -> None:
    a = action(which, **({"path": "/p"} if "bind" in which else {"channel_id": 3}))
    got, decoded = actions.decode(a.SerializeToString())
    assert got == which and decoded == a


@pytest.mark.parametrize("which", ["web_socket_open", "web_socket_ext_push_data"])
def test_what_only_the_server_sends_is_refused_as_an_action(which: str) -> None:
    with pytest.raises(actions.ActionError) as err:
        actions.decode(action(which).SerializeToString())
    assert err.value.kind == Kind.MalformedRequest and which in err.value.detail


def test_a_malformed_body_is_refused_saying_what_it_is_not() -> None:
    with pytest.raises(actions.ActionError) as err:
        actions.decode(b"\xff\xff")
    assert "HttpServerAction" in err.value.detail
    with pytest.raises(actions.ActionError) as err:
        actions.decode(b"")
    assert "no action" in err.value.detail


def test_results_on_the_wire() -> None:
    for ok in (actions.ok(), actions._ok()):
        result = http_pb2.HttpServerResult.FromString(ok)
        assert result.WhichOneof("result") == "ok"
    result = http_pb2.HttpServerResult.FromString(actions.err(Kind.NoBlob, "why"))
    assert result.WhichOneof("result") == "err"
    assert (result.err.kind, result.err.detail) == (Kind.NoBlob, "why")
