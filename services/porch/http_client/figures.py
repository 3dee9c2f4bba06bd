"""The http-client's figures for the node's scrape (docs/metrics.md): outgoing requests
by calling process and outcome, their latency, what waits for a worker, and outgoing
WebSockets (open now, frames each way).

Requests are counted where they end: refused on the loop (a bad URL, the policy, a
busy pool) or fetched in a worker thread, hence the lock. The http-server asks for a
snapshot with HttpClientAction.metrics; only the node's services may.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from porch.node.metrics import COUNTER, GAUGE, HISTOGRAM, Family, Labels, snapshot


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 999 else "other"


class ClientFigures:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.lock = threading.Lock()
        self.requests = Family("porch_http_client_requests", "Outgoing HTTP requests, by the process "
                               "that asked and their outcome: the response's status class (2xx...) or "
                               "the failure (BadUrl, Denied, Timeout, ExecuteRequestFailed, Busy, ...).",
                               COUNTER, ("process", "outcome"))
        self.latency = Family("porch_http_client_request_duration_seconds", "Time from taking an outgoing "
                              "request up to its answer (or failure), by the process that asked.",
                              HISTOGRAM, ("process",))
        self.frames = Family("porch_http_client_websocket_messages", "Frames on outgoing WebSockets, by "
                             "the process that opened the connection; direction out: to the remote, "
                             "in: from it.", COUNTER, ("process", "direction"))
        self.families = [self.requests, self.latency, self.frames]

    def add_gauges(self, waiting: Callable[[], int], busy: Callable[[], int], ws: Any) -> None:
        """`ws`: the WsClients (its table holds the open connections)."""
        def open_sockets() -> Iterable[tuple[Labels, float]]:
            per = Counter(entry.key[0] for entry in ws.table.entries())
            return [((process,), float(n)) for process, n in sorted(per.items())]

        self.families += [
            Family("porch_http_client_waiting_requests", "Outgoing requests waiting for a worker.",
                   GAUGE, collect=lambda: [((), float(waiting()))]),
            Family("porch_http_client_busy_workers", "Workers running an outgoing request now.",
                   GAUGE, collect=lambda: [((), float(busy()))]),
            Family("porch_http_client_websockets_open", "Outgoing WebSockets open now, by the process "
                   "that opened them.", GAUGE, ("process",), collect=open_sockets),
        ]

    def ended(self, process: str, outcome: str, seconds: float | None = None) -> None:
        """A request ended (any thread)."""
        if not self.enabled:
            return
        with self.lock:
            self.requests.inc((process, outcome))
            if seconds is not None:
                self.latency.histogram((process,)).observe(seconds)

    def frame(self, process: str, direction: str) -> None:
        if self.enabled:
            self.frames.inc((process, direction))

    def snapshot(self) -> bytes:
        with self.lock:
            return bytes(snapshot(self.families).SerializeToString())
