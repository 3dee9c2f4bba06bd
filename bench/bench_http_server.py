"""HTTP through porch vs direct Tornado and nginx -> Tornado, side by side in one run.

    python bench/bench_http_server.py [--rounds N] [--seconds S] [--connections C]
                                      [--sides direct,nginx,porch,porch-direct] [--porch-env K=V ...]

Every side answers GET with "hello world" (text/plain, 11 bytes):

- direct: wrk -> one Tornado process (`RequestHandler`);
- nginx: wrk -> nginx (one worker, keep-alive upstream) -> that same Tornado process
  (skipped, with a note, where nginx is not installed);
- porch: wrk -> http-server (keeper + worker) -> kernel -> a hello process (blocking
  stub) -> back;
- porch-direct: the same app binding with `direct=True`: wrk -> worker -> the hello
  process on its direct link -> back (docs/direct.md).

wrk (Debian's `wrk`, one thread, keep-alive) generates the load on the same 2-core
machine. Each round measures every side in turn (the order rotates): requests/s at
`--connections` (64), the CPU all of the side's processes burnt per request over that
load (bench/peers.py: schedstat of every thread), and the p50 latency at concurrency 1.
Medians over the rounds, and each round's ratio to direct, are printed.

Goals (issue 12): porch req/s >= 1.3 x nginx -> Tornado; porch CPU per request <= 0.8
x direct; porch p50 at c=1 <= direct + 0.1 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from peers import Nginx, Tornado, cpu_ns, side_settings, with_descendants  # noqa: E402

from porch.cli.procinfo import children  # noqa: E402
from support.node import Node, free_port, wait_for  # noqa: E402

QUICK = os.environ.get("PORCH_BENCH_QUICK") == "1"

HELLO = """
import porch
from porch.http.server import HttpBindingConfig, HttpResponse, HttpServer
proc = porch.Process()
server = HttpServer(proc)
# (direct only when asked: a checkout before it knew no such argument, for A/B runs)
server.bind_http_path("/", HttpBindingConfig(authenticated=False, **({"direct": True} if DIRECT else {})))
print("READY", flush=True)
reply = HttpResponse(200).header("Content-Type", "text/plain").body(b"hello world")
while True:
    msg = proc.await_message()
    server.handle_request(msg, lambda req: reply)
