"""One HTTP request and the means to answer it, independent of the connection.

The gateway decides; the listener (over porch.http_server.h1) implements `respond`.
Keeping the decision code free of connection types makes it testable and keeps the
hot path short.
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
    # For the figures and the access log (porch.http_server.figures), set by the
    # gateway: the process owning the path ("" for porch's own), the bound path, the
    # request id, when it was forwarded (time.monotonic()).
    app: str
    bound: str
    rid: str
    forwarded: float

    def header(self, name: str) -> str | None:
        """The last value of a request header (case-insensitive), or None."""

    def header_items(self) -> list[tuple[str, str]]:
        """Every request header, in order, repeated names kept; names as received."""

    def respond(self, status: int, headers: Headers, body: bytes, *, own: bool = True) -> None:
        """Send the response (Content-Length and Date are added). `own`: an answer
        porch makes itself (its pages, its errors), which gets OWN_HEADERS where the
        caller set none; False for a process's answer (and its cached content), sent
        as the process made it."""

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


DATE = HttpDate()  # the one the worker's responses use


def closing_response(status: int, text: str, extra: str = "") -> bytes:
    """A whole plain-text response written straight to a socket that is then closed
    (413, 408, 431, 503 at accept: answers given outside a request's normal path).
    `extra`: more header lines, each ending in CRLF."""
    body = (text + "\n").encode()
    return (f"HTTP/1.1 {status} {reason(status)}\r\nContent-Type: text/plain\r\n"
            f"X-Content-Type-Options: nosniff\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nDate: {DATE.now()}\r\n\r\n"
            ).encode() + body


TEXT = ("Content-Type", "text/plain; charset=utf-8")
HTML = ("Content-Type", "text/html; charset=utf-8")
JSON = ("Content-Type", "application/json")

# On everything porch answers itself (issue 9 item 15): browsers must not guess another
# type than the one sent, and must not show porch's pages (the login page above all)
# in a frame of another site (clickjacking).
NOSNIFF = ("X-Content-Type-Options", "nosniff")
OWN_HEADERS: Headers = [NOSNIFF, ("X-Frame-Options", "DENY"),
                        ("Content-Security-Policy", "frame-ancestors 'none'")]
# On answers of authenticated paths whose app set no Cache-Control: a cache in between
# must never keep one owner's page for anyone else.
PRIVATE = ("Cache-Control", "private, no-store")


def with_own_headers(headers: Headers) -> Headers:
    """headers plus each of OWN_HEADERS whose name they do not already set (a
    Content-Security-Policy without frame-ancestors gets a second one that has it)."""
    names = {name.lower(): value for name, value in headers}
    out = list(headers)
    for name, value in OWN_HEADERS:
        have = names.get(name.lower())
        if have is None or (name == "Content-Security-Policy" and "frame-ancestors" not in have):
            out.append((name, value))
    return out


def has_header(headers: Headers, name: str) -> bool:
    lname = name.lower()
    return any(n.lower() == lname for n, _ in headers)
