"""Route matching costs time linear in the path, with unchanged results (issue 9 item 4).

The old matcher compiled each pattern to a regex (`:x` -> `([^/]+)`, `*x` -> `(.+)`)
that backtracks: `/:a.:b.:c` against "a.a.a...a/x" tried every split of the dots
(cubic), seconds of CPU on the event loop for a few KiB of unauthenticated path. That
regex is kept here as the oracle the new matcher must agree with (same match, same
captures, same winner), on the table of docs/kinode.md §1.3 and on random patterns and paths.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from porch.http_server.routing import RouteTable, _split


def oracle_regex(route: str) -> re.Pattern[str] | None:
    """The regex the matcher used before (None: fully static)."""
    parts, dynamic = [], False
    for sep, seg in _split(route):
        parts.append(re.escape(sep))
        if seg.startswith(":"):
            parts.append("([^/]+)")
            dynamic = True
        elif seg.startswith("*"):
            parts.append("(.+)")
            dynamic = True
        else:
            parts.append(re.escape(seg))
    return re.compile("".join(parts), re.DOTALL) if dynamic else None


def oracle_match(pattern: str, path: str) -> list[str] | None:
    route = pattern[1:] if pattern.startswith("/") else pattern
    key = path[1:] if path.startswith("/") else path
    regex = oracle_regex(route)
    if regex is None:
        return [] if route == key else None
    m = regex.fullmatch(key)
    return list(m.groups()) if m else None


def single(pattern: str) -> RouteTable[str]:
    t: RouteTable[str] = RouteTable()
    t.add(pattern, pattern)
    return t


def names(pattern: str) -> list[str | None]:
    route = pattern[1:] if pattern.startswith("/") else pattern
    return [seg[1:] or None for _, seg in _split(route) if seg.startswith((":", "*"))]


def agree(pattern: str, path: str) -> None:
    expected = oracle_match(pattern, path)
    got = single(pattern).recognize(path)
    if expected is None:
        assert got is None, (pattern, path, got)
        return
    assert got is not None, (pattern, path, expected)
    want = {n: v for n, v in zip(names(pattern), expected, strict=True) if n}
    assert got.params == want, (pattern, path)


@pytest.fixture(autouse=True)
def _fresh_byte_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The byte -> mask tables are memoised for the process: each test builds its own,
    so that building them is tested too, not only what an earlier test left."""
    from porch.http_server import routing

    monkeypatch.setattr(routing, "_ONE_BYTE", {})


@pytest.mark.parametrize("pattern, path", [
    ("/:a.:b", "x.y.z"), ("/:a.:b.:c", "a.b.c.d.e"), ("/:a/:b", "x/y"), ("/:a", "x/y"),
    ("/x/:a.json", "x/a.b.json"), ("/*a/*b", "p/q/r/s"), ("/*a.:b", "p/q.r.s"),
    ("/:a.*b", "p.q/r.s"), ("/a/*", "a/"), ("/a/*", "a//"), ("/:a..:b", "x...y"),
    ("/:a", ""), ("/*", "/"), ("/é/:x", "é/ü"), ("/:a.:b", ".."), ("/:a.:b", "a..b"),
    ("/:a/", "x/"), ("/:a/", "x"), ("/a.:b/c", "a.b.c/c"),
])
def test_known_cases_agree_with_the_regex(pattern: str, path: str) -> None:
    agree(pattern, path)


# The general matcher's pieces, deterministically: a pattern of each shape (literal first,
# last or between; literals of one byte and of several; params and wildcards side by
# side) against paths built from units repeated 1, 2, 16, 17 (the most occurrences a
# literal is found one by one) and 40 times, with tails that let them match or not.
GENERAL = ["/:a..:b", "/:a.ab.:b", "/*a.ab.:b", "/:a/ab/*b", "/*a..*b", "/*w/a", "/*w.json",
           "/x.*w.y", "/:a.:b.json", "/ab/*w/ab", "/ab.:a.:b", "/:a.:b/ab", "/*a/:b..:c",
           "/:a..:b/x", "/*a.:b.ab"]
UNITS = ["a..", "ab.", "x..y", "a/", "ab/", ".", "..", "a.ab", "é.", "/ab"]
TAILS = ["", "z", ".z", "/z", "..", "ab", ".json", "/ab", "/x", "y", "..z"]


@pytest.mark.parametrize("pattern", GENERAL)
def test_general_shapes_agree_with_the_regex_on_repeated_units(pattern: str) -> None:
    for unit in UNITS:
        for times in (1, 2, 16, 17, 40):
            for tail in TAILS:
                for head in ("", "x", "ab."):
                    agree(pattern, head + unit * times + tail)


