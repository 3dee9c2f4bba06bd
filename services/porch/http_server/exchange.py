"""One HTTP request and the means to answer it, independent of Tornado.

The gateway decides; the listener (Tornado glue) implements `respond`. Keeping the
decision code free of Tornado types makes it testable and keeps the hot path short.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

Headers = list[tuple[str, str]]


class Exchange(Protocol):
    method: str
    path: str  # raw, still percent-encoded, without the query
    query: str  # raw query string, without "?"
    body: bytes
    peer_ip: str | None
    peer_port: int | None
    done: bool  # responded, or the client went away

    def header(self, name: str) -> str | None:
        """The last value of a request header (case-insensitive), or None."""

    def header_items(self) -> list[tuple[str, str]]:
        """Every request header, in order, repeated names kept; names as received."""

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Send the response (Content-Length, Date and defaults are the caller's)."""

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call back if the client goes away before the response is sent."""


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class HttpDate:
    """The Date header value, formatted at most once a second (it is on every response)."""

    def __init__(self) -> None:
        self._second = 0
        self._value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True)
        return self._value


TEXT = ("Content-Type", "text/plain; charset=utf-8")
HTML = ("Content-Type", "text/html; charset=utf-8")
JSON = ("Content-Type", "application/json")
