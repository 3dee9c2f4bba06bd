"""The checks an outgoing request passes before anything is sent (docs/kinode.md §6.2).

Kinode parses the method with `http::Method`, the URL with the `url` crate and the
version against five strings; each failure is its own typed error, so the caller can
tell a typo from a network failure. These functions decide which, without I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# RFC 9110 token: the method, and header names.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
# Whitespace or a control character anywhere makes a URL unusable (Kinode's url crate
# would strip some; a process sending them has made a mistake worth reporting).
_UNUSABLE = re.compile(r"[\s\x00-\x1f\x7f]")
# Characters the WHATWG URL standard forbids in a host (besides those urlsplit ends it on).
_FORBIDDEN_HOST = set(" <>\\^|%\"`{}")
# Schemes whose URLs must have an authority ("special" in the URL standard).
_SPECIAL = {"http", "https", "ws", "wss", "ftp"}

VERSIONS = ("HTTP/0.9", "HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3.0")
# What the http-client speaks: a request for one of the other VERSIONS fails with
# ExecuteRequestFailed rather than silently going out as HTTP/1.1.
SPOKEN_VERSIONS = ("HTTP/1.0", "HTTP/1.1")


def valid_method(method: str) -> bool:
    """Extension methods ("FOO", even "get") are valid; malformed tokens are not."""
    return TOKEN.fullmatch(method) is not None


def valid_version(version: str) -> bool:
    return version in VERSIONS


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    scheme: str          # lower-case
    host: str            # "" when the URL has no authority (mailto:, data:)
    port: int | None     # explicit or the scheme's default


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


def parse_absolute_url(url: str) -> ParsedUrl | None:
    """The URL's parts if it is absolute and well formed, else None (BadUrl).

    A URL without a host (`mailto:x`) is well formed: it fails later, when the request
    is built (BuildRequestFailed), as in Kinode.
    """
    if not url or _UNUSABLE.search(url):
        return None
    scheme, sep, rest = url.partition(":")
    if not sep or not _SCHEME.fullmatch(scheme):
        return None
    scheme = scheme.lower()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # bad port, bad IPv6 brackets
        return None
    host = parts.hostname or ""
    if scheme in _SPECIAL:
        if not rest.startswith("//") or not host:
            return None
    elif scheme == "file":
        return ParsedUrl(scheme, host, None)
    elif not rest:
        return None
    if any(c in _FORBIDDEN_HOST for c in host):
        return None
    return ParsedUrl(scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme))
