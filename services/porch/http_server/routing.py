"""Route matching with route-recognizer 0.3.1's semantics (docs/kinode.md §1.3).

- A leading "/" is ignored when adding and when recognising.
- Patterns split into segments at both "/" and "."; a segment is static text,
  ":name" (one or more characters other than "/", captured), "*name" (one or more of
  any character, "/" included, captured) or "*" (the same, not captured).
- Of several matches the one with the most static segments wins, then the most params,
  then the most wildcards; on a full tie the earliest added.
- Adding an identical pattern again replaces its value (and keeps its place).
- Captures are raw: no percent-decoding. When a pattern can split a path in several
  ways (`/:a.:b` against "x.y.z") the earlier capture takes as much as it can
  (a="x.y", b="z"), as route-recognizer's thread order and a greedy regex both do.

Recognition is on the request hot path, and the path is the client's: it must cost
time LINEAR in the path's length whatever the patterns. A backtracking regex does not
(`/:a.:b.:c` against "a.a.a...a/" tried every split: cubic, seconds of CPU on the
event loop for a few KiB). So a dynamic pattern is a list of items (literal text,
param, wildcard) matched by a right-to-left pass over sets of path positions held as
bits of one Python int (`_Subject`): the positions from which the rest of the pattern
matches. Each item is a few whole-int operations (shift, and, one addition that
spreads a param's reach through runs of non-"/" bytes), so a pattern costs
O(items * path length / machine word). The captures are then read left to right,
each dynamic item taking the farthest end from which the rest still matches: the
greedy split, without trying any other. The common shape (no wildcard, at most one
param between two "/") skips all that: a split on "/" and a few string compares.

A fully static pattern is a dict hit (no other pattern can beat an exact static
match), and the dynamic patterns are grouped by their first static segment (for every
app, its process id) so a request only tries the few patterns of one app.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_SEGMENT = re.compile(r"[^/.]*")
LITERAL, PARAM, WILDCARD = 0, 1, 2
Item = tuple[int, bytes]  # (kind, literal bytes; b"" for a param or a wildcard)


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
    items: tuple[Item, ...]  # empty: fully static
    names: tuple[str | None, ...]  # capture names, None for an unnamed "*"
    slashes: int  # "/" in the literals: a path has exactly this many (at least, with wildcards)
    simple: tuple[tuple[str, str, bool], ...] | None  # see _simple
    value: T
    precedence: tuple[int, int, int, int] = (0, 0, 0, 0)  # see _precedence


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


def _bytes(text: str) -> bytes:
    """Paths and patterns are matched as UTF-8 (any str, lone surrogates too): a literal
    never matches inside a character, and no byte of a multi-byte character is "/"."""
    return text.encode("utf-8", "surrogatepass")


def compile_pattern(route: str) -> tuple[tuple[int, int, int], tuple[Item, ...], tuple[str | None, ...]]:
    """(rank, items, capture names) of a pattern without its leading "/"; no items when
    the pattern is fully static. Adjacent literal text is one item."""
    statics = params = wildcards = 0
    items: list[Item] = []
    names: list[str | None] = []
    literal = ""
    for sep, seg in _split(route):
        literal += sep
        if seg.startswith((":", "*")):
            if literal:
                items.append((LITERAL, _bytes(literal)))
                literal = ""
            if seg.startswith(":"):
                params += 1
                items.append((PARAM, b""))
            else:
                wildcards += 1
                items.append((WILDCARD, b""))
            names.append(seg[1:] or None)
        else:
            statics += 1
            literal += seg
    if not items:
        return (statics, params, wildcards), (), ()
    if literal:
        items.append((LITERAL, _bytes(literal)))
    return (statics, params, wildcards), tuple(items), tuple(names)


def _simple(route: str) -> tuple[tuple[str, str, bool], ...] | None:
    """The common shape, matched with a split on "/" and a few compares: no wildcard and
    at most one param in each "/"-separated part. Per part (text before the param, text
    after it, has a param); a part without a param is (its text, "", False). None for
    any other pattern (the general matcher)."""
    out = []
    for part in route.split("/"):
        segments = _split(part)
        dynamic = [i for i, (_, seg) in enumerate(segments) if seg.startswith((":", "*"))]
        if any(segments[i][1].startswith("*") for i in dynamic) or len(dynamic) > 1:
            return None
        if not dynamic:
            out.append((part, "", False))
            continue
        (i,) = dynamic
        before = "".join(sep + seg for sep, seg in segments[:i]) + segments[i][0]
        after = "".join(sep + seg for sep, seg in segments[i + 1:])
        out.append((before, after, True))
    return tuple(out)


def _precedence(route: _Route[T]) -> tuple[int, int, int, int]:
    """Sorts the route that wins a tie first: most statics, params, wildcards, then earliest."""
    statics, params, wildcards = route.rank
    return -statics, -params, -wildcards, route.order


def _group_key(route: str) -> str | None:
    """The first segment if it is static (the usual "<process id>"), else None."""
    seg = _SEGMENT.match(route)
    assert seg is not None
    first = seg.group()
    return None if first.startswith((":", "*")) else first


# Byte -> "1" for one byte value, "0" for every other: bytes.translate makes a path's
# bit mask for that byte at C speed.
_ONE_BYTE: dict[int, bytes] = {}
_FEW = 16  # literal occurrences set one by one; past this, masks are combined instead


class _Subject:
    """A request path prepared for the patterns tried against it.

    A set of positions p (0..n, n = end) is an int with bit n - p set for each: the end
    is bit 0 and moving right in the path is shifting right. Masks are computed once
    per path and shared by the patterns."""

    __slots__ = ("_masks", "_occ", "_parts", "key", "n", "slashes", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.slashes = text.count("/")
        self._parts: list[str] | None = None
        self.key = b""  # the UTF-8 bytes, made by `match` when it is first needed
        self.n = -1
        self._masks: dict[int, int] = {}
        self._occ: dict[bytes, int] = {}

    def match_simple(self, simple: tuple[tuple[str, str, bool], ...]) -> list[str] | None:
        """`match` for a pattern of the simple shape (see _simple): each "/"-part of the
        path against its part of the pattern, a param taking what its texts leave."""
        if self.slashes + 1 != len(simple):
            return None
        parts = self._parts
        if parts is None:
            parts = self._parts = self.text.split("/")
        captures = []
        for part, (before, after, param) in zip(parts, simple, strict=True):
            if not param:
                if part != before:
                    return None
            elif (len(part) > len(before) + len(after) and part.startswith(before)
                  and part.endswith(after)):
                captures.append(part[len(before):len(part) - len(after)])
            else:
                return None
        return captures

    def byte_mask(self, byte: int) -> int:
        mask = self._masks.get(byte)
        if mask is None:
            table = _ONE_BYTE.get(byte)
            if table is None:
                table = _ONE_BYTE[byte] = bytes(49 if i == byte else 48 for i in range(256))
            mask = self._masks[byte] = int(self.key.translate(table) + b"0", 2)
        return mask

    def occurrences(self, literal: bytes) -> int:
        """The positions where `literal` starts."""
        bits = self._occ.get(literal)
        if bits is not None:
            return bits
        if len(literal) == 1:
            bits = self.byte_mask(literal[0])
        else:
            n, find = self.n, self.key.find
            bits = 0
            p = find(literal)
            found = 0
            while p >= 0 and found < _FEW:
                bits |= 1 << (n - p)
                found += 1
                p = find(literal, p + 1)
            if p >= 0:  # many: one and-ed shift per byte instead (linear however many)
                bits = -1
                for j, byte in enumerate(literal):
                    bits &= self.byte_mask(byte) << j
        self._occ[literal] = bits
        return bits

    def corridor(self) -> int:
        """The positions 0..n-1 that are not "/": where a param may run."""
        return ((1 << (self.n + 1)) - 2) ^ self.byte_mask(47)

    def match(self, items: tuple[Item, ...], slashes: int, wild: bool) -> list[str] | None:
        """The captures of the pattern's dynamic items, or None if it does not match."""
        if self.slashes < slashes or (not wild and self.slashes != slashes):
            return None  # the literals' "/" must all be in the path, params add none
        if self.n < 0:
            self.key = _bytes(self.text)
            self.n = len(self.key)
        n = self.n
        first, last = items[0], items[-1]
        if first[0] == LITERAL and not self.key.startswith(first[1]):
            return None
        if last[0] == LITERAL and not self.key.endswith(last[1]):
            return None
        # reach[k]: the positions from which items[k:] match the rest of the path.
        reach = [0] * (len(items) + 1)
        f = reach[len(items)] = 1  # items[len:] (nothing) matches only at the end
        corridor = -1
        last_k = len(items) - 1
        for k in range(last_k, -1, -1):
            kind, literal = items[k]
            if kind == LITERAL:
                if k == last_k:  # the path ends with it (checked above)
                    f = 1 << len(literal)
                elif k == 0:  # and starts with it
                    f = 1 << n if (f >> (n - len(literal))) & 1 else 0
                else:
                    f = self.occurrences(literal) & (f << len(literal))
            elif kind == WILDCARD:  # any start before the farthest end
                low = f & -f
                f = ((1 << (n + 1)) - 1) ^ ((low << 1) - 1) if f else 0
            else:  # PARAM: a start before some end with no "/" between them
                if corridor == -1:
                    corridor = self.corridor()
                seeds = (f << 1) & corridor
                f = (((corridor + seeds) ^ corridor) & corridor) | seeds
            if not f:
                return None
            reach[k] = f
        if not (f >> n) & 1:
            return None  # no match from the start of the path
        captures = []
        p = 0
        for k, (kind, literal) in enumerate(items):
            if kind == LITERAL:
                p += len(literal)
                continue
            ends = reach[k + 1]
            # The farthest end q from which the rest matches (lowest bit = largest q),
            # within a param's run of non-"/" bytes: q <= the next "/" (or the end).
            floor = 0
            if kind == PARAM:
                slash = self.key.find(b"/", p)
                floor = n - (slash if slash >= 0 else n)
            ends >>= floor
            q = n - ((ends & -ends).bit_length() - 1 + floor)
            captures.append(self.key[p:q].decode("utf-8", "surrogatepass"))
            p = q
        return captures


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
        rank, items, names = compile_pattern(key)
        slashes = sum(lit.count(b"/") for kind, lit in items if kind == LITERAL)
        simple = _simple(key) if items else None
        route = _Route(pattern, self._order, rank, items, names, slashes, simple, value)
        self._order += 1
        self._routes[key] = route
        if not items:
            self._exact[key] = route
        else:  # kept best first: the first of a group that matches is its winner
            group = self._groups.setdefault(_group_key(key), [])
            route.precedence = _precedence(route)
            bisect.insort(group, route, key=_precedence)

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
        best_captures: list[str] = []
        first = _SEGMENT.match(key)
        assert first is not None
        subject: _Subject | None = None
        for group in (self._groups.get(first.group()), self._groups.get(None)):
            if not group:
                continue
            for route in group:
                if best is not None and route.precedence > best.precedence:
                    break  # neither this one nor any after it could win
                if subject is None:
                    subject = _Subject(key)
                if route.simple is not None:
                    captures = subject.match_simple(route.simple)
                else:
                    captures = subject.match(route.items, route.slashes, route.rank[2] > 0)
                if captures is not None:
                    best, best_captures = route, captures
                    break
        if best is None:
            return None
        params = {name: value for name, value in zip(best.names, best_captures, strict=True) if name}
        return Match(best.pattern, best.value, params)
