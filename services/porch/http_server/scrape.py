"""The node's one scrape endpoint: `GET /http-server:distro:sys/metrics` (issue 13).

Who may scrape (SECURITY.md): the Host allow-list applies, as to every request; then a
loopback peer without proxy headers (403), and `Authorization: Bearer <the node's
metrics token>` (`state/metrics.token`, 0600, `porch metrics-token` prints it; 401). A
page of another site cannot send that header without a CORS preflight, which porch
never grants; no cookie is taken.

What it answers: every service's figures, gathered at scrape time (the http-server's
own, the kernel's in its registry answer, the http-client's on request), the
processes' states and restarts from supervisord and run/starts, and each process's CPU
and memory from /proc; written by prometheus_client in the format the Accept header
asks for (Prometheus text, or OpenMetrics).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from porch.http_server.auth import PROXY_HEADERS, is_local
from porch.http_server.exchange import TEXT, Exchange, Headers
from porch.http_server.gather import Gatherer, NodeNow
from porch.http_server.processes import Row, rows
from porch.http_server.rpc_auth import bearer, token_matches
from porch.node.metrics import COUNTER, GAUGE, HISTOGRAM, Family, Labels, snapshot
from porch.wire import metrics_pb2

log = logging.getLogger("porch.http_server")

METRICS_PATH = "/http-server:distro:sys/metrics"
TOKEN_FILE = "metrics.token"
STATES = ("running", "starting", "restarting", "backing off", "fatal", "stopped", "exited",
          "stopping", "offline")

Refusal = tuple[int, Headers, bytes]


def token_refusal(method: str, header: Callable[[str], str | None], peer_ip: str | None,
                  token: str, what: str = "the metrics endpoint") -> Refusal | None:
    """Why this request may not read the node's figures, or None: GET or HEAD, from a
    loopback peer without proxy headers, with the metrics token."""
    if method not in ("GET", "HEAD"):
        return 405, [TEXT, ("Allow", "GET, HEAD")], f"{what} takes GET\n".encode()
    proxied = any(header(h) is not None for h in PROXY_HEADERS)
    if not is_local(peer_ip, proxied):
        return 403, [TEXT], f"{what} answers local clients only\n".encode()
    presented = bearer(header("Authorization"))
    if presented is None or not token or not token_matches(presented, token):
        return 401, [TEXT, ("WWW-Authenticate", 'Bearer realm="porch"')], (
            f"{what} needs Authorization: Bearer <token> (`porch metrics-token` prints it)\n").encode()
    return None


def node_families(now: NodeNow, table: list[Row]) -> list[Family]:
    """The processes' own figures: up, state, restarts, start time, CPU and memory; and
    which sources answered this scrape."""
    up = Family("porch_process_up", "1 if the process is registered with the kernel now (for the "
                "kernel: it answered).", GAUGE, ("process",))
    state = Family("porch_process_state", "The process's state (1 for the current one): running, "
                   "starting, restarting, backing off, fatal, stopped, exited, offline.",
                   GAUGE, ("process", "state"))
    restarts = Family("porch_process_restarts", "Restarts since `porch up` (the node's services and "
                      "the processes it runs).", COUNTER, ("process",))
    started = Family("porch_process_start_time_seconds", "When the process started (Unix seconds).",
                     GAUGE, ("process",))
    cpu = Family("porch_process_cpu_seconds", "CPU time the process used (user and system).",
                 COUNTER, ("process",))
    rss = Family("porch_process_resident_memory_bytes", "The process's resident memory.",
                 GAUGE, ("process",))
    for row in table:
        key: Labels = (row.id,)
        up.set(key, 1.0 if row.registered else 0.0)
        for name in STATES:
            state.set((row.id, name), 1.0 if row.state == name else 0.0)
        if row.restarts is not None:
            restarts.set(key, float(row.restarts))
        if row.started is not None:
            started.set(key, row.started)
        if row.stat is not None:
            cpu.set(key, row.stat.cpu_seconds)
            rss.set(key, float(row.stat.rss_bytes))
    source = Family("porch_scrape_source_up", "1 if the source answered this scrape (kernel, "
                    "http-client, supervisord).", GAUGE, ("source",))
    for name in ("kernel", "http-client", "supervisord"):
        source.set((name,), 0.0 if name in now.errors else 1.0)
    return [up, state, restarts, started, cpu, rss, source]


def to_prometheus(snapshots: Iterable[metrics_pb2.Metrics]) -> list[Metric]:
    """The snapshots as prometheus_client families; families of one name from several
    snapshots are joined (each series keeps its labels)."""
    out: dict[str, Metric] = {}
    for snap in snapshots:
        for family in snap.families:
            labels = list(family.label_names)
            metric = out.get(family.name)
            if metric is None:
                if family.type == COUNTER:
                    metric = CounterMetricFamily(family.name, family.help, labels=labels)
                elif family.type == HISTOGRAM:
                    metric = HistogramMetricFamily(family.name, family.help, labels=labels)
                else:
                    metric = GaugeMetricFamily(family.name, family.help, labels=labels)
                out[family.name] = metric
            add: Any = getattr(metric, "add_metric")  # noqa: B009 - each family class has its own
            if family.type == HISTOGRAM:
                bounds = [_go_float(b) for b in family.buckets] + ["+Inf"]
                for series in family.series:
                    cumulative, buckets = 0, []
                    for bound, n in zip(bounds, series.bucket_counts, strict=False):
                        cumulative += n
                        buckets.append((bound, float(cumulative)))
                    add(list(series.label_values), buckets, series.sum)
            else:
                for series in family.series:
                    add(list(series.label_values), series.value)
    return list(out.values())


def _go_float(value: float) -> str:
    """A bucket bound as prometheus_client writes its own ("0.005", "1.0")."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def exposition(snapshots: Iterable[metrics_pb2.Metrics], accept: str | None) -> tuple[bytes, str]:
    """(body, Content-Type) in the format `accept` asks for."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(to_prometheus(snapshots)))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class Scrape:
    """The endpoint. `local()`: the http-server's own figures, read now (every worker's:
    porch.http_server.worker_figures); `apps()`: the processes they count traffic for."""

    def __init__(self, gatherer: Gatherer, local: Callable[[], metrics_pb2.Metrics],
                 apps: Callable[[], Iterable[str]], token: str, own_pid: int) -> None:
        self.gatherer = gatherer
        self.apps = apps
        self.local = local
        self.token = token
        self.own_pid = own_pid
        self._tasks: set[asyncio.Future[None]] = set()

    def handle(self, ex: Exchange) -> None:
        refusal = token_refusal(ex.method, ex.header, ex.peer_ip, self.token)
        if refusal is not None:
            ex.respond(*refusal)
            return
        task = asyncio.ensure_future(self._answer(ex))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, ex: Exchange) -> None:
        try:
            now = await self.gatherer.now(metrics=True)
            local = self.local()
            table = rows(now, self.apps(), self.own_pid)
            snapshots = [local, snapshot(node_families(now, table))]
            if now.kernel_metrics is not None:
                snapshots.append(now.kernel_metrics)
            if now.client_metrics is not None:
                snapshots.append(now.client_metrics)
            body, content_type = exposition(snapshots, ex.header("Accept"))
        except Exception:
            log.exception("the scrape failed")
            ex.respond(500, [TEXT], b"internal error\n")
            return
        ex.respond(200, [("Content-Type", content_type), ("Cache-Control", "no-store")], body)
