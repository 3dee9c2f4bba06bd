"""Header names and values between the protobuf wire and HTTP/1.1.

Kinode turns response header names into Pascal-Case (`content-type` -> `Content-Type`)
and skips request headers with invalid names or values silently (docs/kinode.md §6.2). Unlike
Kinode, repeated headers are kept on both sides (the wire is a list, not a map).
"""

from __future__ import annotations

from collections.abc import Iterable

from porch.http_client.validate import TOKEN

# Framing is the client's job: a caller's Content-Length that disagrees with the blob
# would corrupt the connection for the next request on it.
_FRAMING = {"content-length", "transfer-encoding"}


def pascal_case(name: str) -> str:
    """`x-foo-bar` -> `X-Foo-Bar`, whatever case the server used (Kinode's rule)."""
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


def valid_value(value: str) -> bool:
    """No control characters but horizontal tab (no header injection, no NUL)."""
    return not any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value)


def wire_value(value: str) -> str:
    """A value http.client can send: it encodes Latin-1, so non-Latin-1 text is sent as
    its UTF-8 bytes (the str whose Latin-1 encoding is those bytes)."""
    if value.isascii():
        return value
    return value.encode("utf-8").decode("latin-1")


def request_headers(pairs: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """(the headers to send, in order, repeats kept; the names skipped and why)."""
    keep: list[tuple[str, str]] = []
    skipped: list[str] = []
    for name, value in pairs:
        if TOKEN.fullmatch(name) is None:
            skipped.append(f"{name!r}: invalid name")
        elif not valid_value(value):
            skipped.append(f"{name}: invalid value")
        elif name.lower() in _FRAMING:
            skipped.append(f"{name}: set by the client from the blob")
        else:
            keep.append((name, wire_value(value)))
    return keep, skipped


def response_value(value: str) -> str:
    """http.client hands values over decoded as Latin-1; most non-ASCII values on the
    wire are UTF-8, so decode them as such when they are (Kinode gives "" instead)."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def response_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pascal-Case names, repeated headers kept in order."""
    return [(pascal_case(name), response_value(value)) for name, value in pairs]
