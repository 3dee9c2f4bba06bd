"""WebSocket echo through porch vs direct Tornado and nginx -> Tornado, side by side.

    python bench/bench_websocket.py [--rounds N] [--seconds S] [--connections C]
                                    [--sides direct,nginx,porch,porch-async,porch-direct,
                                             porch-direct-async]
                                    [--porch-env NAME:K=V ...]

The same client (a separate Python process, the `websockets` library, `--connections`
10 connections each sending its next 64-byte text message as soon as the echo of the
last arrives) drives every side in turn, the order rotating from round to round:

- direct: one Tornado `WebSocketHandler` echoing (bench/peers.py);
- nginx: nginx (one worker) -> that same Tornado process (skipped, with a note, where
  nginx is not installed);
- porch: client -> http-server worker -> kernel -> echo process (blocking stub,
  `HttpServer`) -> kernel -> worker -> client;
- porch-async: the same with the echo process on the asyncio stub (`AsyncHttpServer`);
- porch-direct, porch-direct-async: the same apps binding with `direct=True`: the
  process holds its clients' sockets, client -> echo process -> client
  (docs/websockets.md).

Per side: messages/s, and the CPU all of the side's processes burnt per message
(bench/peers.py; the client's own CPU is not counted); for porch sides also per process.
Medians over the rounds and per-round ratios to direct are printed.

Goals (issue 12): porch msg/s >= 0.8 x direct; porch CPU per message <= 1.3 x direct.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from peers import Nginx, Tornado, cpu_ns, side_settings  # noqa: E402

from porch.cli.procinfo import children  # noqa: E402
from support.node import Node, free_port  # noqa: E402

QUICK = os.environ.get("PORCH_BENCH_QUICK") == "1"

ECHO_ASYNC = """
import asyncio
import porch
from porch.http.server import AsyncHttpServer, WsBindingConfig, send_ws_push
async def main():
    proc = await porch.AsyncProcess.connect()
    server = AsyncHttpServer(proc)
    def echo(channel, kind, blob):
        if kind == "Text":
            send_ws_push(proc, channel, "Text", blob)
    proc.on_request(lambda msg: server.handle_request(msg, lambda req: None, echo))
    # (direct only when asked: a checkout before it knew no such argument, for A/B runs)
    await server.bind_ws_path("/ws", WsBindingConfig(authenticated=False,
                                                     **({"direct": True} if DIRECT else {})))
    print("READY", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

ECHO = """
import porch
from porch.http.server import HttpServer, WsBindingConfig, send_ws_push
proc = porch.Process()
server = HttpServer(proc)
server.bind_ws_path("/ws", WsBindingConfig(authenticated=False, **({"direct": True} if DIRECT else {})))
print("READY", flush=True)
def echo(channel, kind, blob):
    if kind == "Text":
        send_ws_push(proc, channel, "Text", blob)
while True:
    server.handle_request(proc.await_message(), lambda req: None, echo)
"""

CLIENT = """
import asyncio, sys, time
from websockets.asyncio.client import connect
async def one(url, until, counts, i):
    async with connect(url, max_queue=None, compression=None) as ws:
        payload = "x" * 64
        while time.monotonic() < until:
            await ws.send(payload)
            await ws.recv()
            counts[i] += 1
async def main(url, conns, seconds):
    counts = [0] * conns
    start = time.monotonic()
    await asyncio.gather(*(one(url, start + seconds, counts, i) for i in range(conns)))
    print(sum(counts) / (time.monotonic() - start), sum(counts))
asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


def drive(client: Path, url: str, conns: int, seconds: float) -> tuple[float, int]:
    """(messages/second, messages echoed)."""
    out = subprocess.run([sys.executable, str(client), url, str(conns), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    rate, count = out.stdout.split()
    return float(rate), int(count)


# The echo process of each kind of side: (direct binding, asyncio stub) -> its id.
APPS = {(False, False): "echo:bench:sys", (False, True): "aecho:bench:sys",
        (True, False): "decho:bench:sys", (True, True): "adecho:bench:sys"}


def side_app(side: str) -> tuple[str, str]:
    """A porch side's node variant and echo process: porch[-VARIANT][-direct][-async]."""
    words = side.split("-")[1:]
    variant = "-".join(w for w in words if w not in ("direct", "async"))
    return variant, APPS["direct" in words, "async" in words]


def porch_node(env: dict[str, str], config_extra: str = "", apps: set[str] | None = None) -> tuple[Node, int]:
    """A node running the echo processes `apps` (default: all of them)."""
    wanted = {kind: pid for kind, pid in APPS.items() if apps is None or pid in apps}
    node = Node('node = "bench.os"\n' + config_extra + "".join(
        f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
        for pid in wanted.values()))
    node.start("kernel", env=env)
    port = free_port()
    node.start("http-server", "--port", str(port), env={"PORCH_PASSWORD": "bench", **env})
    for (direct, is_async), pid in wanted.items():
        node.spawn(pid, f"DIRECT = {direct}\n" + (ECHO_ASYNC if is_async else ECHO), **env)
    for pid in wanted.values():
        node.wait_log(pid, "READY")
    return node, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1 if QUICK else 3)
    parser.add_argument("--seconds", type=float, default=2 if QUICK else 5)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--sides", default="direct,nginx,porch,porch-async,porch-direct,porch-direct-async")
    parser.add_argument("--porch-env", action="append", default=[],
                        help="NAME:KEY=VALUE: the environment of the porch node behind sides "
                        "porch-NAME and porch-NAME-async (e.g. uv:PORCH_UVLOOP=1)")
    parser.add_argument("--porch-config", action="append", default=[],
                        help="NAME:LINE, a porch.toml line of that node")
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop what it started
    sides, envs, configs = side_settings("websocket", args.sides, args.porch_env, args.porch_config)
    closers: list[object] = []
    urls: dict[str, str] = {}
    pids: dict[str, list[int]] = {}
    parts: dict[str, dict[str, list[int]]] = {}
    nodes: dict[str, tuple[Node, int]] = {}
    try:
        tornado = Tornado(free_port())
        closers.append(tornado)
        client = tornado.dir / "client.py"
        client.write_text(textwrap.dedent(CLIENT))
        if "direct" in sides:
            urls["direct"] = f"ws://127.0.0.1:{tornado.port}/ws"
            pids["direct"] = tornado.pids
        if "nginx" in sides:
            nginx = Nginx(free_port(), tornado.port)
            closers.append(nginx)
            urls["nginx"] = f"ws://127.0.0.1:{nginx.port}/ws"
            pids["nginx"] = nginx.pids + tornado.pids
        for side in sides:
            if not side.startswith("porch"):
                continue
            variant, app = side_app(side)
            if variant not in nodes:
                apps = {side_app(s)[1] for s in sides if s.startswith("porch") and side_app(s)[0] == variant}
                nodes[variant] = porch_node(envs.get(variant, {}), configs.get(variant, ""), apps)
                closers.append(nodes[variant][0])
            node, port = nodes[variant]
            urls[side] = f"ws://127.0.0.1:{port}/{app}/ws"
            server = node.procs["http-server"].pid
            parts[side] = {"kernel": [node.procs["kernel"].pid], "keeper": [server],
                           "worker": children(server), "echo": [node.procs[app].pid]}
            pids[side] = [pid for group in parts[side].values() for pid in group]
        names = list(urls)
        for url in urls.values():
            drive(client, url, args.connections, 1)
        rates: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        split: dict[str, dict[str, list[float]]] = {n: {k: [] for k in parts.get(n, {})} for n in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                groups = parts.get(name, {})
                before = cpu_ns(pids[name])
                each = {k: cpu_ns(v, False) for k, v in groups.items()}
                rate, count = drive(client, urls[name], args.connections, args.seconds)
                cpu[name].append((cpu_ns(pids[name]) - before) / 1000 / max(1, count))
                for k, v in groups.items():
                    split[name][k].append((cpu_ns(v, False) - each[k]) / 1000 / max(1, count))
                rates[name].append(rate)
                time.sleep(0.2)
        report(names, rates, cpu, split, args)
    finally:
        for closer in reversed(closers):
            closer.close()  # type: ignore[attr-defined]


def report(names: list[str], rates: dict[str, list[float]], cpu: dict[str, list[float]],
           split: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    print(f"websocket: {args.rounds} round(s) of {args.seconds:.0f} s per side, {args.connections} "
          f"ping-pong connections, 64 B text, load average {os.getloadavg()[0]:.1f}; medians "
          "(per-round ratios to direct)")
    base = "direct" if "direct" in names else names[0]
    for name in names:
        r = " ".join(f"{a / b:.2f}" for a, b in zip(rates[name], rates[base], strict=True))
        c = " ".join(f"{a / b:.2f}" for a, b in zip(cpu[name], cpu[base], strict=True))
        line = (f"websocket: {name:>11}: {statistics.median(rates[name]):7.0f} msg/s ({r}), "
                f"CPU {statistics.median(cpu[name]):6.1f} us/msg ({c})")
        if split[name]:
            line += " = " + " + ".join(f"{k} {statistics.median(v):.1f}" for k, v in split[name].items())
        print(line)


if __name__ == "__main__":
    main()
