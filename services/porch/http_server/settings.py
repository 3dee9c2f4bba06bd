"""The http-server's settings: the [http_server] table of porch.toml, with defaults.

Every limit docs/architecture.md §6 and the README name is here, with a default a serious server would pick.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from porch.http_server.hosts import check_pattern
from porch.http_server.ratelimit import Network, parse_networks
from porch.node.config import ConfigError, settings_from

MiB = 1024 * 1024


@dataclass(frozen=True)
class HttpServerSettings:
    # Address to listen on. Kinode listens on 0.0.0.0 (IPv4); so does porch by default.
    host: str = "0.0.0.0"
    # 0 = the port this node chose at first start (state/port), else the first free
    # port from 8080. `porch up --port P` overrides for one run and fails if P is busy.
    port: int = 0
    # How long a process may take to answer an HTTP request before the client gets 504
    # (Kinode: 15 s then 408). A binding can set its own (Bind.timeout_ms).
    request_timeout_s: float = 15.0
    # Request bodies larger than this get 413 before they are read.
    max_body_bytes: int = 16 * MiB
    # Request line + headers larger than this get 431, then the connection is closed.
    max_header_bytes: int = 64 * 1024
    # A connection that sends no (complete) request headers for this long is closed:
    # slow-header clients cannot hold connections forever, and idle keep-alive
    # connections are closed after it.
    idle_timeout_s: float = 60.0
    # A request body that takes longer than this to arrive (in total, from the end of
    # its head) is answered 408 and its connection closed; the app never sees it.
    body_timeout_s: float = 60.0
    # Lifetime of the login cookie (Kinode: 26 weeks).
    session_days: float = 30.0
    # Failed login attempts per client address per minute before 429 (successful
    # logins never count).
    login_attempts_per_minute: int = 10
    # Addresses (or CIDR networks) of reverse proxies in front of the server, e.g.
    # ["127.0.0.1"] for a TLS proxy on the same host: only for a peer listed here are
    # X-Forwarded-For / X-Real-Ip believed, to tell its clients apart for the login
    # rate limit. Default: none (every client is its TCP peer address).
    trusted_proxies: tuple[str, ...] = ()
    # HTTP connections open at once (WebSockets count apart, max_websockets); past it
    # a new connection is answered 503 (Retry-After: 1) and closed. The worker lifts its
    # open-files limit to the hard limit at start; both maxima should fit in it.
    max_connections: int = 10_000
    # Server-side WebSockets open at once, over all apps (Kinode: 128).
    max_websockets: int = 4096
    # Largest WebSocket message accepted from a client.
    ws_max_message_bytes: int = 16 * MiB
    # Bytes queued for one client (sent by its app, not yet taken by the client) before
    # it counts as too slow and is closed with 1008.
    ws_send_queue_bytes: int = 4 * MiB
    # Seconds between server pings on idle WebSockets (0 = never).
    ws_ping_interval_s: float = 30.0
    # permessage-deflate (RFC 7692) on the server's WebSockets, for clients that offer
    # it (porch.ws.deflate). Off by default: compression trades the worker's
    # CPU for bytes on the wire (a few microseconds per small message, ~5 ms per MiB
    # of JSON, ~30 ms per MiB of incompressible binary, in the worker's one loop) and
    # memory (measured ~45 KiB per socket, up to ~80 KiB, against ~3 KiB without);
    # uncompressed frames are the measured fast path.
    # Worth it for chatty text (JSON) over slow links, not for binary or loopback.
    ws_compression: bool = False
    # Set when a TLS-terminating proxy is in front: cookies get the Secure attribute
    # and redirects use https.
    https: bool = False
    # Host names the node answers to besides localhost, *.localhost and IP literals
    # (every other Host is answered 400: DNS rebinding). "node.example.com" allows that
    # name and one label in front of it (secure subdomains); "*.example.com" any
    # subdomain; ".example.com" the name and any subdomain; "*" any name (no check).
    allowed_hosts: tuple[str, ...] = ()
    # Worker processes serving HTTP on the one port (docs/workers.md): one holds the
    # node's WebSockets and binding actions, the others serve HTTP beside it. 0: a
    # quarter of the cores, 1 to 4 (the kernel and each app are one process each: past
    # that, more workers wait for them; bench/README.md "Scaling model").
    workers: int = 0
    # The worker's event loop: "auto" (uvloop when it is installed, else asyncio's
    # own), "asyncio", or "uvloop" (refused at start if it is not installed).
    event_loop: str = "auto"

    def __post_init__(self) -> None:
        """Values that would make the server misbehave are refused at load, with the
        setting's name (porch up checks before starting anything)."""
        if not 0 <= self.port <= 65535:
            raise ConfigError("[http_server] port must be 0 (choose) or 1-65535")
        for name in ("max_body_bytes", "max_header_bytes", "login_attempts_per_minute",
                     "max_connections", "max_websockets", "ws_max_message_bytes", "ws_send_queue_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[http_server] {name} must be at least 1")
        for name in ("request_timeout_s", "idle_timeout_s", "body_timeout_s", "session_days"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"[http_server] {name} must be more than 0")
        if not 0 <= self.workers <= 64:
            raise ConfigError("[http_server] workers must be 0 (a quarter of the cores, 1-4) or 1-64")
        if self.event_loop not in ("auto", "asyncio", "uvloop"):
            raise ConfigError('[http_server] event_loop must be "auto", "asyncio" or "uvloop"')
        if self.ws_ping_interval_s < 0:
            raise ConfigError("[http_server] ws_ping_interval_s must be 0 (never) or more")
        for entry in self.allowed_hosts:
            try:
                check_pattern(entry)
            except ValueError as exc:
                raise ConfigError(f"[http_server] allowed_hosts: {exc}") from None
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"[http_server] trusted_proxies: {exc}") from None

    def worker_count(self, cores: int | None = None) -> int:
        """How many workers run: `workers`, or for 0 a quarter of the cores (1 to 4)."""
        if self.workers:
            return self.workers
        cores = cores if cores is not None else len(os.sched_getaffinity(0))
        return min(4, max(1, cores // 4))

    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)


def load_settings(section: dict[str, Any], where: str = "porch.toml [http_server]") -> HttpServerSettings:
    """The [http_server] table checked (names, types, ranges), as `porch up` and the
    service itself load it."""
    return settings_from(section, HttpServerSettings, where)
