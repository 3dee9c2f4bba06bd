"""Large bodies: memory while 4 x 50 MB answers go through the http-client to one process.

What runs (each its own OS process, on loopback): a plain HTTP server answering every
GET with the same 50 MB body; the real kernel and http-client; a requester process
(asyncio stub) that fetches N bodies at once through the http-client and keeps them
until all have arrived. While it runs, every process's RSS (and the node's shared
memory, where memfd blobs live) is sampled every 5 ms; the report is the peak of their
sum above the idle baseline, against the bytes in flight (N x size).

    python bench/bench_large_bodies.py [--count N] [--mb SIZE] [--services DIR]

`--services DIR` runs the node's processes from another checkout's services/ (A/B
against an older commit: `git worktree add /tmp/old <commit>`, then
`--services /tmp/old/services`). Issue 10's target: the peak under 2x the bytes in
flight, across all processes together.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from porch.node.procstat import proc_stat  # noqa: E402
from support.node import Node, free_port  # noqa: E402

REQUESTER = """
import asyncio, os, sys, time
import porch
from porch.http.client import send_request_await_response_async

async def main():
    proc = await porch.AsyncProcess.connect()
    url, count = sys.argv[1], int(sys.argv[2])
    print("READY", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    replies = await asyncio.gather(*(
        send_request_await_response_async(proc, "GET", url, timeout=60) for _ in range(count)),
        return_exceptions=True)
    took = time.monotonic() - started
    sizes = [len(r.body) if not isinstance(r, BaseException) else -1 for r in replies]
    print("DONE", took, *sizes, flush=True)
    sys.stdin.readline()

asyncio.run(main())
"""


def rss_kb(pid: int) -> int:
    stat = proc_stat(pid)  # (None: gone)
    return stat.rss_bytes // 1024 if stat is not None else 0


def shmem_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1])
    return 0


def serve(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            view = memoryview(body)
            for i in range(0, len(body), 1 << 20):
                self.wfile.write(view[i:i + (1 << 20)])

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--services", help="run the node from this services/ directory")
    args = parser.parse_args()
    size = args.mb * 1000 * 1000
    server = serve(bytes(size))
    url = f"http://127.0.0.1:{server.server_address[1]}/big"
    env_path = {"PYTHONPATH": str(Path(args.services).resolve())} if args.services else {}
    if env_path:
        os.environ.update(env_path)
    node = Node('node = "bench.os"\n[http_client]\nmax_response_bytes = 104857600\n'
                '[[process]]\nid = "req:bench:sys"\ncapabilities = ["http-client:distro:sys"]\n')
    try:
        node.start("kernel")
        node.start("http-client")
        script = node.dir / "requester.py"
        script.write_text(REQUESTER)
        requester = subprocess.Popen(
            [sys.executable, str(script), url, str(args.count)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PORCH_HOME": str(node.home.root), "PORCH_PROCESS": "req:bench:sys"})
        assert requester.stdout is not None and requester.stdin is not None
        assert requester.stdout.readline().strip() == "READY"
        pids = {"kernel": node.procs["kernel"].pid, "http-client": node.procs["http-client"].pid,
                "requester": requester.pid}
        time.sleep(0.5)
        base = {name: rss_kb(pid) for name, pid in pids.items()}
        base_shm = shmem_kb()
        peaks = dict.fromkeys(pids, 0)
        peak_total = peak_shm = 0
        requester.stdin.write("go\n")
        requester.stdin.flush()
        done: list[str] = []
        reader = threading.Thread(target=lambda: done.append(requester.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        while reader.is_alive():
            now = {name: rss_kb(pid) - base[name] for name, pid in pids.items()}
            shm = shmem_kb() - base_shm
            for name, value in now.items():
                peaks[name] = max(peaks[name], value)
            peak_total = max(peak_total, sum(now.values()) + max(0, shm))
            peak_shm = max(peak_shm, shm)
            time.sleep(0.005)
        fields = done[0].split()
        assert fields[0] == "DONE", done
        took, sizes = float(fields[1]), [int(x) for x in fields[2:]]
        requester.stdin.write("bye\n")
        requester.stdin.flush()
        requester.wait(10)
    finally:
        node.close()
        server.shutdown()
    inflight_mb = args.count * size / 1e6
    intact = sizes.count(size)
    print(f"large bodies: {args.count} x {args.mb} MB through the http-client to one process, "
          f"answered in {took:.2f} s; {intact} of {args.count} bodies arrived intact"
          + ("" if intact == args.count else " (the others failed: see the requester's errors)"))
    for name, value in peaks.items():
        print(f"  peak RSS above idle, {name:12} {value / 1000:8.1f} MB")
    print(f"  peak shared memory (memfd blobs)  {peak_shm / 1000:8.1f} MB")
    print(f"  peak of the sum (all processes + shared memory): {peak_total / 1000:.1f} MB = "
          f"{peak_total / 1000 / inflight_mb:.2f}x the {inflight_mb:.0f} MB in flight (target < 2x)")


if __name__ == "__main__":
    main()
