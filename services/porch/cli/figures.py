"""The node's figures in the terminal (issue 13 item 4): what `porch status` adds to each
process's line, and `porch top`, which redraws a table of them every few seconds with
plain ANSI escapes (no curses).

Both read the http-server's view (GET /http-server:distro:sys/processes, local, with
the metrics token from the home): the same numbers as the node page.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import Any, TextIO

from porch.http_server.port import read_port
from porch.http_server.rpc_auth import RpcToken
from porch.http_server.scrape import TOKEN_FILE
from porch.node.home import NodeHome

PROCESSES_PATH = "/http-server:distro:sys/processes"
BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 30
CLEAR = "\x1b[H\x1b[2J"
STATE_COLOURS = {"running": "32", "starting": "33", "restarting": "33", "stopping": "33",
                 "backing off": "31", "fatal": "31"}


def fetch_view(home: NodeHome, timeout: float = 5.0) -> tuple[dict[str, Any] | None, str]:
    """(the view, "") or (None, why not)."""
    port = read_port(home.state_dir / "port")
    if port is None:
        return None, "the node has no HTTP port yet"
    try:
        token = RpcToken(home.state_dir, TOKEN_FILE).get()
    except OSError as exc:
        return None, f"cannot read the metrics token: {exc}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{PROCESSES_PATH}",
                                     headers={"Host": f"localhost:{port}",
                                              "Authorization": f"Bearer {token}"})
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with direct.open(request, timeout=timeout) as answer:
            view = json.loads(answer.read())
    except (OSError, ValueError) as exc:
        return None, f"the http-server did not give its figures: {exc}"
    if not isinstance(view, dict) or not isinstance(view.get("processes"), list):
        return None, "the http-server's figures are not what this porch reads"
    return view, ""


def by_id(view: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if view is None:
        return {}
    return {p["id"]: p for p in view["processes"] if isinstance(p, dict) and "id" in p}


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}ms" if value < 10 else f"{value:.0f}ms"


def _rate(p: dict[str, Any]) -> str:
    return f"{p.get('rate') or 0:.1f}" if p.get("requests") else "-"


def _errors(p: dict[str, Any]) -> str:
    share = p.get("error_rate")
    return "-" if share is None else f"{100 * share:.1f}%"


def summary(p: dict[str, Any]) -> str:
    """What `porch status` adds to a process's line."""
    parts = [f"{_rate(p)} req/s", f"{_errors(p)} err", f"p99 {_ms(p.get('p99_ms'))}"]
    if p.get("restarts") is not None:
        parts.append(f"{p['restarts']} restarts")
    return ", ".join(parts)


def spark(values: list[float], width: int = SPARK_POINTS) -> str:
    values = [float(v) for v in values[-width:]]
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(BLOCKS[min(len(BLOCKS) - 1, int(v / top * (len(BLOCKS) - 1) + 0.5))] for v in values)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1048576:.0f}M"


def table(view: dict[str, Any], colour: bool = False) -> list[str]:
    """`porch top`'s lines for one view."""
    rows = [p for p in view["processes"] if isinstance(p, dict)]
    width = max([len(str(p.get("id", ""))) for p in rows] + [7])
    head = (f"{'PROCESS':<{width}}  {'STATE':<11} {'UP':>7} {'RESTARTS':>8} {'REQ/S':>7} {'ERR':>6} "
            f"{'P50':>7} {'P99':>7} {'WS':>4} {'RSS':>5}  LAST MINUTES")
    lines = [head]
    for p in rows:
        state = str(p.get("state", "?"))
        shown = f"{state:<11}"
        code = STATE_COLOURS.get(state)
        if colour and code:
            shown = f"\x1b[{code}m{shown}\x1b[0m"
        restarts = "-" if p.get("restarts") is None else str(p["restarts"])
        lines.append(f"{p.get('id', '?'):<{width}}  {shown} {_uptime(p.get('uptime_s')):>7} "
                     f"{restarts:>8} {_rate(p):>7} {_errors(p):>6} {_ms(p.get('p50_ms')):>7} "
                     f"{_ms(p.get('p99_ms')):>7} {p.get('websockets', 0):>4} {_mib(p.get('rss_bytes')):>5}  "
                     f"{spark(list(p.get('spark') or []))}")
    missing = view.get("missing") or {}
    if missing:
        lines.append("no answer from " + ", ".join(sorted(missing)))
    if not view.get("metrics", True):
        lines.append("[metrics] enabled = false: no rates or latencies")
    return lines


def top(home: NodeHome, interval: float, once: bool, out: TextIO = sys.stdout) -> int:
    """Redraw the table every `interval` seconds until Ctrl-C (or once)."""
    colour = out.isatty() and not once
    try:
        while True:
            view, problem = fetch_view(home)
            stamp = time.strftime("%H:%M:%S")
            if view is None:
                text = [f"porch top  {stamp}  {problem}"]
            else:
                text = [f"porch top  node {view.get('node', '?')}  {stamp}  (every {interval:g} s, "
                        "Ctrl-C quits)", "", *table(view, colour)]
            if once:
                out.write("\n".join(text) + "\n")
                return 0 if view is not None else 1
            out.write(CLEAR + "\n".join(text) + "\n")
            out.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        return 0
