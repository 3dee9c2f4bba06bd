"""What the node's figures cost: HTTP and WebSocket through porch with [metrics] on and
off, side by side in one run (issue 13: under 3 % apart), and the counting primitives
that decided how services count (docs/metrics.md).

    python bench/bench_metrics.py [--rounds N] [--seconds S] [--primitives-only]

Two nodes run at once (a fresh pair every round), identical but for `[metrics] enabled` (the kernel's per-pair
counts, the http-server's per-request and per-frame figures, the http-client's; the
access log is off in both, as by default). Each round measures, on each node, HTTP
requests/s (wrk, 32 connections, a hello process on the blocking stub) and WebSocket
echo messages/s (10 connections, an echo process on the asyncio stub), alternating
which node goes first; the per-round ratios on/off and their medians are printed.

Throughput on a shared 2-core machine moves by 10-30 % from one run of a few seconds to
the next, far more than what is measured here; so each run also measures the CPU the
node's processes (kernel, http-server keeper and worker, the app) used per request or
message (schedstat, all threads), which other load on the machine disturbs much less.
That figure's on/off ratio is the cost of the figures.

The primitives: ns per call of prometheus_client's counter and histogram (plain, and in
multiprocess mode, which writes mmap'd files) against the plain Python counting the
services do (porch.node.metrics).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from bench_http_server import HELLO, wrk  # noqa: E402
from bench_websocket import CLIENT, ECHO_ASYNC, drive  # noqa: E402

from support.node import Node, children, free_port, wait_for  # noqa: E402

QUICK = os.environ.get("PORCH_BENCH_QUICK") == "1"

PRIMITIVES = """
import os, sys, tempfile, timeit
if sys.argv[1] == "multiprocess":
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
from prometheus_client import Counter, Histogram
from porch.node.metrics import COUNTER, HISTOGRAM, Family
n = int(sys.argv[2])
c = Counter("req", "h", ["app", "method", "code"])
h = Histogram("lat", "h", ["app"])
child, hchild = c.labels("a:b:c", "GET", "2xx"), h.labels("a:b:c")
f = Family("req", "h", COUNTER, ("app", "method", "code"))
fh = Family("lat", "h", HISTOGRAM, ("app",))
def best(stmt):
    return min(timeit.repeat(stmt, globals=globals(), number=n, repeat=5)) / n * 1e9
print(best("c.labels('a:b:c', 'GET', '2xx').inc()"), best("child.inc()"),
      best("h.labels('a:b:c').observe(0.0123)"), best("hchild.observe(0.0123)"),
      best("f.inc(('a:b:c', 'GET', '2xx'))"), best("fh.histogram(('a:b:c',)).observe(0.0123)"))
