"""The wire: generated protobuf modules plus the few pure helpers every service shares.

No sockets here. `kernel_pb2` holds the envelope and kernel control messages,
`http_pb2` the http-server and http-client vocabularies, `metrics_pb2` the figures
services hand to the node's scrape endpoint.
"""

from __future__ import annotations

import logging
import time

from google.protobuf.internal import api_implementation

from porch.wire import http_pb2, kernel_pb2, metrics_pb2

# Covers the whole porch.v1 schema set; bump together with the package name in proto/.
PROTOCOL_VERSION = 1

__all__ = ["PROTOCOL_VERSION", "check_backend", "http_pb2", "kernel_pb2", "metrics_pb2", "now_ms",
           "protobuf_backend"]


def now_ms() -> int:
    """The wire's clock: deadlines travel as absolute Unix milliseconds (every process
    of a node shares the host clock), so the kernel and the stubs read this one."""
    return int(time.time() * 1000)


def protobuf_backend() -> str:
    """'upb' (the C backend) or 'python' (the ~20x slower pure-Python fallback)."""
    return str(api_implementation.Type())


def check_backend(service: str, log: logging.Logger | None = None) -> bool:
    """Log an error naming the fix when protobuf runs on its pure-Python backend.

    Services keep running (correctness is the same) but say so loudly at start.
    """
    backend = protobuf_backend()
    if backend == "upb":
        return True
    (log or logging.getLogger(service)).error(
        "%s: protobuf is using its '%s' backend, about 20x slower than 'upb'. "
        "Fix: unset PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION and install a protobuf "
        "wheel for this platform (pip install --force-reinstall 'protobuf>=7.35.1,<8').",
        service,
        backend,
    )
    return False
