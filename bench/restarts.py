"""What clients see while the http-server restarts or its keeper is killed (issue 10
items 4 and 5; the figures in docs/restarts.md). Not part of `bench/run.py`.

    python bench/restarts.py restarts [--restarts 5] [--tool python|wrk] [--connections 16]
    python bench/restarts.py keeper-kill [--kills 5] [--activated]

`restarts`: a node (kernel, http-server, two HTTP apps) under keep-alive load (Python
clients with no retries, or wrk), `porch restart http-server` (SIGHUP to the keeper)
every 2 s; prints requests, errors by kind, answers by status and reason, max latency.

`keeper-kill`: a supervised node (`porch up`), kill -9 of the http-server's keeper every
3 s while new visitors connect (a fresh TCP connection per request); prints refused
connections per kill. `--activated`: `porch up` in the foreground given the port the
way systemd socket activation gives it (LISTEN_FDS), as deploy/porch.socket does.

Run it against another checkout's services with PYTHONPATH=<checkout>/services.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import requests  # noqa: E402

from support.load import KeepAliveLoad  # noqa: E402
from support.node import PY, Node, children, free_port, porch_cli, service_env, wait_for  # noqa: E402

APP = (REPO / "tests" / "support" / "http_app.py").read_text()
APPS = ("web:web:sys", "other:web:sys")
CONFIG = 'node = "restarts.os"\n' + "".join(
    f'[[process]]\nid = "{pid}"\ncapabilities = ["http-server:distro:sys"]\n' for pid in APPS)
AS_SYSTEMD = ("import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); "
              "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
              "os.execv(sys.argv[2], sys.argv[2:])")


def answers(port: int, path: str = "/web:web:sys/dyn") -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def restarts(args: argparse.Namespace) -> None:
    node = Node(CONFIG)
    port = free_port()
    try:
        node.start("kernel")
        node.start("http-server", "--port", str(port))
        for pid in APPS:
            node.spawn(pid, APP, BINDINGS=json.dumps([{"path": "/dyn"}]))
        wait_for(lambda: all(answers(port, f"/{p}/dyn") for p in APPS), 30, 0.1, "the apps")
        keeper = node.procs["http-server"]
        paths = [f"/{p}/dyn" for p in APPS]
        seconds = 2.0 * args.restarts + 3
        if args.tool == "wrk":
            wrk = subprocess.Popen(["wrk", "-t2", f"-c{args.connections}", f"-d{seconds:.0f}s",
                                    "--latency", f"http://127.0.0.1:{port}{paths[0]}"],
                                   stdout=subprocess.PIPE, text=True)
            _restart_every(keeper, args.restarts)
            out, _ = wrk.communicate(timeout=seconds + 30)
            requests_ = re.search(r"(\d+) requests in", out)
            errors = re.search(r"Socket errors: (.*)", out)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
            print(f"wrk, {args.connections} connections, {args.restarts} restarts: "
                  f"{requests_.group(1) if requests_ else '?'} requests; socket errors: "
                  f"{errors.group(1) if errors else 'none'}; non-2xx: "
                  f"{non2xx.group(1) if non2xx else 0}; max latency {latency.group(1) if latency else '?'}")
        else:
            with KeepAliveLoad(port, paths, threads=args.connections) as load:
                time.sleep(1.0)
                _restart_every(keeper, args.restarts)
                time.sleep(1.0)
            statuses, errors_ = load.snapshot()
            print(f"python keep-alive clients: {args.connections}, restarts: {args.restarts}")
            print(f"  requests {load.requests}, answered with Connection: close {load.closed_by_server}, "
                  f"max latency {load.max_latency_s * 1000:.0f} ms")
            print(f"  errors by kind: {errors_ or 'none'}")
            print(f"  answers: {statuses}")
        print(f"  workers left: {len(children(keeper.pid))}")
    finally:
        node.close()


def _restart_every(keeper: subprocess.Popen[bytes], count: int) -> None:
    for _ in range(count):
        keeper.send_signal(signal.SIGHUP)
        time.sleep(2.0)


class Visitors:
    """A fresh connection per request; refusals counted."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/web:web:sys/dyn"
        self.refused = 0
        self.ok = 0
        self.other: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status = requests.get(self.url, timeout=10, headers={"Connection": "close"}).status_code
                if status == 200:
                    self.ok += 1
                else:
                    self.other[str(status)] = self.other.get(str(status), 0) + 1
            except requests.ConnectionError as exc:
                if "refused" in str(exc).lower():
                    self.refused += 1
                else:
                    self.other[type(exc).__name__] = self.other.get(type(exc).__name__, 0) + 1
            except requests.RequestException as exc:
                self.other[type(exc).__name__] = self.other.get(type(exc).__name__, 0) + 1
            time.sleep(0.002)