"""


def primitives(calls: int) -> None:
    script = Path(tempfile.mkdtemp()) / "primitives.py"
    script.write_text(textwrap.dedent(PRIMITIVES))
    env = dict(os.environ, PYTHONPATH=str(REPO / "services"))
    for mode in ("plain", "multiprocess"):
        out = subprocess.run([sys.executable, str(script), mode, str(calls)], capture_output=True,
                             text=True, env=env, timeout=300)
        if out.returncode != 0:
            print(f"metrics: primitives ({mode}) failed: {out.stderr.strip()[-300:]}")
            return
        labels_inc, inc, labels_observe, observe, family_inc, family_observe = map(float, out.stdout.split())
        print(f"metrics: prometheus_client ({mode}) ns per call: labels().inc {labels_inc:.0f}, "
              f"inc {inc:.0f}, labels().observe {labels_observe:.0f}, observe {observe:.0f}")
        if mode == "plain":
            print(f"metrics: porch.node.metrics ns per call: Family.inc {family_inc:.0f}, "
                  f"histogram().observe {family_observe:.0f}")
    shutil.rmtree(script.parent, ignore_errors=True)


def node_cpu_ns(node: Node) -> int:
    """CPU time of every process of the node (all threads), in ns, from schedstat."""
    pids = [p.pid for p in node.procs.values() if p.poll() is None]
    pids += [c for pid in list(pids) for c in children(pid)]  # the http-server's worker
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError):
                continue
    return total


def measured(node: Node, run: Callable[[], float]) -> tuple[float, float]:
    """(what run() returns: a rate, the node's CPU µs per unit of it)."""
    before, started = node_cpu_ns(node), time.monotonic()
    count = run()
    cpu = node_cpu_ns(node) - before
    return count / (time.monotonic() - started), cpu / 1000 / max(1.0, count)


def start(enabled: bool) -> tuple[Node, int]:
    node = Node(f'node = "bench-{"on" if enabled else "off"}.os"\n[metrics]\nenabled = '
                f'{"true" if enabled else "false"}\n' + "".join(
                    f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                    for pid in ("hello:bench:sys", "aecho:bench:sys")))
    node.start("kernel")
    port = free_port()
    node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "bench"})
    node.spawn("hello:bench:sys", HELLO)
    node.spawn("aecho:bench:sys", ECHO_ASYNC)
    node.wait_log("hello:bench:sys", "READY")
    node.wait_log("aecho:bench:sys", "READY")
    return node, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1 if QUICK else 5)
    parser.add_argument("--seconds", type=float, default=2 if QUICK else 5)
    parser.add_argument("--primitives-only", action="store_true")
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    primitives(20_000 if QUICK else 200_000)
    if args.primitives_only:
        return
    if shutil.which("wrk") is None:
        print("metrics: on/off skipped (needs wrk: apt-get install wrk)")
        return
    rate: dict[str, dict[str, list[float]]] = {w: {"on": [], "off": []} for w in ("HTTP", "WebSocket")}
    cpu: dict[str, dict[str, list[float]]] = {w: {"on": [], "off": []} for w in ("HTTP", "WebSocket")}
    same = os.environ.get("PORCH_BENCH_AA") == "1"  # both "on": the noise floor of the method
    for i in range(args.rounds):
        # Fresh nodes every round: two sets of the same processes differ by a few percent
        # on their own (memory layout); a new pair each round averages that out.
        nodes: dict[str, tuple[Node, int]] = {}
        try:
            order = ("on", "off") if i % 2 == 0 else ("off", "on")  # started and measured first
            for name in order:
                nodes[name] = start(name == "on" or same)
            one_round(nodes, order, args.seconds, rate, cpu)
        finally:
            for node, _ in nodes.values():
                node.close()
    for what, unit, per in (("HTTP", "requests/s", "request"), ("WebSocket", "echo messages/s", "message")):
        thr = [a / b for a, b in zip(rate[what]["on"], rate[what]["off"], strict=True)]
        cost = [a / b for a, b in zip(cpu[what]["on"], cpu[what]["off"], strict=True)]
        med = {k: statistics.median(v) for k, v in rate[what].items()}
        used = {k: statistics.median(v) for k, v in cpu[what].items()}
        print(f"metrics: {what} {unit}, median of {args.rounds}: on {med['on']:.0f}, off {med['off']:.0f}; "
              f"on/off per round {', '.join(f'{r:.3f}' for r in thr)}, median {statistics.median(thr):.3f}")
        print(f"metrics: {what} node CPU per {per}, median of {args.rounds}: on {used['on']:.1f} us, "
              f"off {used['off']:.1f} us; on/off per round {', '.join(f'{r:.3f}' for r in cost)}, "
              f"median {statistics.median(cost):.3f} (goal: under 1.03)")


def one_round(nodes: dict[str, tuple[Node, int]], order: tuple[str, str], seconds: float,
              rate: dict[str, dict[str, list[float]]], cpu: dict[str, dict[str, list[float]]]) -> None:
    client = nodes["on"][0].dir / "client.py"
    client.write_text(textwrap.dedent(CLIENT))
    http = {name: f"http://127.0.0.1:{port}/hello:bench:sys/" for name, (_, port) in nodes.items()}
    ws = {name: f"ws://127.0.0.1:{port}/aecho:bench:sys/ws" for name, (_, port) in nodes.items()}
    for url in http.values():
        wait_for(lambda url=url: subprocess.run(["curl", "-sf", url], capture_output=True).returncode == 0,
                 10, what="porch to answer")
        wrk(url, 32, 1)  # warm up
    for url in ws.values():
        drive(client, url, 10, 1)
    for name in order:
        node = nodes[name][0]
        r, c = measured(node, lambda name=name: float(wrk(http[name], 32, seconds)[2]))
        rate["HTTP"][name].append(r)
        cpu["HTTP"][name].append(c)
    for name in order:
        node = nodes[name][0]
        r, c = measured(node, lambda name=name: float(drive(client, ws[name], 10, seconds)[1]))
        rate["WebSocket"][name].append(r)
        cpu["WebSocket"][name].append(c)


if __name__ == "__main__":
    main()