"""


WRK_CPUS: list[str] = []  # --wrk-cpus: taskset's CPU list for wrk


def wrk(url: str, connections: int, seconds: float) -> tuple[float, float, int]:
    """(requests/second, p50 latency in ms, requests completed)."""
    duration = f"-d{max(1, round(seconds))}s"  # wrk takes whole seconds only
    pin = ["taskset", "-c", WRK_CPUS[0]] if WRK_CPUS else []
    out = subprocess.run([*pin, "wrk", "-t1", f"-c{connections}", duration, "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    assert p50 is not None, out
    value, unit = float(p50.group(1)), p50.group(2)
    return rps, value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, count


def porch_node(env: dict[str, str], config_extra: str = "", direct: bool = False) -> tuple[Node, int]:
    node = Node('node = "bench.os"\n' + config_extra + '[[process]]\nid = "hello:bench:sys"\n'
                'capabilities = ["http-server:distro:sys"]\n')
    node.start("kernel", env=env)
    port = free_port()
    node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "bench", **env})
    node.spawn("hello:bench:sys", f"DIRECT = {direct}\n" + HELLO, **env)
    node.wait_log("hello:bench:sys", "READY")
    return node, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1 if QUICK else 3)
    parser.add_argument("--seconds", type=float, default=2 if QUICK else 5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sides", default="direct,nginx,porch,porch-direct",
                        help="comma-separated: direct, nginx, porch, porch-direct (the app's binding "
                        "made with direct=True: requests on a direct link, docs/direct.md), "
                        "and porch-N for a second porch "
                        "node started with --porch-env N:K=V (e.g. porch-uv with uv:PORCH_UVLOOP=1)")
    parser.add_argument("--porch-env", action="append", default=[],
                        help="NAME:KEY=VALUE, the environment of the porch side called porch-NAME")
    parser.add_argument("--porch-config", action="append", default=[],
                        help="NAME:LINE, a porch.toml line of porch-NAME, e.g. 'w2:[http_server]' "
                        "then 'w2:workers = 2'")
    parser.add_argument("--pin", action="append", default=[],
                        help="SIDE:CPUS, every thread of that side's processes on those CPUs "
                        "(taskset's list, e.g. porch:1 or porch-w2:0-1), for the scaling model")
    parser.add_argument("--wrk-cpus", help="taskset's CPU list for wrk")
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop what it started
    if shutil.which("wrk") is None:
        print("http-server: skipped (needs wrk: apt-get install wrk)")
        return
    sides, envs, configs = side_settings("http-server", args.sides, args.porch_env, args.porch_config)
    closers: list[object] = []
    urls: dict[str, str] = {}
    pids: dict[str, list[int]] = {}
    parts: dict[str, dict[str, list[int]]] = {}
    try:
        tornado = Tornado(free_port())
        closers.append(tornado)
        if "direct" in sides:
            urls["direct"] = f"http://127.0.0.1:{tornado.port}/"
            pids["direct"] = tornado.pids
        if "nginx" in sides:
            nginx = Nginx(free_port(), tornado.port)
            closers.append(nginx)
            urls["nginx"] = f"http://127.0.0.1:{nginx.port}/"
            pids["nginx"] = nginx.pids + tornado.pids
        for side in sides:
            if not side.startswith("porch"):
                continue
            words = side.split("-")[1:]  # porch[-VARIANT][-direct]
            variant = "-".join(w for w in words if w != "direct")
            node, port = porch_node(envs.get(variant, {}), configs.get(variant, ""), "direct" in words)
            closers.append(node)
            urls[side] = f"http://127.0.0.1:{port}/hello:bench:sys/"
            pids[side] = [p.pid for p in node.procs.values()]
            server = node.procs["http-server"].pid
            parts[side] = {"kernel": [node.procs["kernel"].pid], "keeper": [server],
                           "worker": children(server), "app": [node.procs["hello:bench:sys"].pid]}
            wait_for(lambda u=urls[side]: subprocess.run(["curl", "-sf", u],  # type: ignore[misc]
                                                         capture_output=True).returncode == 0,
                     10, what="porch to answer")
        if args.wrk_cpus:
            WRK_CPUS.append(args.wrk_cpus)
        for item in args.pin:
            side, _, cpus = item.partition(":")
            for pid in with_descendants(pids[side]):
                subprocess.run(["taskset", "-a", "-c", "-p", cpus, str(pid)], capture_output=True)
        for url in urls.values():  # warm up
            wrk(url, args.connections, 1)
        names = list(urls)
        rps: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        lat: dict[str, list[float]] = {n: [] for n in names}
        # Per process of a porch side, CPU per request: (at c=connections, at c=1).
        split: dict[str, dict[str, tuple[list[float], list[float]]]] = {
            n: {k: ([], []) for k in parts.get(n, {})} for n in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                for which, conns, seconds in ((0, args.connections, args.seconds),
                                              (1, 1, max(1.0, args.seconds / 2))):
                    groups = parts.get(name, {})
                    each = {k: cpu_ns(v, False) for k, v in groups.items()}
                    before = cpu_ns(pids[name])
                    rate, p50, count = wrk(urls[name], conns, seconds)
                    if which == 0:
                        cpu[name].append((cpu_ns(pids[name]) - before) / 1000 / max(1, count))
                        rps[name].append(rate)
                    else:
                        lat[name].append(p50)
                    for k, v in groups.items():
                        split[name][k][which].append((cpu_ns(v, False) - each[k]) / 1000 / max(1, count))
                time.sleep(0.2)
        report(names, rps, cpu, lat, args)
        for name, groups in split.items():
            for which, label in ((0, f"c={args.connections}"), (1, "c=1")):
                if groups:
                    print(f"http-server: {name} CPU us/request by process at {label}: " + ", ".join(
                        f"{k} {statistics.median(v[which]):.1f}" for k, v in groups.items()))
    finally:
        for closer in reversed(closers):
            closer.close()  # type: ignore[attr-defined]


def report(names: list[str], rps: dict[str, list[float]], cpu: dict[str, list[float]],
           lat: dict[str, list[float]], args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    print(f"http-server: {args.rounds} round(s) of {args.seconds:.0f} s per side, wrk -t1, load "
          f"average {load:.1f}; medians (per-round ratios to direct)")
    base = "direct" if "direct" in names else names[0]

    def ratios(values: dict[str, list[float]], name: str, diff: bool = False) -> str:
        pairs = zip(values[name], values[base], strict=True)
        each = [(a - b) if diff else (a / b if b else 0.0) for a, b in pairs]
        return " ".join(f"{x:+.3f}" if diff else f"{x:.2f}" for x in each)

    for name in names:
        print(f"http-server: {name:>8}: {statistics.median(rps[name]):7.0f} req/s at c={args.connections} "
              f"({ratios(rps, name)}), CPU {statistics.median(cpu[name]):6.1f} us/request "
              f"({ratios(cpu, name)}), p50 at c=1 {statistics.median(lat[name]):.3f} ms "
              f"({ratios(lat, name, diff=True)} ms)")
    if "nginx" in names:
        for name in names:
            if name.startswith("porch"):
                each = [a / b for a, b in zip(rps[name], rps["nginx"], strict=True)]
                print(f"http-server: {name} req/s / nginx -> Tornado: "
                      + " ".join(f"{x:.2f}" for x in each) + " (goal >= 1.3)")


if __name__ == "__main__":
    main()
