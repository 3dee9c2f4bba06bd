"""The kernel's figures for the node's scrape (docs/metrics.md): messages routed per
source and target, SendErrors per kind and target, its event counters, and what is
there now (registered processes, pending requests, each peer's output queue).

Only the per-pair count is on the hot path (inline in `Kernel._route_request` and
`_route_response`); the rest is read from the kernel's own tables when the http-server
asks (`RegistryQuery.metrics`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from porch.node.metrics import COUNTER, GAUGE, Family, Labels, snapshot
from porch.wire import kernel_pb2

if TYPE_CHECKING:
    from porch.kernel.router import Kernel

_KIND_NAMES = {kind: name for name, kind in kernel_pb2.SendError.Kind.items()}
EVENTS = ("routed", "malformed", "refused", "timeouts", "offline", "late", "spoofed", "undeliverable")


class KernelFigures:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.routed = Family("porch_kernel_messages_routed", "Messages the kernel routed (requests and "
                             "responses), by the process that sent them and the one they went to.",
                             COUNTER, ("source", "target"))
        self.errors = Family("porch_kernel_send_errors", "SendErrors the kernel answered a requester "
                             "with (Offline, Timeout, NoCapability), by the target of the request.",
                             COUNTER, ("kind", "target"))
        self.families = [
            self.routed,
            self.errors,
            Family("porch_kernel_events", "The kernel's own counters: messages routed, malformed, "
                   "refused, timed out, sent to a process that was offline, late answers dropped, "
                   "claimed sources overwritten, answers that could not be delivered.",
                   COUNTER, ("event",), collect=self._events),
            Family("porch_kernel_pending_requests", "Requests routed and waiting for their answer.",
                   GAUGE, collect=lambda: [((), float(len(self.kernel.pending)))]),
            Family("porch_kernel_registered_processes", "Processes registered now.",
                   GAUGE, collect=lambda: [((), float(len(self.kernel.idents)))]),
            Family("porch_kernel_queue_messages", "Messages queued by the kernel to a process and not "
                   "written to its connection yet (a process that does not read fills it; full, "
                   "sends to it fail Offline).", GAUGE, ("process",), collect=lambda: self._queues(0)),
            Family("porch_kernel_queue_bytes", "Bytes queued by the kernel to a process and not written "
                   "yet.", GAUGE, ("process",), collect=lambda: self._queues(1)),
            Family("porch_kernel_start_time_seconds", "When the kernel started (Unix seconds).",
                   GAUGE, collect=lambda: [((), self.kernel.started_ms / 1000)]),
        ]

    def send_error(self, kind: int, target: str) -> None:
        self.errors.inc((_KIND_NAMES.get(kind, str(kind)), target))

    def snapshot(self) -> bytes:
        return bytes(snapshot(self.families).SerializeToString())

    def _events(self) -> Iterator[tuple[Labels, float]]:
        counters = self.kernel.counters
        for name in EVENTS:
            yield (name,), float(getattr(counters, name))

    def _queues(self, which: int) -> Iterator[tuple[Labels, float]]:
        kernel = self.kernel
        for conn, peer in list(kernel.peers.items()):
            depth = getattr(peer.transport, "queue_depth", None)
            if depth is None or peer.retiring:
                continue
            try:
                yield (peer.process_id,), float(depth(conn)[which])
            except (AttributeError, TypeError):  # a connection of another kind
                continue
