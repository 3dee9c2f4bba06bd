"""WebSocket echo through a porch process vs a plain Tornado echo, side by side.

    python bench/bench_websocket.py [--rounds N] [--seconds S] [--connections C]

Porch path: client -> http-server -> kernel -> echo process -> kernel -> http-server ->
client, with the echo process written on the asyncio stub (AsyncHttpServer; it talks
ZMTP to the kernel itself) and, as a second figure, on the blocking stub (HttpServer;
both stubs speak ZMTP to the kernel). Plain: client -> one
Tornado WebSocketHandler echoing. The same client (a
separate Python process with 10 connections, each sending its next message as soon as
the echo of the last arrives) drives all of them, alternating rounds; medians compared.

Target (issue 4): porch messages/second >= 0.4 x plain.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.node import Node, free_port  # noqa: E402

QUICK = os.environ.get("PORCH_BENCH_QUICK") == "1"

PLAIN = """
import asyncio, sys
import tornado.web, tornado.websocket
class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)
async def main():
    tornado.web.Application([(r"/.*", Echo)]).listen(int(sys.argv[1]), "127.0.0.1")
    print("READY", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

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
    await server.bind_ws_path("/ws", WsBindingConfig(authenticated=False))
    print("READY", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

ECHO = """
import porch
from porch.http.server import HttpServer, WsBindingConfig, send_ws_push
proc = porch.Process()
server = HttpServer(proc)
server.bind_ws_path("/ws", WsBindingConfig(authenticated=False))
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
    async with connect(url, max_queue=None) as ws:
        payload = "x" * 64
        while time.monotonic() < until:
            await ws.send(payload)
            await ws.recv()
            counts[i] += 1
async def main(url, conns, seconds):
    counts = [0] * conns
    start = time.monotonic()
    await asyncio.gather(*(one(url, start + seconds, counts, i) for i in range(conns)))
    print(sum(counts) / (time.monotonic() - start))
asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


def drive(client: Path, url: str, conns: int, seconds: float) -> float:
    out = subprocess.run([sys.executable, str(client), url, str(conns), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1 if QUICK else 3)
    parser.add_argument("--seconds", type=float, default=2 if QUICK else 5)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    node = Node('node = "bench.os"\n' + "".join(
        f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n'
        for pid in ("echo:bench:sys", "aecho:bench:sys")))
    plain_port = free_port()
    (node.dir / "plain.py").write_text(textwrap.dedent(PLAIN))
    client = node.dir / "client.py"
    client.write_text(textwrap.dedent(CLIENT))
    plain = subprocess.Popen([sys.executable, str(node.dir / "plain.py"), str(plain_port)],
                             stdout=subprocess.PIPE)
    try:
        assert plain.stdout is not None and plain.stdout.readline().strip() == b"READY"
        node.start("kernel")
        porch_port = free_port()
        node.start("http-server", "--port", str(porch_port), env={"PORCH_PASSWORD": "bench"})
        node.spawn("echo:bench:sys", ECHO)
        node.spawn("aecho:bench:sys", ECHO_ASYNC)
        node.wait_log("echo:bench:sys", "READY")
        node.wait_log("aecho:bench:sys", "READY")
        urls = {"plain": f"ws://127.0.0.1:{plain_port}/",
                "asyncio": f"ws://127.0.0.1:{porch_port}/aecho:bench:sys/ws",
                "blocking": f"ws://127.0.0.1:{porch_port}/echo:bench:sys/ws"}
        for url in urls.values():
            drive(client, url, args.connections, 1)
        rates: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                rates[name].append(drive(client, url, args.connections, args.seconds))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"websocket: echo messages/s, {args.connections} connections, median of {args.rounds}: "
              f"plain tornado {med['plain']:.0f}, porch with an asyncio-stub echo process "
              f"{med['asyncio']:.0f}, ratio {med['asyncio'] / med['plain']:.2f} (target >= 0.4)")
        print(f"websocket: the same with a blocking-stub echo process {med['blocking']:.0f}, "
              f"ratio {med['blocking'] / med['plain']:.2f}")
    finally:
        plain.kill()
        plain.wait()
        node.close()


if __name__ == "__main__":
    main()
