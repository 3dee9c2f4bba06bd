"""The BindingTable's own rules, beside the routing it delegates to (test_routing.py):
the built-in RPC binding, the apps list, secure subdomains, WebSocket lookups, static
content's identity, and its entries as saved data."""

from __future__ import annotations

import hashlib

from porch.http_server.bindings import (
    RPC_PATH,
    BindingTable,
    HttpBinding,
    Static,
    WsBinding,
    http_entry,
    ws_entry,
)

APP = "a:pkg:pub.os"
OTHER = "b:pkg:pub.os"
HOME = "homepage:homepage:sys"


def test_a_new_table_holds_the_rpc_endpoint_local_only_and_without_login() -> None:
    resolved = BindingTable().resolve_http(RPC_PATH)
    assert resolved is not None and not resolved.fallback
    assert resolved.binding == HttpBinding("/rpc:distro:sys/message", "rpc:distro:sys", authenticated=False,
                                           local_only=True)


def test_static_content_is_named_by_its_sha256_and_tagged_by_half_of_it() -> None:
    digest = hashlib.sha256(b"body{}").hexdigest()
    static = Static.of(b"body{}", "text/css")
    assert (static.body, static.mime, static.sha256) == (b"body{}", "text/css", digest)
    assert static.etag == f'"{digest[:32]}"', "a strong, quoted ETag"
    assert Static.of(b"x", None).mime is None


def test_a_saved_static_entry_names_its_content_by_hash_even_when_the_binding_did_not() -> None:
    body = b"made elsewhere"
    entry, blob = http_entry(HttpBinding(f"/{APP}/f", APP, static=Static(body, "text/plain")))
    digest = hashlib.sha256(body).hexdigest()
    assert entry["static"] == {"sha256": digest, "mime": "text/plain"} and blob == (digest, body)


def test_every_field_survives_saving_and_loading() -> None:
    table = BindingTable()
    table.bind(HttpBinding(f"/{APP}/s", APP, True, True, "pkg-pub-os", Static.of(b"c", "text/css"), 1500))
    table.bind(HttpBinding(f"/{APP}/gone", None))
    table.bind(WsBinding(f"/{APP}/ws", APP, True, "pkg-pub-os", True))
    table.bind(WsBinding(f"/{APP}/plain", APP, False, None, False))
    data, blobs = table.to_data()
    again = BindingTable.from_data(data, blobs)
    assert again.http.items() == table.http.items()
    assert again.ws.items() == table.ws.items()
    assert [ws_entry(b) for _, b in again.ws.items()] == data["ws"]


def test_loading_no_data_gives_the_table_of_a_new_node() -> None:
    table = BindingTable.from_data({}, {})
    assert table.http.items() == BindingTable().http.items() and not len(table.ws)


def test_an_entry_saved_before_timeouts_existed_has_the_node_default() -> None:
    table = BindingTable()
    table.apply_entry("http", {"path": f"/{APP}/old", "app": APP, "authenticated": True,
                               "local_only": False, "secure_subdomain": None}, {})
    assert table.http.get(f"/{APP}/old") == HttpBinding(f"/{APP}/old", APP, True)
    assert table.http.get(f"/{APP}/old").timeout_ms == 0  # type: ignore[union-attr]


def test_websocket_paths_match_with_params_and_never_fall_back() -> None:
    table = BindingTable()
    ws = WsBinding(f"/{APP}/room/:id", APP)
    table.bind(ws)
    table.bind(HttpBinding(f"/{APP}", APP))
    assert table.resolve_ws(f"/{APP}/room/7") == (ws, {"id": "7"})
    assert table.resolve_ws(f"/{APP}/other") is None, "no fallback to the app's root"
    assert table.resolve_ws(f"/{APP}") is None, "HTTP bindings are not WebSocket ones"


def test_secure_subdomains_list_the_apps_bound_on_each() -> None:
    table = BindingTable()
    table.bind(HttpBinding(f"/{APP}/s", APP, True, False, "pkg-pub-os"))
    table.bind(WsBinding(f"/{OTHER}/w", OTHER, True, "pkg-pub-os"))
    table.bind(HttpBinding("/c:other:pub.os/s", "c:other:pub.os", True, False, "other-pub-os"))
    table.bind(HttpBinding(f"/{APP}/open", APP))  # not on a subdomain
    table.bind(HttpBinding("/d:x:pub.os/gone", None, True, False, "x-pub-os"))  # a tombstone's
    assert table.secure_subdomains() == {"pkg-pub-os": {APP, OTHER}, "other-pub-os": {"c:other:pub.os"}}


def test_the_apps_list_links_each_app_to_its_root_or_first_plain_path() -> None:
    """The homepage links each app there: never to a pattern (a link to "/x.:ext" is
    a page that does not exist)."""
    table = BindingTable()
    table.bind(HttpBinding(f"/{APP}/page", APP))
    table.bind(HttpBinding(f"/{APP}", APP))  # its root, bound later, wins
    table.bind(HttpBinding(f"/{OTHER}", OTHER))
    table.bind(HttpBinding(f"/{OTHER}/later", OTHER))  # the root stays
    table.bind(HttpBinding("/c:c:pub.os/items/:id", "c:c:pub.os"))  # patterns link nowhere
    table.bind(HttpBinding("/c:c:pub.os/files/*", "c:c:pub.os"))
    table.bind(HttpBinding("/c:c:pub.os/x.:ext", "c:c:pub.os"))  # a param inside a segment too
    table.bind(HttpBinding("/c:c:pub.os/v*", "c:c:pub.os"))
    table.bind(HttpBinding("/d:d:pub.os/first", "d:d:pub.os"))
    table.bind(HttpBinding("/d:d:pub.os/second", "d:d:pub.os"))
    table.bind(HttpBinding("/e:e:pub.os", None))  # unbound
    table.bind(HttpBinding("/X/:id", HOME))  # the homepage's raw paths: patterns too
    table.bind(HttpBinding("", HOME))  # the node's "/"
    assert table.apps() == {APP: f"/{APP}", OTHER: f"/{OTHER}", "d:d:pub.os": "/d:d:pub.os/first",
                            HOME: "/"}
