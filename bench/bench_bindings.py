"""Binding many static paths (a large UI served with serve_ui), small and large, in one run.

    python bench/bench_bindings.py [--small N] [--large N] [--body-bytes B]

One process binds N static files one after another (`bind_http_static_path`, each
acknowledged before the next, as serve_ui does) on a fresh http-server, while a second
thread GETs /login in a loop. Printed for N = small and N = large: time per bind and
the probe's median latency. The ratio of the per-bind times (large / small) is 1.0 when
binding is linear; it was ~3x (1000 vs 200, O(N^2)) while every bind rewrote the whole
bindings.json, before the journal (bench/README.md, "http-server"). Each file is
`--body-bytes` long (default ~2 KB; a bind is saved, body and all, before its ack).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from porch.http.server import HttpServer  # noqa: E402
from support.node import Node, free_port  # noqa: E402

QUICK = os.environ.get("PORCH_BENCH_QUICK") == "1"
CONFIG = 'node = "bench.os"\n[[process]]\nid = "b:pkg:pub.os"\ncapabilities = ["http-server:distro:sys"]\n'


def bind_many(n: int, size: int = 2000) -> tuple[float, float]:
    """(seconds per bind, probe p50 seconds) for n static binds on a fresh node."""
    node = Node(CONFIG)
    try:
        port = free_port()
        node.start("kernel")
        node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "bench"})
        server = HttpServer(node.process("b:pkg:pub.os"))
        latencies: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            with requests.Session() as s:
                while not stop.is_set():
                    started = time.monotonic()
                    s.get(f"http://127.0.0.1:{port}/login", timeout=10)
                    latencies.append(time.monotonic() - started)

        prober = threading.Thread(target=probe)
        prober.start()
        started = time.monotonic()
        for i in range(n):
            server.bind_http_static_path(f"/f{i}.txt", False, False, "text/plain",
                                         b"x" * size + str(i).encode())
        elapsed = time.monotonic() - started
        stop.set()
        prober.join()
        return elapsed / n, statistics.median(latencies)
    finally:
        node.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=50 if QUICK else 200)
    parser.add_argument("--large", type=int, default=250 if QUICK else 1000)
    parser.add_argument("--body-bytes", type=int, default=2000, help="size of each file")
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    small, small_probe = bind_many(args.small, args.body_bytes)
    large, large_probe = bind_many(args.large, args.body_bytes)
    size = f" of {args.body_bytes} bytes" if args.body_bytes != 2000 else ""
    print(f"bindings: {args.small} static binds{size} {1000 * small:.2f} ms each (probe p50 "
          f"{1000 * small_probe:.2f} ms); {args.large}: {1000 * large:.2f} ms each (probe p50 "
          f"{1000 * large_probe:.2f} ms); per-bind ratio {large / small:.2f} (1.0 = linear)")


if __name__ == "__main__":
    main()
