"""Processes on other machines: a remote process over loopback TCP + CURVE, beside the
same process linked locally and a raw pyzmq CURVE echo, in one run.

    python bench/bench_remote.py [--rounds N] [--seconds S] [--connections C]

One node (kernel listening on loopback TCP with CURVE keys, http-server) runs two echo
processes and two HTTP hello apps, the same code each time: one of each linked on the
node's Unix socket, one of each over TCP + CURVE (started with only $PORCH_KERNEL and
$PORCH_KEYS, as on another machine). Beside them, a raw echo: a pyzmq ROUTER, CURVE
server, that sends every message back, and a DEALER (CURVE client) in this process.

- round trip: this process's blocking stub (`send_and_await_response`, 100-byte
  bodies) through the kernel to the local echo and to the remote one; the raw echo's
  round trip is DEALER -> ROUTER -> DEALER over the same TCP + CURVE (one hop each way,
  porch's path has two: it crosses the kernel).
- HTTP: wrk (Debian package `wrk`) against each hello app through the http-server.

Rounds alternate the sides; medians are printed. Loopback shows what the transport and
CURVE cost, not a network's latency.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import zmq  # noqa: E402

from porch.node import keys  # noqa: E402
from support.node import PY, free_port, wait_for  # noqa: E402
from support.remote import RemoteNode  # noqa: E402

QUICK = os.environ.get("PORCH_BENCH_QUICK") == "1"
BODY = bytes(range(100))

ECHO = """
import porch
proc = porch.Process()
print("READY", flush=True)
while True:
    msg = proc.await_message()
    if msg.is_request:
        proc.respond(msg, msg.body)
"""

HELLO = """
import porch
from porch.http.server import HttpBindingConfig, HttpResponse, HttpServer
proc = porch.Process()
server = HttpServer(proc)
server.bind_http_path("/", HttpBindingConfig(authenticated=False))
print("READY", flush=True)
reply = HttpResponse(200).header("Content-Type", "text/plain").body(b"hello world")
while True:
    msg = proc.await_message()
    server.handle_request(msg, lambda req: reply)
"""

RAW_ECHO = """
import sys, zmq
public, secret, endpoint = sys.argv[1:4]
ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
sock.curve_server = True
sock.curve_publickey, sock.curve_secretkey = public.encode(), secret.encode()
sock.setsockopt(zmq.LINGER, 0)
sock.bind(endpoint)
print("READY", flush=True)
while True:
    sock.send_multipart(sock.recv_multipart())
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ping(send: Any, n: int) -> tuple[float, float]:
    """p50, p99 of n round trips of send(), in µs."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        send()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return percentile(samples, 0.5), percentile(samples, 0.99)


def answers(url: str) -> bool:
    return subprocess.run(["curl", "-sf", url], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1 if QUICK else 3)
    parser.add_argument("--pings", type=int, default=300 if QUICK else 2000)
    parser.add_argument("--seconds", type=float, default=2 if QUICK else 4)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    remote_ids = ["echo-remote:bench:sys", "hello-remote:bench:sys"]
    node = RemoteNode(remote_ids)
    node.home.config_path.write_text(
        node.home.config_path.read_text()
        + "".join(f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
                  for pid in ("echo-local:bench:sys", "hello-local:bench:sys")))
    raw_port = free_port()
    server, client = keys.new_pair(), keys.new_pair()
    raw_script = node.dir / "raw_echo.py"
    raw_script.write_text(textwrap.dedent(RAW_ECHO))
    raw = subprocess.Popen([PY, str(raw_script), server.public, server.secret,
                            f"tcp://127.0.0.1:{raw_port}"], stdout=subprocess.PIPE)
    ctx = zmq.Context()
    try:
        assert raw.stdout is not None and raw.stdout.readline().strip() == b"READY"
        node.start("kernel")
        http_port = free_port()
        node.start("http-server", "--port", str(http_port), env={"PORCH_PASSWORD": "bench"})
        node.spawn("echo-local:bench:sys", ECHO)
        node.spawn("hello-local:bench:sys", HELLO)
        node.spawn_remote("echo-remote:bench:sys", ECHO)
        node.spawn_remote("hello-remote:bench:sys", HELLO)
        for pid in ("echo-local:bench:sys", "hello-local:bench:sys", *remote_ids):
            node.wait_log(pid, "READY", timeout=30)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.curve_serverkey = server.public.encode()
        dealer.curve_publickey, dealer.curve_secretkey = client.public.encode(), client.secret.encode()
        dealer.connect(f"tcp://127.0.0.1:{raw_port}")

        def raw_trip() -> None:
            dealer.send(BODY)
            dealer.recv()

        proc = node.process("requester:bench:sys")
        sides = {
            "local process": lambda: proc.send_and_await_response("echo-local:bench:sys", BODY),
            "remote process": lambda: proc.send_and_await_response("echo-remote:bench:sys", BODY),
            "raw CURVE echo": raw_trip,
        }
        for send in sides.values():  # warm up (and the raw handshake)
            ping(send, 100)
        p50: dict[str, list[float]] = {k: [] for k in sides}
        p99: dict[str, list[float]] = {k: [] for k in sides}
        names = list(sides)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                a, b = ping(sides[name], args.pings)
                p50[name].append(a)
                p99[name].append(b)
        med50 = {k: statistics.median(v) for k, v in p50.items()}
        med99 = {k: statistics.median(v) for k, v in p99.items()}
        print(f"remote: round trip, 100-byte bodies, {args.pings} per round, median of {args.rounds} "
              "rounds (p50 / p99):")
        for name in names:
            ratio = f" = {med50[name] / med50['raw CURVE echo']:.2f}x raw" if name != "raw CURVE echo" else ""
            print(f"remote:   {name:<15} {med50[name]:7.1f} / {med99[name]:7.1f} µs{ratio}")
        print(f"remote:   remote / local: {med50['remote process'] / med50['local process']:.2f}x")
        if shutil.which("wrk") is None:
            print("remote: HTTP skipped (needs wrk: apt-get install wrk)")
            return
        from bench_http_server import wrk

        urls = {"local process": f"http://127.0.0.1:{http_port}/hello-local:bench:sys/",
                "remote process": f"http://127.0.0.1:{http_port}/hello-remote:bench:sys/"}
        for url in urls.values():
            wait_for(functools.partial(answers, url), 10, what=f"{url} to answer")
            wrk(url, args.connections, 1)
        rps: dict[str, list[float]] = {k: [] for k in urls}
        for r in range(args.rounds):
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            for name in order:
                rps[name].append(wrk(urls[name], args.connections, args.seconds)[0])
        med = {k: statistics.median(v) for k, v in rps.items()}
        print(f"remote: HTTP requests/s (wrk, {args.connections} connections, median of {args.rounds}): "
              f"local process {med['local process']:.0f}, remote process {med['remote process']:.0f} "
              f"({med['remote process'] / med['local process']:.2f}x)")
    finally:
        ctx.destroy(0)
        raw.kill()
        raw.wait()
        node.close()


if __name__ == "__main__":
    main()
