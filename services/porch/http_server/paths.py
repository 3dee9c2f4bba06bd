"""Path prefixing and normalisation (docs/kinode.md §1.2), secure subdomains (§1.5)."""

from __future__ import annotations

import re

from porch.address import HOMEPAGE

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def normalize(path: str) -> str:
    """Remove one trailing slash ("/a/" -> "/a", "/" -> "", "/a//" -> "/a/")."""
    return path[:-1] if path.endswith("/") else path


def format_path(process_id: str, path: str) -> str:
    """The full path a process's bind lands on: under /<process id>, except homepage.

    "/" -> "/chess:chess:sys", "/games/" -> "/chess:chess:sys/games",
    "api" -> "/chess:chess:sys/api". Always the sender's own id: that is ownership.
    """
    if process_id == HOMEPAGE:
        return normalize(path)
    if path.startswith("/"):
        return "/" + process_id + normalize(path)
    return "/" + process_id + "/" + normalize(path)


def homepage_may_bind(path: str) -> bool:
    """The homepage binds raw paths (Kinode), but only outside every process's
    namespace: the first segment of its path must not be a process id (each has two
    ":"), nor a pattern (":name", "*") that would match one. The routing table ignores
    a leading "/", so "a:b:c/x" is "/a:b:c/x" there. "" (the node's "/") is its own."""
    key = path[1:] if path.startswith("/") else path
    first = key.split("/", 1)[0]
    return ":" not in first and "*" not in first


def secure_subdomain(process_id: str) -> str:
    """package + "-" + publisher, non-alphanumerics as "-": chess:chess:template.os ->
    chess-template-os. All processes of one package share it."""
    _, package, publisher = process_id.split(":")
    return _NOT_ALNUM.sub("-", f"{package}-{publisher}")


def first_segment(path: str) -> str:
    """The base the HTTP fallback tries: "/chess:chess:sys/a/b" -> "chess:chess:sys"."""
    parts = path.split("/", 2)
    return parts[1] if len(parts) > 1 else ""
