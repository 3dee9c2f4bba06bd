"""http-client benchmark: outgoing GETs through porch beside the same process calling
`requests` directly, with the same concurrency, in one run.

What runs (each its own OS process, all on loopback):
  - a Tornado HTTP server (tests/support/http_test_server.py) answering GET /hello;
  - the real kernel and the real http-client (`python -m porch.http_client`);
  - this process: first side, an asyncio `porch.AsyncProcess` keeping CONCURRENCY
    requests in flight with `send_request_await_response_async` (process -> kernel ->
    http-client -> server and back); second side, CONCURRENCY threads each with its
    own keep-alive `requests.Session` calling the server directly.

Rounds alternate the order of the two sides so a noisy shared machine hurts both
alike; the medians and the median of the per-round ratios are printed.

    python bench/bench_http_client.py [--quick] [--rounds N] [--seconds S] [--concurrency C]

`python bench/run.py` runs it with the other benches; PORCH_BENCH_QUICK=1 = --quick.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import porch  # noqa: E402
from porch.http.client import send_request_await_response_async  # noqa: E402
from support.node import Node  # noqa: E402

CALLER = "bench:bench:sys"
CONFIG = (f'node = "bench.os"\n[[process]]\nid = "{CALLER}"\n'
          'capabilities = ["http-client:distro:sys"]\n')


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/support/http_test_server.py")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/hello"


def direct(url: str, concurrency: int, seconds: float, lean: bool = False) -> float:
    """Requests per second: threads, a Session each (keep-alive), for `seconds`.

    lean: skip Session (cookies, hooks, settings merging, redirect machinery) and send
    a prepared request through one shared HTTPAdapter, as the http-client's workers do.
    """
    counts = [0] * concurrency
    stop = [0.0]
    start = threading.Barrier(concurrency + 1)
    adapter = HTTPAdapter(pool_maxsize=concurrency)

    def worker(i: int) -> None:
        with requests.Session() as s:
            if lean:
                def get() -> bytes:
                    return adapter.send(requests.Request("GET", url).prepare(), timeout=10).content
            else:
                def get() -> bytes:
                    return s.get(url, timeout=10).content
            assert get() == b"hello"  # connected before the clock starts
            start.wait()
            n = 0
            while time.monotonic() < stop[0]:
                assert get() == b"hello"
                n += 1
            counts[i] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    began = time.monotonic()
    stop[0] = began + seconds
    start.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - began)


async def through_porch(proc: porch.AsyncProcess, url: str, concurrency: int, seconds: float) -> float:
    """Requests per second with `concurrency` requests always in flight."""
    stop = time.monotonic() + seconds
    counts = [0] * concurrency

    async def worker(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            resp = await send_request_await_response_async(proc, "GET", url, timeout=10)
            assert resp.body == b"hello"
            n += 1
        counts[i] = n

    began = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return sum(counts) / (time.monotonic() - began)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    # Under bench/run.py, sys.argv holds the runner's arguments, not ours.
    args = parser.parse_args([] if argv is None and __name__ != "__main__" else argv)
    if args.quick or os.environ.get("PORCH_BENCH_QUICK") == "1":
        args.rounds, args.seconds = 1, 1.0
    server, url = start_server()
    node = Node(CONFIG)
    loop = asyncio.new_event_loop()
    try:
        node.start("kernel")
        node.start("http-client")
        proc = loop.run_until_complete(porch.AsyncProcess.connect(CALLER, home=node.home.root))
        loop.run_until_complete(through_porch(proc, url, args.concurrency, 0.5))  # warm up
        direct(url, args.concurrency, 0.5)
        figures: dict[str, list[float]] = {"porch": [], "direct": [], "lean": []}
        sides = [("porch", lambda: loop.run_until_complete(
                    through_porch(proc, url, args.concurrency, args.seconds))),
                 ("direct", lambda: direct(url, args.concurrency, args.seconds)),
                 ("lean", lambda: direct(url, args.concurrency, args.seconds, lean=True))]
        for i in range(args.rounds):
            for name, run in (sides if i % 2 == 0 else sides[::-1]):
                figures[name].append(run())
        proc.close()
    finally:
        loop.close()
        node.close()
        server.kill()
        server.wait()
    via, raw, lean = figures["porch"], figures["direct"], figures["lean"]
    ratios = [p / d for p, d in zip(via, raw, strict=True)]
    lean_ratios = [p / d for p, d in zip(via, lean, strict=True)]
    med = statistics.median
    print(f"http-client: GET of a 5-byte body from a loopback Tornado server, {args.concurrency} in "
          f"flight, medians of {args.rounds} rounds of {args.seconds:g} s")
    print(f"  through porch (process -> kernel -> http-client -> server)  {med(via):7.0f} req/s")
    print(f"  requests directly ({args.concurrency} threads, a Session each)          "
          f"{med(raw):7.0f} req/s")
    print(f"  ratio porch/direct  {med(ratios):.2f}  (target >= 0.70; per round: "
          f"{' '.join(f'{r:.2f}' for r in ratios)})")
    print(f"  stricter baseline: requests' HTTPAdapter, no Session    {med(lean):7.0f} req/s"
          f"   ratio porch/it {med(lean_ratios):.2f}")

if __name__ == "__main__":
    main()
