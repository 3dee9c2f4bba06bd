"""Route matching against the reference's verified table (section 1.3)."""

import pytest

from porch.http_server.bindings import BindingTable, HttpBinding
from porch.http_server.paths import format_path, normalize, secure_subdomain
from porch.http_server.routing import RouteTable

CHESS = "chess:chess:sys"
HOME = "homepage:homepage:sys"


@pytest.fixture
def table() -> BindingTable:
    t = BindingTable()
    for path in ["/", "/games", "/games/:id", "/games/new", "/files/*rest", "/x.:ext", "api", "/anon/*"]:
        full = format_path(CHESS, path)
        t.bind_http(HttpBinding(full, CHESS))
    for path in ["/", "/index.html", "/our"]:
        t.bind_http(HttpBinding(format_path(HOME, path), HOME))
    return t


@pytest.mark.parametrize("request_path, pattern, params, fallback", [
    ("/chess:chess:sys", "/chess:chess:sys", {}, False),
    ("/chess:chess:sys/", "/chess:chess:sys", {}, False),
    ("/chess:chess:sys/games/", "/chess:chess:sys/games", {}, False),
    ("/chess:chess:sys/games/42", "/chess:chess:sys/games/:id", {"id": "42"}, False),
    ("/chess:chess:sys/games/new", "/chess:chess:sys/games/new", {}, False),
    ("/chess:chess:sys/games/a.b", "/chess:chess:sys/games/:id", {"id": "a.b"}, False),
    ("/chess:chess:sys/games/42/moves", "/chess:chess:sys", {}, True),
    ("/chess:chess:sys/files/a/b/c.txt", "/chess:chess:sys/files/*rest", {"rest": "a/b/c.txt"}, False),
    ("/chess:chess:sys/files/", "/chess:chess:sys", {}, True),
    ("/chess:chess:sys/x.json", "/chess:chess:sys/x.:ext", {"ext": "json"}, False),
    ("/chess:chess:sys/anon/zz/yy", "/chess:chess:sys/anon/*", {}, False),
    ("/chess:chess:sys/api", "/chess:chess:sys/api", {}, False),
    ("/chess:chess:sys/games/%20x", "/chess:chess:sys/games/:id", {"id": "%20x"}, False),
    ("/", "", {}, False),
    ("", "", {}, False),
    ("//chess:chess:sys", "", {}, True),  # Kinode's quirk: base "" is the homepage root
    ("/our", "/our", {}, False),
])
def test_reference_table(table: BindingTable, request_path: str, pattern: str,
                         params: dict[str, str], fallback: bool) -> None:
    resolved = table.resolve_http(normalize(request_path))
    assert resolved is not None
    assert (resolved.binding.path, resolved.params, resolved.fallback) == (pattern, params, fallback)


def test_unknown_base_is_404(table: BindingTable) -> None:
    assert table.resolve_http("/nope") is None


def test_tombstone_matches_and_does_not_fall_back(table: BindingTable) -> None:
    table.bind_http(HttpBinding("/chess:chess:sys/games", None))
    resolved = table.resolve_http("/chess:chess:sys/games")
    assert resolved is not None and resolved.binding.app is None and not resolved.fallback


def test_specificity_then_insertion_order() -> None:
    t: RouteTable[str] = RouteTable()
    t.add("/a/*rest", "wild")
    t.add("/a/:x/:y", "two params")
    t.add("/a/:x/c", "static c")
    assert t.recognize("/a/b/c").value == "static c"  # type: ignore[union-attr]
    assert t.recognize("/a/b/d").value == "two params"  # type: ignore[union-attr]
    assert t.recognize("/a/b/d/e").value == "wild"  # type: ignore[union-attr]
    t.add("/p/:one", "first")
    t.add("/p/:two", "second")
    m = t.recognize("/p/z")
    assert m is not None and m.value == "first" and m.params == {"one": "z"}


def test_rebinding_replaces_and_keeps_its_place() -> None:
    t: RouteTable[str] = RouteTable()
    t.add("/p/:one", "first")
    t.add("/p/:two", "second")
    t.add("/p/:one", "first again")
    m = t.recognize("/p/z")
    assert m is not None and m.value == "first again"
    assert [v for _, v in t.items()] == ["first again", "second"]


def test_params_need_one_character_and_exclude_slash() -> None:
    t: RouteTable[str] = RouteTable()
    t.add("/g/:id", "g")
    assert t.recognize("/g/") is None
    assert t.recognize("/g/a/b") is None


@pytest.mark.parametrize("path, full", [
    ("/", "/chess:chess:sys"), ("/games/", "/chess:chess:sys/games"), ("api", "/chess:chess:sys/api"),
    ("", "/chess:chess:sys/"),
])
def test_prefixing(path: str, full: str) -> None:
    assert format_path(CHESS, path) == full


def test_homepage_is_not_prefixed() -> None:
    assert format_path(HOME, "/") == ""
    assert format_path(HOME, "/our") == "/our"


@pytest.mark.parametrize("pid, sub", [
    ("settings:settings:sys", "settings-sys"), ("chess:chess:template.os", "chess-template-os"),
    ("app-store:app-store:sys", "app-store-sys"),
])
def test_secure_subdomain(pid: str, sub: str) -> None:
    assert secure_subdomain(pid) == sub


def test_table_round_trips_through_persistence(table: BindingTable) -> None:
    from porch.http_server.bindings import Static

    static = Static.of(b"css", "text/css")
    table.bind_http(HttpBinding("/chess:chess:sys/s", CHESS, True, True, None, static, 500))
    data, blobs = table.to_data()
    again = BindingTable.from_data(data, blobs)
    assert again.http.items() == table.http.items()