def keeper_kill(args: argparse.Namespace) -> None:
    node = Node()
    (node.dir / "app.py").write_text(APP)
    bindings = json.dumps(json.dumps([{"path": "/dyn"}]))
    node.home.config_path.write_text(
        'node = "kills.os"\n'
        f'[[process]]\nid = "web:web:sys"\ncommand = "{PY} {node.dir / "app.py"}"\n'
        f'capabilities = ["http-server:distro:sys"]\nenvironment = {{ BINDINGS = {bindings} }}\n')
    up: subprocess.Popen[bytes] | None = None
    if args.activated:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        port = sock.getsockname()[1]
        with (node.dir / "up.log").open("ab") as out:
            up = subprocess.Popen([PY, "-c", AS_SYSTEMD, str(sock.fileno()), PY, "-m", "porch.cli", "up",
                                   "--home", str(node.home.root)], pass_fds=(sock.fileno(),),
                                  stdout=out, stderr=subprocess.STDOUT, env=service_env(node.home.root))
        sock.close()
    else:
        port = free_port()
        result = porch_cli("up", "--detach", "--port", str(port), home=node.home.root)
        assert result.returncode == 0, result.stdout + result.stderr
    try:
        from porch.cli.supervise import Supervisor

        wait_for(lambda: answers(port), 60, 0.2, "the node")
        rpc = Supervisor(node.home).rpc
        visitors = Visitors(port)
        visitors.thread.start()
        per_kill = []
        for _ in range(args.kills):
            time.sleep(1.5)
            before = visitors.refused
            keeper = int(rpc.getProcessInfo("http-server")["pid"])
            os.kill(keeper, signal.SIGKILL)
            wait_for(lambda k=keeper: int(rpc.getProcessInfo("http-server")["pid"]) not in (0, k),  # type: ignore[misc]
                     30, what="supervisord's restart")
            wait_for(lambda: answers(port), 30, 0.05, "the new keeper's worker")
            time.sleep(1.5)
            per_kill.append(visitors.refused - before)
        visitors.stop.set()
        visitors.thread.join(20)
        how = "socket-activated porch up (LISTEN_FDS)" if args.activated else "porch up --detach"
        print(f"keeper kill -9, {how}: refused connections per kill {per_kill} "
              f"(answered 200: {visitors.ok}; other: {visitors.other or 'none'})")
    finally:
        porch_cli("down", home=node.home.root)
        if up is not None:
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
        shutil.rmtree(node.dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("restarts")
    r.add_argument("--restarts", type=int, default=5)
    r.add_argument("--tool", choices=("python", "wrk"), default="python")
    r.add_argument("--connections", type=int, default=16)
    k = sub.add_parser("keeper-kill")
    k.add_argument("--kills", type=int, default=5)
    k.add_argument("--activated", action="store_true")
    args = parser.parse_args()
    print(f"porch from {os.path.dirname(__import__('porch').__file__)}")
    restarts(args) if args.mode == "restarts" else keeper_kill(args)


if __name__ == "__main__":
    main()
