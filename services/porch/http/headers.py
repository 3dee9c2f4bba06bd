"""HTTP headers as a process sees them: the headers of a request the http-server
forwards (`IncomingHttpRequest.headers`) and of a response the http-client returns
(`porch.http.client.HttpResponse.headers`) are one type with one rule.

The rule for a repeated name: `headers.get(name)` and `headers[name]` give the LAST
value, `headers.get_all(name)` every value in order. Last, because that is what a Kinode
process sees on both sides (its header maps keep one value per name, the last one
inserted), and what porch's query parameters do; nothing is lost, since the pairs keep
every repeat. Names are matched case-insensitively and kept as they came (the
http-server sends them lower-case, the http-client Pascal-Case).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class Headers:
    """Read-only (name, value) pairs in order, repeats kept, looked up case-insensitively.

    Iterating gives the pairs; `names()` the distinct names. See the module docstring
    for the rule on repeated names."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = [(str(name), str(value)) for name, value in pairs]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The last value of `name`, or default."""
        lower = name.lower()
        for n, v in reversed(self._pairs):
            if n.lower() == lower:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, in the order received."""
        lower = name.lower()
        return [v for n, v in self._pairs if n.lower() == lower]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def items(self) -> list[tuple[str, str]]:
        """The (name, value) pairs, repeats included."""
        return list(self._pairs)

    def names(self) -> list[str]:
        """Each name once, in the order first seen, lower-case."""
        return list(dict.fromkeys(n.lower() for n, _ in self._pairs))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and other._pairs == self._pairs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"
