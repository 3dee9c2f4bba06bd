"""The http-server's figures and access log (issue 13, docs/metrics.md).

The listener calls `record` once per answered request (and for a client that left
before its answer: 499, as nginx counts it); the gateway names the owning process and
the bound path on the exchange (`app`, `bound`) and reports how long the process took
(`answered`); the WebSocket layer reports opens, frames and closes. Everything per
process is in one `AppStats` per process id, so a request costs two dict lookups and a
few additions; the scrape turns them into families (`families`).

Label values a client chooses are never labels: the method is one of the standard ones
or OTHER, the path is the binding's (not the request's), and every family is bounded
(porch.node.metrics).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from porch.address import HTTP_SERVER
from porch.node.metrics import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    LATENCY_BUCKETS,
    MAX_SERIES,
    OTHER,
    Family,
    Histogram,
    Labels,
)

access_log = logging.getLogger("porch.access")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
_CLASSES = tuple(f"{i}xx" for i in range(10))
CLIENT_GONE = 499  # the client closed the connection before its answer (nginx's number)
OWN = HTTP_SERVER  # the process label of what porch answers itself
# A request id from a trusted proxy (nginx's $request_id: 32 hex digits) is kept if it
# looks like one; anything else is replaced.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_MAX_LOGGED_PATH = 200


class AppStats:
    """What one process's traffic came to since the worker started."""

    __slots__ = ("app", "bytes_in", "bytes_out", "errors", "front", "requests", "ws_bytes_in",
                 "ws_bytes_out", "ws_in", "ws_out")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0  # answered 5xx
        self.bytes_in = 0
        self.bytes_out = 0
        self.front = Histogram(LATENCY_BUCKETS)  # head received -> answer written
        self.app = Histogram(LATENCY_BUCKETS)  # forwarded -> the process's answer arrived
        self.ws_in = 0  # frames from clients to the process
        self.ws_out = 0  # frames from the process to clients
        self.ws_bytes_in = 0
        self.ws_bytes_out = 0


def printable(text: str, limit: int = _MAX_LOGGED_PATH) -> str:
    """A path as it can go into a log line: cut, control characters escaped (a client
    chooses it: it must not write terminal escapes or fake lines into the log)."""
    text = text[:limit]
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else f"\\x{ord(c):02x}" if ord(c) < 256
                   else f"\\u{ord(c):04x}" for c in text)


