"""HTTP through porch vs a plain Tornado hello world, side by side in one run.

    python bench/bench_http_server.py [--rounds N] [--seconds S] [--connections C]

Both servers answer GET with "hello world" (text/plain, 11 bytes). The porch path is
wrk -> http-server (Tornado) -> kernel -> a hello process (blocking stub) -> back; the
plain one is wrk -> one Tornado process. wrk (Debian package `wrk`) generates the load
on the same 2-core machine, so both sides share the cores with it alike. Rounds
alternate plain/porch and the medians are compared.

Targets (issue 3): porch requests/second >= 0.75 x plain; p50 latency at concurrency
1 <= 1 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.node import Node, free_port, wait_for  # noqa: E402

QUICK = os.environ.get("PORCH_BENCH_QUICK") == "1"

PLAIN = """
import asyncio, sys
import tornado.web
class Hello(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write(b"hello world")
async def main():
    app = tornado.web.Application([(r"/.*", Hello)])
    app.listen(int(sys.argv[1]), "127.0.0.1")
    print("READY", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
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


def wrk(url: str, connections: int, seconds: float, threads: int = 1) -> tuple[float, float]:
    """(requests/second, p50 latency in ms)."""
    duration = f"-d{max(1, round(seconds))}s"  # wrk takes whole seconds only
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", duration, "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    assert p50 is not None, out
    value, unit = float(p50.group(1)), p50.group(2)
    return rps, value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1 if QUICK else 3)
    parser.add_argument("--seconds", type=float, default=2 if QUICK else 5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    if shutil.which("wrk") is None:
        print("http-server: skipped (needs wrk: apt-get install wrk)")
        return
    node = Node('node = "bench.os"\n[[process]]\nid = "hello:bench:sys"\n'
                'capabilities = ["http-server:distro:sys"]\n')
    plain_port = free_port()
    plain_script = node.dir / "plain.py"
    plain_script.write_text(textwrap.dedent(PLAIN))
    plain = subprocess.Popen([sys.executable, str(plain_script), str(plain_port)], stdout=subprocess.PIPE)
    try:
        assert plain.stdout is not None and plain.stdout.readline().strip() == b"READY"
        node.start("kernel")
        porch_port = free_port()
        node.start("http-server", "--port", str(porch_port), env={"PORCH_PASSWORD": "bench"})
        node.spawn("hello:bench:sys", HELLO)
        node.wait_log("hello:bench:sys", "READY")
        urls = {"plain": f"http://127.0.0.1:{plain_port}/",
                "porch": f"http://127.0.0.1:{porch_port}/hello:bench:sys/"}
        wait_for(lambda: subprocess.run(["curl", "-sf", urls["porch"]], capture_output=True).returncode == 0,
                 10, what="porch to answer")
        for url in urls.values():  # warm up
            wrk(url, args.connections, 1)
        rps: dict[str, list[float]] = {"plain": [], "porch": []}
        lat: dict[str, list[float]] = {"plain": [], "porch": []}
        for _ in range(args.rounds):
            for name, url in urls.items():
                r, _ = wrk(url, args.connections, args.seconds)
                rps[name].append(r)
                _, latency = wrk(url, 1, max(1.0, args.seconds / 2))
                lat[name].append(latency)
            time.sleep(0.2)
        med = {k: statistics.median(v) for k, v in rps.items()}
        p50 = {k: statistics.median(v) for k, v in lat.items()}
        print(f"http-server: requests/s, {args.connections} connections, median of {args.rounds}: "
              f"plain tornado {med['plain']:.0f}, porch {med['porch']:.0f}, "
              f"ratio {med['porch'] / med['plain']:.2f} (target >= 0.75)")
        print(f"http-server: p50 latency at concurrency 1: plain {p50['plain']:.3f} ms, "
              f"porch {p50['porch']:.3f} ms (target <= 1 ms)")
    finally:
        plain.kill()
        plain.wait()
        node.close()


if __name__ == "__main__":
    main()
