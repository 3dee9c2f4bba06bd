"""The bindings: which process answers which path, with which flags.

Pure state (no I/O): the http-server saves every change through `state.BindingStore`
before it applies it, so a restarted server serves exactly what was bound (and
acknowledged), with no action by the processes that bound it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from porch.address import RPC
from porch.http_server.paths import first_segment
from porch.http_server.routing import Match, RouteTable

RPC_PROCESS = RPC  # the built-in RPC endpoint's owner; its messages go out under this id
RPC_PATH = "/rpc:distro:sys/message"


@dataclass(frozen=True, slots=True)
class Static:
    """Cached content served for GET without asking the process."""

    body: bytes
    mime: str | None
    etag: str = field(default="")
    sha256: str = field(default="")  # hex; names its file in the node's state (computed once)

    @classmethod
    def of(cls, body: bytes, mime: str | None) -> Static:
        digest = hashlib.sha256(body).hexdigest()
        return cls(body, mime, '"' + digest[:32] + '"', digest)


@dataclass(frozen=True, slots=True)
class HttpBinding:
    path: str  # the full pattern, e.g. "/chess:chess:sys/games/:id"
    app: str | None  # owning process id; None = tombstone (answers 404)
    authenticated: bool = False
    local_only: bool = False
    secure_subdomain: str | None = None
    static: Static | None = None
    timeout_ms: int = 0
    direct: bool = False  # requests may go on a direct link to the app (docs/direct.md)


@dataclass(frozen=True, slots=True)
class WsBinding:
    path: str
    app: str | None
    authenticated: bool = False
    secure_subdomain: str | None = None
    extension: bool = False
    direct: bool = False  # its sockets are handed to the app (docs/websockets.md)


@dataclass(frozen=True, slots=True)
class Resolved:
    binding: HttpBinding
    params: dict[str, str]
    fallback: bool


class BindingTable:
    def __init__(self) -> None:
        self.http: RouteTable[HttpBinding] = RouteTable()
        self.ws: RouteTable[WsBinding] = RouteTable()
        # The built-in RPC endpoint (docs/kinode.md §4.8): local only, no login.
        self.http.add(RPC_PATH, HttpBinding(RPC_PATH, RPC_PROCESS, local_only=True))

    def replace(self, other: BindingTable) -> None:
        """Serve `other`'s bindings from now on (a member worker following the
        database, porch.http_server.follow); references to this table stay valid."""
        self.http = other.http
        self.ws = other.ws

    def bind_http(self, binding: HttpBinding) -> None:
        self.http.add(binding.path, binding)

    def bind_ws(self, binding: WsBinding) -> None:
        self.ws.add(binding.path, binding)

    def bind(self, binding: HttpBinding | WsBinding) -> None:
        if isinstance(binding, WsBinding):
            self.bind_ws(binding)
        else:
            self.bind_http(binding)

    def resolve_http(self, path: str) -> Resolved | None:
        """The binding for a normalised request path (docs/kinode.md §1.3), or None (404).

        No match: fall back to the binding of the path's first segment (in practice the
        app's "/" binding), without params. A tombstone matches (and then 404s); it
        never falls back.
        """
        match: Match[HttpBinding] | None = self.http.recognize(path)
        if match is not None:
            return Resolved(match.value, match.params, False)
        base = self.http.recognize(first_segment(path))
        if base is None:
            return None
        return Resolved(base.value, {}, True)

    def resolve_ws(self, path: str) -> tuple[WsBinding, dict[str, str]] | None:
        match = self.ws.recognize(path)  # no fallback for WebSockets
        return (match.value, match.params) if match is not None else None

    def secure_subdomains(self) -> dict[str, set[str]]:
        """Each secure subdomain in use -> the apps (process ids) with bindings on it."""
        subs: dict[str, set[str]] = {}
        for table in (self.http, self.ws):
            for _, b in table.items():
                if b.app and b.secure_subdomain:
                    subs.setdefault(b.secure_subdomain, set()).add(b.app)
        return subs

    def apps(self) -> dict[str, str]:
        """app process id -> the path to link to (its root binding if it has one).
        Never a pattern: a param or wildcard in any segment after the first (the first
        is a process id, with its ":"s, or a homepage path that holds none)."""
        out: dict[str, str] = {}
        for path, b in self.http.items():
            after_first = path.lstrip("/").partition("/")[2]
            if b.app is None or b.app == RPC_PROCESS or ":" in after_first or "*" in after_first:
                continue
            root = "/" + b.app
            if path == root or b.app not in out:
                out[b.app] = path if path else "/"
        return out

    # -- persistence (pure: to and from plain data; blobs by content hash) -------

    def to_data(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """(JSON-able description, {content hash: static body}) in insertion order."""
        blobs: dict[str, bytes] = {}
        http = []
        for _, b in self.http.items():
            if b.app == RPC_PROCESS:
                continue
            entry, blob = http_entry(b)
            if blob is not None:
                blobs[blob[0]] = blob[1]
            http.append(entry)
        ws = [ws_entry(b) for _, b in self.ws.items()]
        return {"version": 1, "http": http, "ws": ws}, blobs

    @classmethod
    def from_data(cls, data: dict[str, Any], blobs: dict[str, bytes]) -> BindingTable:
        table = cls()
        for e in data.get("http", []):
            table.apply_entry("http", e, blobs)
        for e in data.get("ws", []):
            table.apply_entry("ws", e, blobs)
        return table

    def apply_entry(self, kind: str, e: dict[str, Any], blobs: dict[str, bytes]) -> None:
        """Put one saved entry ("http" or "ws") in the table, replacing its path's."""
        if kind == "ws":
            self.bind_ws(WsBinding(e["path"], e["app"], e["authenticated"], e["secure_subdomain"],
                                   e["extension"], bool(e.get("direct", False))))
            return
        static = None
        if e.get("static"):
            body = blobs.get(e["static"]["sha256"])
            if body is None:
                return  # content lost: better 404/fallback than wrong bytes
            static = Static.of(body, e["static"]["mime"])
        self.bind_http(HttpBinding(e["path"], e["app"], e["authenticated"], e["local_only"],
                                   e["secure_subdomain"], static, e.get("timeout_ms", 0),
                                   bool(e.get("direct", False))))


def http_entry(b: HttpBinding) -> tuple[dict[str, Any], tuple[str, bytes] | None]:
    """A binding as saved data, and its static content as (sha256, body) if it has any."""
    entry: dict[str, Any] = {
        "path": b.path, "app": b.app, "authenticated": b.authenticated,
        "local_only": b.local_only, "secure_subdomain": b.secure_subdomain,
        "timeout_ms": b.timeout_ms,
    }
    if b.static is None:
        return entry, None
    digest = b.static.sha256 or hashlib.sha256(b.static.body).hexdigest()
    entry["static"] = {"sha256": digest, "mime": b.static.mime}
    return entry, (digest, b.static.body)


def ws_entry(b: WsBinding) -> dict[str, Any]:
    return {"path": b.path, "app": b.app, "authenticated": b.authenticated,
            "secure_subdomain": b.secure_subdomain, "extension": b.extension}
