"""The node page's live figures (issue 13 item 3) and what `porch status` and `porch top`
read: every process with its state, uptime, restarts, request rate, error rate, p50 and
p99 latency, open WebSockets, and the last minutes as sparklines.

- `History` samples each process's counts every SAMPLE_S seconds (the last KEEP
  samples: five minutes); rates, error rates and percentiles are differences between
  now and a sample RATE_WINDOW_S / LATENCY_WINDOW_S ago.
- The page (`/`, for the owner) opens a WebSocket on DASHBOARD_PATH (the owner's cookie,
  and an Origin that is the node's own: no other site's page can read it) and gets the
  view every PUSH_S seconds while it is open.
- `GET PROCESSES_PATH` answers the same view as JSON to a local client with the metrics
  token (`porch status`, `porch top`).
- `POST RESTART_PATH` `{"process": id}` restarts a user process through supervisord:
  the owner's cookie, JSON, a custom header (ACTION_HEADER) that a page of another
  origin cannot add without a preflight porch never grants, and no foreign Origin or
  Sec-Fetch-Site (as the logout).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import xmlrpc.client
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from itertools import pairwise
from typing import Any

from porch.http_server.auth import Auth, cross_site
from porch.http_server.exchange import JSON, TEXT, Exchange
from porch.http_server.figures import AppStats, HttpFigures, printable
from porch.http_server.gather import Gatherer, NodeNow
from porch.http_server.processes import Row, rows
from porch.http_server.scrape import token_refusal
from porch.http_server.upgrade import Refusal, extension_offers, handshake_refusal, switching_protocols
from porch.node.metrics import LATENCY_BUCKETS, quantile
from porch.node.supervisor import Supervisor
from porch.ws.conn import WsConnection
from porch.ws.deflate import negotiate

log = logging.getLogger("porch.http_server")

DASHBOARD_PATH = "/http-server:distro:sys/dashboard"
PROCESSES_PATH = "/http-server:distro:sys/processes"
RESTART_PATH = "/http-server:distro:sys/restart"
ACTION_HEADER = "X-Porch-Action"
SAMPLE_S = 2.0
KEEP = 150  # samples: five minutes
RATE_WINDOW_S = 10.0
LATENCY_WINDOW_S = 60.0
PUSH_S = 2.0
MAX_UNSENT = 1 << 20  # a page that does not read gets no more views until it does
MAX_RESTART_BODY = 1024


class Sample:
    __slots__ = ("counts", "errors", "requests", "t")

    def __init__(self, t: float, requests: int, errors: int, counts: tuple[int, ...]) -> None:
        self.t = t
        self.requests = requests
        self.errors = errors
        self.counts = counts


class History:
    """Each process's counts, sampled; what they say about the last seconds."""

    def __init__(self, figures: HttpFigures, t: float = 0.0,
                 apps: Callable[[], dict[str, AppStats]] | None = None) -> None:
        self.figures = figures
        # Each process's counts now: this worker's, or every worker's (worker_figures).
        self.apps = apps if apps is not None else lambda: figures.apps
        self.samples: dict[str, deque[Sample]] = {}
        self.last_t = t  # the last sample's time (the start: every count was 0 then)

    def _zero(self) -> Sample:
        """A process first seen after the last sample had counted nothing at it."""
        return Sample(self.last_t, 0, 0, (0,) * (len(LATENCY_BUCKETS) + 1))

    def take(self, t: float) -> None:
        for app, stats in list(self.apps().items()):
            ring = self.samples.get(app)
            if ring is None:
                ring = self.samples[app] = deque([self._zero()], maxlen=KEEP)
            ring.append(Sample(t, stats.requests, stats.errors, tuple(stats.front.counts)))
        self.last_t = t

    def summary(self, app: str, t: float, apps: dict[str, AppStats] | None = None) -> dict[str, Any]:
        """rate (requests/s over RATE_WINDOW_S), error_rate (share of 5xx) and p50/p99
        (ms) over LATENCY_WINDOW_S, totals, and sparklines (requests/s and errors/s per
        sample interval, oldest first)."""
        stats = (apps if apps is not None else self.apps()).get(app)
        ring = self.samples.get(app) or deque([self._zero()])
        out: dict[str, Any] = {"requests": 0, "errors": 0, "rate": 0.0, "error_rate": None,
                               "p50_ms": None, "p99_ms": None, "spark": [], "spark_errors": []}
        if stats is None:
            return out
        out["requests"], out["errors"] = stats.requests, stats.errors
        live = Sample(t, stats.requests, stats.errors, tuple(stats.front.counts))
        rated = _since(ring, t - RATE_WINDOW_S)
        if rated is not None and live.t > rated.t:
            # (max 0: counts go down when a worker that had some exits, docs/metrics.md)
            out["rate"] = round(max(0, live.requests - rated.requests) / (live.t - rated.t), 3)
        timed = _since(ring, t - LATENCY_WINDOW_S)
        if timed is not None:
            done = live.requests - timed.requests
            if done > 0:
                out["error_rate"] = round(max(0, live.errors - timed.errors) / done, 4)
            counts = [max(0, a - b) for a, b in zip(live.counts, timed.counts, strict=True)]
            for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
                value = quantile(q, LATENCY_BUCKETS, counts)
                out[name] = round(value * 1000, 3) if value is not None else None
        points = [*ring, live]
        for a, b in pairwise(points):
            dt = b.t - a.t
            if dt > 0:
                out["spark"].append(round(max(0, b.requests - a.requests) / dt, 3))
                out["spark_errors"].append(round(max(0, b.errors - a.errors) / dt, 3))
        return out


