"""Route matching per request path: normal paths and hostile ones (issue 9 item 4).

    python bench/bench_routing.py [--quick]

A table like a busy node's (a chess-like app with static, param, dotted and wildcard
routes, homepage routes, 50 other apps) is asked to recognise normal request paths and
hostile ones of 1, 8 and 32 KiB built to make a backtracking matcher try every split.
Printed: microseconds per recognise (median of several batches). In-process, no
sockets: this is the matcher's own cost on the event loop, which must stay linear in
the path's length whatever the patterns.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from porch.http_server.routing import RouteTable

QUICK = os.environ.get("PORCH_BENCH_QUICK") == "1" or "--quick" in sys.argv
APP = "chess:chess:sys"
PATTERNS = ["/", "/games", "/games/:id", "/games/new", "/games/:id/moves/:n", "/files/*rest",
            "/x.:ext", "/:name.:ext", "/d/:a.:b.:c", "/w/*a/*b", "api", "/anon/*"]


def table() -> RouteTable[str]:
    t: RouteTable[str] = RouteTable()
    for p in PATTERNS:
        t.add(f"/{APP}{p}" if p != "api" else f"/{APP}/api", p)
    for p in ("", "/index.html", "/our"):
        t.add(p, "homepage " + p)
    for i in range(50):
        t.add(f"/app{i}:pkg:pub.os", "root")
        t.add(f"/app{i}:pkg:pub.os/items/:id", "item")
    return t


NORMAL = [
    ("static hit", f"/{APP}/games/new"),
    ("one param", f"/{APP}/games/42"),
    ("two params", f"/{APP}/games/42/moves/7"),
    ("dotted param", f"/{APP}/x.json"),
    ("name.ext", f"/{APP}/report.final.pdf"),
    ("wildcard", f"/{APP}/files/a/b/c.txt"),
    ("no match (fallback)", f"/{APP}/games/42/nope/x/y"),
]


def hostile(size: int) -> list[tuple[str, str]]:
    n = size // 2
    return [
        # Each fails only after the last byte: a backtracking matcher tries every split.
        (f"{size // 1024} KiB dots vs :a.:b.:c", f"/{APP}/d/" + "a." * n),
        (f"{size // 1024} KiB dots vs :name.:ext", f"/{APP}/" + "a." * n),
        (f"{size // 1024} KiB slashes vs *a/*b", f"/{APP}/w/" + "a/" * n + "/"),
    ]


def per_call_us(t: RouteTable[str], path: str, budget_s: float) -> float:
    """Median µs per recognise over batches filling about budget_s."""
    started = time.perf_counter()
    t.recognize(path)
    once = max(time.perf_counter() - started, 1e-7)
    batch = max(1, min(10_000, int(budget_s / 5 / once)))
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(batch):
            t.recognize(path)
        samples.append((time.perf_counter() - started) / batch * 1e6)
    return statistics.median(samples)


def main() -> None:
    t = table()
    budget = 0.05 if QUICK else 0.5
    print("routing: µs per recognise (median of 5 batches)")
    for label, path in NORMAL:
        print(f"  {label:<32} {per_call_us(t, path, budget):10.2f} µs   ({len(path)} bytes)")
    for size in (1024, 8192) if QUICK else (1024, 8192, 32768):
        for label, path in hostile(size):
            print(f"  {label:<32} {per_call_us(t, path, budget):10.2f} µs")


if __name__ == "__main__":
    main()