def test_a_literal_of_several_bytes_found_before_a_later_one_fails() -> None:
    m = single("/:a..:b").recognize("x..y..")
    assert m is not None and m.params == {"a": "x", "b": "y.."}


@pytest.mark.parametrize("pattern, path, params", [
    ("/a/:x.:y", "a/\ud800.\udfff", {"x": "\ud800", "y": "\udfff"}),
    ("/\ud800/*w", "\ud800/x\udc00", {"w": "x\udc00"}),
    ("/a.\udc80/:x.:y", "a.\udc80/b.c", {"x": "b", "y": "c"}),
])
def test_paths_with_lone_surrogates_are_matched_not_raised(pattern: str, path: str,
                                                           params: dict[str, str]) -> None:
    """A str path may hold lone surrogates (the server decodes with surrogateescape):
    they are matched like any character, and captured as they are."""
    m = single(pattern).recognize(path)
    assert m is not None and m.params == params


SEGMENTS = st.sampled_from(["a", "b", "ab", "", ":p", ":q", "*w", "*", "é"])
PATTERNS = st.builds(
    lambda first, rest: "/" + first + "".join(sep + seg for sep, seg in rest),
    SEGMENTS, st.lists(st.tuples(st.sampled_from("/."), SEGMENTS), max_size=4))
PATHS = st.text(alphabet="ab/.é", max_size=12)


@settings(max_examples=3000, deadline=None)
@given(PATTERNS, PATHS)
def test_random_patterns_agree_with_the_regex(pattern: str, path: str) -> None:
    agree(pattern, path)


@settings(max_examples=500, deadline=None)
@given(st.lists(PATTERNS, min_size=1, max_size=6), PATHS)
def test_the_winner_is_the_same(patterns: list[str], path: str) -> None:
    """Rank (statics, params, wildcards) then insertion order, over the ones that match."""
    table: RouteTable[str] = RouteTable()
    for p in patterns:
        table.add(p, p)
    best: tuple[tuple[int, int, int], int, str] | None = None
    seen: list[str] = []
    for p in patterns:
        route = p[1:]
        if route in seen:
            continue
        seen.append(route)
        if oracle_match(p, path) is None:
            continue
        segs = _split(route)
        rank = (sum(1 for _, s in segs if not s.startswith((":", "*"))),
                sum(1 for _, s in segs if s.startswith(":")), sum(1 for _, s in segs if s.startswith("*")))
        order = seen.index(route)
        if best is None or rank > best[0]:
            best = (rank, order, p)
    got = table.recognize(path)
    if best is None:
        assert got is None
    else:
        assert got is not None and got.pattern[1:] == best[2][1:], (patterns, path, got)


HOSTILE = [
    ("/app:pkg:pub/:a.:b.:c", "app:pkg:pub/" + "a." * 16384 + "/x"),
    ("/app:pkg:pub/:name.:ext", "app:pkg:pub/" + "a." * 16384 + "/x"),
    ("/app:pkg:pub/:a.:b.:c.:d", "app:pkg:pub/" + "." * 32768 + "/"),
    ("/app:pkg:pub/*a/*b/*c/x", "app:pkg:pub/" + "a/" * 16384 + "y"),
    ("/app:pkg:pub/*a.:b/:c.*d", "app:pkg:pub/" + "a./" * 10922 + "/"),
    ("/app:pkg:pub/:a..:b..:c", "app:pkg:pub/" + "." * 32768 + "x/"),
]


def test_hostile_32k_paths_against_the_worst_patterns_take_well_under_a_second() -> None:
    """issue 9 item 4: each of these took the old matcher minutes or more (cubic or
    worse in the number of dots or slashes); the bound is generous (a busy machine)."""
    table: RouteTable[str] = RouteTable()
    for pattern, _ in HOSTILE:
        table.add(pattern, pattern)
    for _, path in HOSTILE:
        started = time.process_time()
        table.recognize(path)
        spent = time.process_time() - started
        assert spent < 1.0, (path[:40], spent)


def test_hostile_paths_still_match_when_they_should() -> None:
    t = single("/app:pkg:pub/:a.:b.:c")
    path = "/app:pkg:pub/" + "a." * 16384 + "z"
    m = t.recognize(path)
    assert m is not None and m.params == {"a": "a." * 16382 + "a", "b": "a", "c": "z"}
    w = single("/app:pkg:pub/*a/:b")
    m = w.recognize("/app:pkg:pub/" + "x/" * 16384 + "y")
    assert m is not None and m.params == {"a": ("x/" * 16384)[:-1], "b": "y"}
