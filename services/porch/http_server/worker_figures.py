"""The http-server's figures when several workers serve the port (docs/workers.md,
docs/metrics.md "Several workers").

Each worker counts what it answers, in its own memory (porch.http_server.figures).
A scrape, `porch status` or the node page reaches one worker, whichever accepted the
connection, so with `workers` > 1 every worker also writes its figures, every
PUBLISH_S, to `run/figures/http-<pid>.pb` (a porch.v1.Metrics), and the worker that
answers adds the files of the other live workers to its own figures (`merged`).

What that means for a reader: another worker's counts are at most PUBLISH_S old; a
worker that exits takes its counts with it (a counter that goes down is a reset to
Prometheus, as when a single worker restarts). With one worker nothing is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from porch.http_server.figures import AppStats
from porch.node.metrics import HISTOGRAM, Family, merge, snapshot
from porch.wire import metrics_pb2

log = logging.getLogger("porch.http_server")

PUBLISH_S = 1.0
PREFIX = "http-"
SUFFIX = ".pb"
DURATION = "porch_http_request_duration_seconds"
REQUESTS = "porch_http_requests"


def is_worker(pid: int) -> bool:
    """Whether pid is a running http-server worker (and not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"porch.http_server" in cmdline and b"--worker-fd" in cmdline


class WorkerFigures:
    """`local()`: this worker's families, read now. `shared`: several workers run (else
    nothing is written or read)."""

    def __init__(self, run_dir: Path, local: Callable[[], list[Family]], *, shared: bool,
                 own_pid: int | None = None) -> None:
        self.dir = run_dir / "figures"
        self.local = local
        self.shared = shared
        self.own_pid = own_pid if own_pid is not None else os.getpid()
        self.path = self.dir / f"{PREFIX}{self.own_pid}{SUFFIX}"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.shared and self._task is None:
            self._task = asyncio.ensure_future(self._publish())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.shared:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _publish(self) -> None:
        while True:
            try:
                self.write()
            except OSError as exc:  # a full or read-only disk: the others miss this worker's counts
                log.warning("cannot write %s: %s", self.path, exc)
                await asyncio.sleep(30 * PUBLISH_S)
            await asyncio.sleep(PUBLISH_S)

    def write(self) -> None:
        """This worker's figures to its file (replaced whole: a reader never sees half)."""
        self.dir.mkdir(mode=0o700, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(snapshot(self.local()).SerializeToString())
        os.replace(tmp, self.path)

    def others(self) -> list[metrics_pb2.Metrics]:
        """The last figures of every other live worker."""
        if not self.shared:
            return []
        found = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        for name in names:
            ours = name.startswith(PREFIX) and name.endswith(SUFFIX)
            pid_text = name[len(PREFIX):-len(SUFFIX)] if ours else ""
            if not pid_text.isdigit() or int(pid_text) == self.own_pid:
                continue
            path = self.dir / name
            if not is_worker(int(pid_text)):
                with contextlib.suppress(OSError):
                    path.unlink()  # a worker killed before it could remove its own
                continue
            try:
                found.append(metrics_pb2.Metrics.FromString(path.read_bytes()))
            except (OSError, ValueError) as exc:  # (DecodeError is a ValueError)
                log.warning("cannot read %s: %s", path, exc)
        return found

    def merged(self) -> metrics_pb2.Metrics:
        """This worker's figures plus the other workers'."""
        own = snapshot(self.local())
        others = self.others()
        return merge([own, *others]) if others else own


def apps_of(figures: metrics_pb2.Metrics) -> dict[str, AppStats]:
    """Per process: requests, 5xx answers and the front-door latency histogram, as the
    node page and `porch status` read them, from (merged) figures."""
    apps: dict[str, AppStats] = {}
    for family in figures.families:
        if family.name == DURATION and family.type == HISTOGRAM:
            for series in family.series:
                stats = apps.setdefault(series.label_values[0], AppStats())
                counts = list(series.bucket_counts)
                if len(counts) == len(stats.front.counts):
                    stats.front.counts = counts
                    stats.front.sum = series.sum
                    stats.requests = sum(counts)
        elif family.name == REQUESTS:
            status = list(family.label_names).index("status") if "status" in family.label_names else -1
            for series in family.series:
                if status >= 0 and series.label_values[status] == "5xx":
                    stats = apps.setdefault(series.label_values[0], AppStats())
                    stats.errors += int(series.value)
    return apps


def sockets_of(figures: metrics_pb2.Metrics) -> dict[str, int]:
    """Per process: its server-side WebSockets open now, from (merged) figures."""
    for family in figures.families:
        if family.name == "porch_websockets_open":
            return {s.label_values[0]: int(s.value) for s in family.series if s.value}
    return {}
