"""Route matching against the table of docs/kinode.md §1.3."""

import pytest

from porch.http_server.bindings import BindingTable, HttpBinding
from porch.http_server.paths import first_segment, format_path, normalize, secure_subdomain
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


@pytest.mark.parametrize("path, base", [
    ("/chess:chess:sys/a/b", "chess:chess:sys"), ("/chess:chess:sys", "chess:chess:sys"),
    ("/chess:chess:sys/", "chess:chess:sys"), ("/", ""), ("", ""), ("no-slash", ""),
])
def test_the_fallback_base_is_the_first_segment(path: str, base: str) -> None:
    """A path with no "/" (the node's root, normalised to "") has no first segment."""
    assert first_segment(path) == base


def test_the_node_root_with_nothing_bound_is_404() -> None:
    assert BindingTable().resolve_http(normalize("/")) is None


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


# ------------------------------------------------------------------ table rules (issue 16)


def table_of(*patterns: str) -> RouteTable[str]:
    t: RouteTable[str] = RouteTable()
    for p in patterns:
        t.add(p, p)
    return t


def winner(t: RouteTable[str], path: str) -> str | None:
    m = t.recognize(path)
    return None if m is None else m.value


def test_more_wildcards_win_a_tie_of_statics_and_params() -> None:
    t = table_of("/a/*x", "/a/*x/*y")
    assert winner(t, "/a/b/c") == "/a/*x/*y"
    assert winner(t, "/a/b") == "/a/*x"


def test_more_params_win_a_tie_of_statics() -> None:
    t = table_of("/a/:x.*w", "/a/:x.:y")
    assert winner(t, "/a/b.c") == "/a/:x.:y"
    m = t.recognize("/a/b.c")
    assert m is not None and m.params == {"x": "b", "y": "c"}


@pytest.mark.parametrize("app_first", [True, False])
def test_an_app_pattern_and_a_dynamic_first_one_tie_by_order_added(app_first: bool) -> None:
    """A homepage-like "/:page/..." competes with every app's patterns: of equal rank,
    the one added first wins, whichever group it is in."""
    patterns = ["/app/:x", "/:p/b"] if app_first else ["/:p/b", "/app/:x"]
    t = table_of("/zz/:q", *patterns)  # (not first: order 0 would hide a broken order)
    assert winner(t, "/app/b") == patterns[0]


def test_a_dynamic_first_pattern_loses_to_a_better_app_pattern_and_serves_the_rest() -> None:
    t = table_of("/:page", "/*", "/app/:x", "/:p/:q")
    assert winner(t, "/app/b") == "/app/:x"
    assert winner(t, "/other/b") == "/:p/:q"
    assert winner(t, "/about") == "/:page"
    assert winner(t, "/a/b/c") == "/*"
    assert winner(t, "/app/b/c") == "/*"


def test_a_dynamic_first_pattern_beats_a_worse_app_pattern() -> None:
    t = table_of("/app/*rest", "/:p/b")
    assert winner(t, "/app/b") == "/:p/b"
    assert winner(t, "/app/c") == "/app/*rest"


def test_a_request_tries_only_its_own_app_s_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patterns are grouped by their first static segment (the app's process id): a
    request never pays for the patterns of other apps (only for its own and for those
    with a dynamic first segment)."""
    from porch.http_server import routing

    t: RouteTable[str] = RouteTable()
    for i in range(200):
        t.add(f"/app{i}:p:sys/:x", f"simple {i}")
        t.add(f"/app{i}:p:sys/*w/z", f"general {i}")
    t.add("/:page/z", "page")
    tried: list[str] = []
    simple, general = routing._Subject.match_simple, routing._Subject.match

    def spy_simple(self: routing._Subject, *args: object) -> list[str] | None:
        tried.append("simple")
        return simple(self, *args)  # type: ignore[arg-type]

    def spy_general(self: routing._Subject, *args: object) -> list[str] | None:
        tried.append("general")
        return general(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(routing._Subject, "match_simple", spy_simple)
    monkeypatch.setattr(routing._Subject, "match", spy_general)
    assert winner(t, "/app7:p:sys/q/r/z") == "general 7"
    assert len(tried) <= 3, tried
    tried.clear()
    assert winner(t, "/nobody/z") == "page"
    assert len(tried) <= 1, tried


def test_patterns_and_lookups_with_or_without_the_leading_slash_are_the_same() -> None:
    t: RouteTable[str] = RouteTable()
    t.add("api/:x", "no slash")
    t.add("/b/:y", "slash")
    assert winner(t, "/api/1") == "no slash" and winner(t, "api/1") == "no slash"
    assert winner(t, "/b/2") == "slash" and winner(t, "b/2") == "slash"
    assert t.get("api/:x") == t.get("/api/:x") == "no slash"
    assert t.get("b/:y") == t.get("/b/:y") == "slash"
    assert t.get("/nothing") is None and t.get("nothing") is None
    assert len(t) == 2


@pytest.mark.parametrize("pattern, path, params", [
    ("/app/v.1.:x", "app/v.1.json", {"x": "json"}),  # two segments before the param in one part
    ("/app/:x.tar.gz", "app/f.tar.gz", {"x": "f"}),  # two after it
    ("/app/a.b.:x.c.d/e", "app/a.b.y.c.d/e", {"x": "y"}),
    ("/app/v.:id.json", "app/v..json", None),  # a param takes one character at least
    ("/app/v.:id.json", "app/v.json", None),  # its texts may not overlap
    ("/app/v.:id.json", "app/v.x.json", {"id": "x"}),
])
def test_a_param_between_texts_in_one_part(pattern: str, path: str, params: dict[str, str] | None) -> None:
    m = table_of(pattern).recognize(path)
    assert (None if m is None else m.params) == params
