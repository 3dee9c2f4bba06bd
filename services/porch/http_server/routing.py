"""Route matching with route-recognizer 0.3.1's semantics (reference section 1.3).

- A leading "/" is ignored when adding and when recognising.
- Patterns split into segments at both "/" and "."; a segment is static text,
  ":name" (one or more characters other than "/", captured), "*name" (one or more of
  any character, "/" included, captured) or "*" (the same, not captured).
- Of several matches the one with the most static segments wins, then the most params,
  then the most wildcards; on a full tie the earliest added.
- Adding an identical pattern again replaces its value (and keeps its place).
- Captures are raw: no percent-decoding.

Recognition is on the request hot path, so: a fully static pattern is a dict hit (no
other pattern can beat an exact static match), and the dynamic patterns are grouped by
their first static segment (for every app, its process id) so a request only tries the
few patterns of one app.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_SEGMENT = re.compile(r"[^/.]*")


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    pattern: str
    value: T
    params: dict[str, str]


@dataclass(slots=True)
class _Route(Generic[T]):
    pattern: str
    order: int
    rank: tuple[int, int, int]  # (statics, params, wildcards)
    regex: re.Pattern[str] | None  # None: fully static
    names: tuple[str | None, ...]  # capture names, None for an unnamed "*"
    value: T


def _split(route: str) -> list[tuple[str, str]]:
    """[(separator before it, segment)] for a pattern without its leading "/"."""
    out = []
    sep = ""
    pos = 0
    while True:
        seg = _SEGMENT.match(route, pos)
        assert seg is not None
        out.append((sep, seg.group()))
        pos = seg.end()
        if pos >= len(route):
            return out
        sep = route[pos]
        pos += 1


def compile_pattern(route: str) -> tuple[tuple[int, int, int], re.Pattern[str] | None, tuple[str | None, ...]]:
    statics = params = wildcards = 0
    parts: list[str] = []
    names: list[str | None] = []
    dynamic = False
    for sep, seg in _split(route):
        parts.append(re.escape(sep))
        if seg.startswith(":"):
            params += 1
            dynamic = True
            parts.append("([^/]+)")
            names.append(seg[1:])
        elif seg.startswith("*"):
            wildcards += 1
            dynamic = True
            parts.append("(.+)")
            names.append(seg[1:] or None)
        else:
            statics += 1
            parts.append(re.escape(seg))
    regex = re.compile("".join(parts), re.DOTALL) if dynamic else None
    return (statics, params, wildcards), regex, tuple(names)


def _group_key(route: str) -> str | None:
    """The first segment if it is static (the usual "<process id>"), else None."""
    seg = _SEGMENT.match(route)
    assert seg is not None
    first = seg.group()
    return None if first.startswith((":", "*")) else first


class RouteTable(Generic[T]):
    def __init__(self) -> None:
        self._routes: dict[str, _Route[T]] = {}  # stripped pattern -> route
        self._exact: dict[str, _Route[T]] = {}
        self._groups: dict[str | None, list[_Route[T]]] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._routes)

    def add(self, pattern: str, value: T) -> None:
        key = pattern[1:] if pattern.startswith("/") else pattern
        existing = self._routes.get(key)
        if existing is not None:
            existing.pattern = pattern
            existing.value = value
            return
        rank, regex, names = compile_pattern(key)
        route = _Route(pattern, self._order, rank, regex, names, value)
        self._order += 1
        self._routes[key] = route
        if regex is None:
            self._exact[key] = route
        else:
            self._groups.setdefault(_group_key(key), []).append(route)

    def get(self, pattern: str) -> T | None:
        route = self._routes.get(pattern[1:] if pattern.startswith("/") else pattern)
        return route.value if route is not None else None

    def items(self) -> list[tuple[str, T]]:
        """(pattern, value) in insertion order (the tie-break order)."""
        return [(r.pattern, r.value) for r in sorted(self._routes.values(), key=lambda r: r.order)]

    def recognize(self, path: str) -> Match[T] | None:
        key = path[1:] if path.startswith("/") else path
        exact = self._exact.get(key)
        if exact is not None:
            return Match(exact.pattern, exact.value, {})
        best: _Route[T] | None = None
        best_groups: tuple[str, ...] = ()
        first = _SEGMENT.match(key)
        assert first is not None
        for group in (self._groups.get(first.group()), self._groups.get(None)):
            if not group:
                continue
            for route in group:
                assert route.regex is not None
                m = route.regex.fullmatch(key)
                if m is None:
                    continue
                if best is None or route.rank > best.rank or (
                    route.rank == best.rank and route.order < best.order
                ):
                    best, best_groups = route, m.groups()
        if best is None:
            return None
        params = {name: value for name, value in zip(best.names, best_groups, strict=True) if name}
        return Match(best.pattern, best.value, params)