class HttpFigures:
    """`enabled`: count ([metrics] enabled); `access`: log a line per request and per
    WebSocket open and close ([logging] access_log)."""

    def __init__(self, enabled: bool = True, access: bool = False) -> None:
        self.enabled = enabled
        self.access = access
        self.apps: dict[str, AppStats] = {}
        self.requests = Family("porch_http_requests", "HTTP requests answered, by the process that owns "
                               "the path (http-server:distro:sys for porch's own pages and refusals), the "
                               "bound path, the method (or OTHER) and the status class.",
                               COUNTER, ("process", "bound_path", "method", "status"))
        self.ws_closes = Family("porch_websocket_closes", "Server-side WebSockets closed, by owner and "
                                "reason: client, app, owner_died, unbound, slow_reader, too_big, protocol, "
                                "undeliverable, kernel_restart, server_restart.", COUNTER,
                                ("process", "reason"))
        # Who the client is, for the access log (the gateway: behind a trusted proxy, the
        # address it forwards for).
        self.client_of: Callable[[Any], str | None] = lambda ex: ex.peer_ip
        self._rid_prefix = os.urandom(4).hex() + "-"
        self._rid = itertools.count(1)

    # ------------------------------------------------------------------ requests

    def stats(self, app: str) -> AppStats:
        stats = self.apps.get(app)
        if stats is None:
            if len(self.apps) >= MAX_SERIES:
                app = OTHER
                stats = self.apps.get(app)
            if stats is None:
                stats = self.apps[app] = AppStats()
        return stats

    def request_id(self) -> str:
        """A new id, unique to this worker (random prefix) and request (counter)."""
        return f"{self._rid_prefix}{next(self._rid):x}"

    @staticmethod
    def valid_request_id(value: str | None) -> bool:
        return value is not None and _REQUEST_ID.fullmatch(value) is not None

    def record(self, ex: Any, status: int, nbytes: int) -> None:
        """The listener's hook: `ex` (a listener._Exchange) was answered `status` with a
        body of `nbytes` (or the client left: CLIENT_GONE)."""
        seconds = time.monotonic() - ex.started
        app = ex.app or OWN
        if self.enabled:
            method = ex.method if ex.method in METHODS else "OTHER"
            self.requests.inc((app, ex.bound, method, _CLASSES[status // 100] if 0 <= status < 1000
                               else "other"))
            stats = self.apps.get(app) or self.stats(app)
            stats.requests += 1
            if status >= 500:
                stats.errors += 1
            stats.bytes_in += len(ex.body)
            stats.bytes_out += nbytes
            stats.front.observe(seconds)
        if self.access:
            self._log_request(ex, app, status, nbytes, seconds)

    def answered(self, app: str, seconds: float) -> None:
        """The process took `seconds` to answer a forwarded request."""
        if self.enabled:
            (self.apps.get(app) or self.stats(app)).app.observe(seconds)

    def _log_request(self, ex: Any, app: str, status: int, nbytes: int, seconds: float) -> None:
        if not ex.rid:
            ex.rid = self.request_id()
        path = printable(getattr(ex, "path", "") or "")
        client = self.client_of(ex) or "-"
        ms = seconds * 1000
        # The formatter adds the request id (" [request <id>]" in text, a key in JSON).
        access_log.info("%s %s %d %dB %.1fms %s from %s", ex.method, path, status,
                        nbytes, ms, app, client,
                        extra={"request_id": ex.rid, "fields": {
                            "kind": "http", "method": ex.method, "path": path, "status": status,
                            "bytes_in": len(ex.body), "bytes_out": nbytes, "duration_ms": round(ms, 3),
                            "process": app, "bound_path": ex.bound, "client": client}})

    # ------------------------------------------------------------------ WebSockets

    def ws_opened(self, app: str, path: str, channel_id: int, client: str | None) -> AppStats | None:
        """A socket opened; its owner's stats for the frame counts (None: not counting)."""
        if self.access:
            access_log.info("WS open %s %s channel %d from %s", printable(path), app, channel_id,
                            client or "-", extra={"fields": {
                                "kind": "ws_open", "path": printable(path), "process": app,
                                "channel": channel_id, "client": client or "-"}})
        return (self.apps.get(app) or self.stats(app)) if self.enabled else None

    def ws_closed(self, app: str, reason: str, channel_id: int, seconds: float) -> None:
        if self.enabled:
            self.ws_closes.inc((app, reason))
        if self.access:
            access_log.info("WS close %s channel %d after %.1fs: %s", app, channel_id, seconds,
                            reason, extra={"fields": {"kind": "ws_close", "process": app,
                                                      "channel": channel_id, "reason": reason,
                                                      "duration_ms": round(seconds * 1000, 3)}})

    # ------------------------------------------------------------------ the scrape

    def families(self, open_sockets: Callable[[], dict[str, int]],
                 gauges: dict[str, tuple[str, Callable[[], float]]]) -> list[Family]:
        """Every family of the http-server, read now. `open_sockets`: process -> open
        server-side WebSockets; `gauges`: name -> (help, value) of the worker's own."""
        apps = self.apps

        def per_app(read: Callable[[AppStats], Any]) -> Callable[[], Iterable[tuple[Labels, Any]]]:
            return lambda: [((app,), read(stats)) for app, stats in list(apps.items())]

        def per_direction(inbound: Callable[[AppStats], int],
                          outbound: Callable[[AppStats], int]) -> Callable[[], Iterable[tuple[Labels, Any]]]:
            def collect() -> list[tuple[Labels, Any]]:
                out: list[tuple[Labels, Any]] = []
                for app, stats in list(apps.items()):
                    out += [((app, "in"), inbound(stats)), ((app, "out"), outbound(stats))]
                return out
            return collect

        families = [
            self.requests,
            Family("porch_http_request_duration_seconds", "Time from a request's head to its answer "
                   "written, at the front door, by owning process.", HISTOGRAM, ("process",),
                   collect=per_app(lambda s: s.front)),
            Family("porch_http_process_duration_seconds", "Time a process took to answer a forwarded "
                   "request (through the kernel and back).", HISTOGRAM, ("process",),
                   collect=lambda: [((a,), s.app) for a, s in list(apps.items()) if s.app.count]),
            Family("porch_http_request_bytes", "Request body bytes received, by owning process.",
                   COUNTER, ("process",), collect=per_app(lambda s: s.bytes_in)),
            Family("porch_http_response_bytes", "Response body bytes sent, by owning process.",
                   COUNTER, ("process",), collect=per_app(lambda s: s.bytes_out)),
            Family("porch_websockets_open", "Server-side WebSockets open now, by owning process.",
                   GAUGE, ("process",),
                   collect=lambda: [((a,), float(n)) for a, n in sorted(open_sockets().items())]),
            Family("porch_websocket_messages", "WebSocket messages, by owning process; in: from "
                   "clients to the process, out: from the process to clients.", COUNTER,
                   ("process", "direction"), collect=per_direction(lambda s: s.ws_in, lambda s: s.ws_out)),
            Family("porch_websocket_bytes", "WebSocket payload bytes, by owning process and "
                   "direction.", COUNTER, ("process", "direction"),
                   collect=per_direction(lambda s: s.ws_bytes_in, lambda s: s.ws_bytes_out)),
            self.ws_closes,
        ]
        for name, (help_, read) in gauges.items():
            families.append(Family(name, help_, GAUGE, collect=_one(read)))
        return families


def _one(read: Callable[[], float]) -> Callable[[], list[tuple[Labels, float]]]:
    return lambda: [((), float(read()))]