def _since(ring: deque[Sample], t: float) -> Sample | None:
    """The newest sample taken at or before t, else the oldest there is."""
    found = None
    for sample in ring:
        if sample.t <= t:
            found = sample
        else:
            break
    return found if found is not None else (ring[0] if ring else None)


class Dashboard:
    def __init__(self, node: str, gatherer: Gatherer, figures: HttpFigures, auth: Auth,
                 executor: Executor, token: str, own_pid: int,
                 open_sockets: Callable[[], dict[str, int]],
                 apps: Callable[[], dict[str, AppStats]] | None = None, *, compression: bool = False) -> None:
        self.node = node
        self.gatherer = gatherer
        self.figures = figures
        self.auth = auth
        self.executor = executor
        self.token = token
        self.own_pid = own_pid
        self.open_sockets = open_sockets
        self.compression = compression  # [http_server] ws_compression: the page's socket too
        self.history = History(figures, time.monotonic(), apps)
        self.subscribers: set[_Subscriber] = set()
        self._pusher: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ the view

    def start(self) -> None:
        if self.figures.enabled and self._sampler is None:
            self._sampler = asyncio.ensure_future(self._sample())

    def stop(self) -> None:
        for task in (self._sampler, self._pusher):
            if task is not None:
                task.cancel()

    async def _sample(self) -> None:
        while True:
            self.history.take(time.monotonic())
            await asyncio.sleep(SAMPLE_S)

    def view(self, now: NodeNow) -> dict[str, Any]:
        t = time.monotonic()
        wall = time.time()
        sockets = self.open_sockets()
        apps = self.history.apps()
        table = rows(now, apps, self.own_pid)
        return {"node": self.node, "time": wall, "supervised": now.supervised is not None,
                "metrics": self.figures.enabled, "missing": now.errors, "sample_s": SAMPLE_S,
                "processes": [self._row(row, t, wall, sockets, apps) for row in table]}

    def _row(self, row: Row, t: float, wall: float, sockets: dict[str, int],
             apps: dict[str, AppStats]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": row.id, "kind": row.kind, "state": row.state, "detail": row.detail,
            "pid": row.pid, "uptime_s": round(wall - row.started, 1) if row.started else None,
            "restarts": row.restarts, "registered": row.registered, "restartable": row.restartable,
            "rss_bytes": row.stat.rss_bytes if row.stat else None,
            "cpu_seconds": round(row.stat.cpu_seconds, 2) if row.stat else None,
            "websockets": sockets.get(row.id, 0),
        }
        out.update(self.history.summary(row.id, t, apps))
        return out

    # ------------------------------------------------------------------ the page's socket

    async def admit(self, ex: Exchange, version: str) -> Refusal | _PageAdmission:
        """The page's socket: a valid handshake, the owner's cookie, and the node's own
        origin (no other site's page may read the view). Admitted: the client's key
        (and its compression offers)."""
        refusal = handshake_refusal(ex.method, version, ex.header)
        if refusal is not None:
            return refusal
        if not self.auth.authorized(ex.header("Cookie")):
            return 401, [TEXT], b"log in first\n"
        origin = ex.header("Origin")
        if origin is not None and cross_site(origin, ex.header("Sec-Fetch-Site"), ex.header("Host")):
            log.info("refused the node page's socket to origin %r", origin[:200])
            return 403, [TEXT], b"Cross origin websockets not allowed\n"
        key = ex.header("Sec-WebSocket-Key")
        assert key is not None  # handshake_refusal checked it
        return _PageAdmission(key, extension_offers(ex.header_items()) if self.compression else [])

    def open(self, sock: socket.socket, leftover: bytes, admission: _PageAdmission) -> object:
        """Answer 101 and send the view every PUSH_S seconds while the page is open."""
        subscriber = _Subscriber(self)
        deflate = negotiate(admission.offers) if admission.offers else None
        conn = WsConnection(sock, subscriber, max_message=4096, leftover=leftover, deflate=deflate,
                            greeting=switching_protocols(admission.key, deflate.header if deflate else None))
        if conn.closed:
            return None
        subscriber.conn = conn
        self.subscribers.add(subscriber)
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.ensure_future(self._push())
        return subscriber

    async def _push(self) -> None:
        while self.subscribers:
            try:
                message = json.dumps(self.view(await self.gatherer.now(metrics=False)))
            except Exception:
                log.exception("the node page's view failed")
                message = ""
            for subscriber in list(self.subscribers):
                conn = subscriber.conn
                if conn is None or conn.closing:
                    self.subscribers.discard(subscriber)
                elif message and conn.unsent_bytes() < MAX_UNSENT:
                    conn.send(message.encode(), False)
            await asyncio.sleep(PUSH_S)

    # ------------------------------------------------------------------ porch status / top

    def processes(self, ex: Exchange) -> None:
        refusal = token_refusal(ex.method, ex.header, ex.peer_ip, self.token, "the processes endpoint")
        if refusal is not None:
            ex.respond(*refusal)
            return
        self._spawn(ex, self._answer_processes(ex))

    async def _answer_processes(self, ex: Exchange) -> None:
        view = self.view(await self.gatherer.now(metrics=False))
        ex.respond(200, [JSON, ("Cache-Control", "no-store")], json.dumps(view).encode())

    # ------------------------------------------------------------------ the restart button

    def restart(self, ex: Exchange) -> None:
        refusal = restart_refusal(ex.method, ex.header, lambda: self.auth.authorized(ex.header("Cookie")))
        if refusal is not None:
            if refusal[0] == 403:
                log.warning("refused a restart from the node page: %s (Origin %r)",
                            refusal[2].decode().strip(), ex.header("Origin"))
            ex.respond(*refusal)
            return
        try:
            asked = json.loads(ex.body[:MAX_RESTART_BODY + 1]) if len(ex.body) <= MAX_RESTART_BODY else None
        except ValueError:
            asked = None
        process = asked.get("process") if isinstance(asked, dict) else None
        if not isinstance(process, str):
            ex.respond(400, [TEXT], b'a restart takes {"process": "<process id>"}\n')
            return
        self._spawn(ex, self._restart(ex, process))

    async def _restart(self, ex: Exchange, process: str) -> None:
        config = self.gatherer.config()
        spec = next((p for p in config.processes if p.id == process and p.command), None)
        if spec is None:
            ex.respond(404, [TEXT], f"{printable(process, 100)} is not a process the node runs "
                                    "(porch.toml, with a command)\n".encode())
            return
        home = self.gatherer.home
        if not home.supervisor_socket.exists():
            ex.respond(409, [TEXT], b"this node is not run by supervisord (porch up): nothing can "
                                    b"restart its processes\n")
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, Supervisor(home).restart, spec.program_name)
        except (OSError, xmlrpc.client.Error) as exc:
            detail = exc.faultString if isinstance(exc, xmlrpc.client.Fault) else str(exc)
            log.warning("restart of %s from the node page failed: %s", process, detail)
            ex.respond(502, [TEXT], f"supervisord could not restart {process}: {detail}\n".encode())
            return
        log.info("restarted %s from the node page (client %s)", process, ex.peer_ip)
        ex.respond(200, [JSON], json.dumps({"ok": True, "process": process}).encode())

    def _spawn(self, ex: Exchange, coro: Any) -> None:
        """Answer `ex` from a task; one that fails still answers (500), never hangs."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Future[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("the node page's %s failed", ex.path, exc_info=t.exception())
                ex.respond(500, [TEXT], b"internal error\n")  # no-op if answered

        task.add_done_callback(done)


def restart_refusal(method: str, header: Callable[[str], str | None],
                    logged_in: Callable[[], bool]) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """Why this request may not restart a process, or None (the module docstring)."""
    if method != "POST":
        return 405, [TEXT, ("Allow", "POST")], b"POST to restart a process\n"
    if cross_site(header("Origin"), header("Sec-Fetch-Site"), header("Host")):
        return 403, [TEXT], b"a restart from another site is refused\n"
    media = (header("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return 415, [TEXT], b"a restart takes Content-Type: application/json\n"
    if header(ACTION_HEADER) is None:
        return 403, [TEXT], f"a restart needs the {ACTION_HEADER} header\n".encode()
    if not logged_in():
        return 401, [TEXT], b"log in first\n"
    return None


class _PageAdmission:
    __slots__ = ("key", "offers")

    def __init__(self, key: str, offers: list[str]) -> None:
        self.key = key
        self.offers = offers


class _Subscriber:
    """One open node page: it only listens (porch.ws.conn.Events)."""

    __slots__ = ("conn", "dashboard")

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.conn: WsConnection | None = None

    def on_message(self, payload: bytes, binary: bool) -> None:
        pass

    def on_ping(self, payload: bytes) -> None:
        pass

    def on_pong(self, payload: bytes) -> None:
        pass

    def on_closed(self, code: int | None, reason: str | None) -> None:
        self.dashboard.subscribers.discard(self)
