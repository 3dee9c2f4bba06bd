"""Soak: minutes of mixed load on a supervised node while a random service is killed
every few seconds (issue 10). Not part of `bench/run.py` nor of the tests: it loads the
machine for as long as it runs (run it niced).

    nice python bench/soak.py [--minutes 10] [--every 20] [--seed 1]
                              [--http 4] [--ws 4] [--http-client 2]

The node (`porch up --detach`, a fresh home under /tmp) runs an HTTP app (web:web:sys)
and a WebSocket echo app (wsa:web:sys); this process adds
- HTTP clients keeping their connections alive (no retries),
- WebSocket clients, each sending a message and waiting for its echo, one at a time,
- http-client callers (registered processes) fetching from a local test server,
and every --every seconds a seeded random choice among: kill -9 of the kernel, the
http-server's keeper, its worker, the http-client, either app; or `porch restart
http-server`. supervisord (or the keeper) brings each back.

It prints requests and their outcomes by kind, and the two figures that must be 0:
- hung: an HTTP request or http-client call still unanswered after 30 s;
- lost on open sockets: a WebSocket message not echoed within 10 s while its socket
  stayed open (a socket that is closed, with any code, tells its client; the messages
  it had not echoed are counted apart);
and the resident memory of each service at the start and at the end (after its
restarts: the last incarnation's).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

import porch  # noqa: E402
from porch.http.client import HttpClientError, send_request_await_response  # noqa: E402
from porch.node.procstat import proc_stat  # noqa: E402
from support.http_test_server import TestServer  # noqa: E402
from support.load import KeepAliveLoad  # noqa: E402
from support.node import PY, Node, children, free_port, porch_cli, wait_for  # noqa: E402

HUNG_S = 30.0
ECHO_S = 10.0
HTTP_APP = (REPO / "tests" / "support" / "http_app.py").read_text()
WS_APP = """
import porch
from porch.http.server import HttpServer, WsBindingConfig, send_ws_push
from porch.wire import http_pb2
proc = porch.Process()
HttpServer(proc).bind_ws_path("/ws", WsBindingConfig(authenticated=False))
while True:
    msg = proc.await_message()
    req = http_pb2.HttpServerRequest.FromString(msg.body)
    push = req.web_socket_push
    # Echo what the client sent, not the pings and pongs the server tells it about.
    if req.WhichOneof("request") == "web_socket_push" and push.message_type == http_pb2.WsMessageType.Text:
        blob = proc.get_blob()
        send_ws_push(proc, push.channel_id, "Text", blob.bytes if blob else b"")
"""
PROGRAMS = {"kernel": "kernel", "http-server": "http-server", "http-client": "http-client",
            "web:web:sys": "app-web-web-sys", "wsa:web:sys": "app-wsa-web-sys"}
EVENTS = ("kill -9 kernel", "kill -9 http-server keeper", "kill -9 http-server worker",
          "porch restart http-server", "kill -9 http-client", "kill -9 web:web:sys",
          "kill -9 wsa:web:sys")


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.node = Node()  # a home; `porch up` runs the node
        self.port = free_port()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ws = Counter[str]()
        self.hc = Counter[str]()
        self.hc_hung = 0
        self.events = Counter[str]()

    # ------------------------------------------------------------------ the node

    def up(self) -> None:
        scripts = self.node.dir / "apps"
        scripts.mkdir()
        (scripts / "http_app.py").write_text(HTTP_APP)
        (scripts / "ws_app.py").write_text(WS_APP)
        bindings = json.dumps(json.dumps([{"path": "/dyn"}]))
        callers = "".join(f'[[process]]\nid = "caller-{i}:soak:sys"\n'
                          'capabilities = ["http-client:distro:sys"]\n' for i in range(self.args.http_client))
        self.node.home.config_path.write_text(
            'node = "soak.os"\n'
            f'[[process]]\nid = "web:web:sys"\ncommand = "{PY} {scripts / "http_app.py"}"\n'
            f'capabilities = ["http-server:distro:sys"]\nenvironment = {{ BINDINGS = {bindings} }}\n'
            f'[[process]]\nid = "wsa:web:sys"\ncommand = "{PY} {scripts / "ws_app.py"}"\n'
            'capabilities = ["http-server:distro:sys"]\n' + callers)
        result = porch_cli("up", "--detach", "--port", str(self.port), home=self.node.home.root)
        if result.returncode != 0:
            raise SystemExit(f"porch up failed:\n{result.stdout}{result.stderr}")
        from porch.cli.supervise import Supervisor

        self.rpc = Supervisor(self.node.home).rpc
        wait_for(self.serving, 60, 0.2, "the node")

    def serving(self) -> bool:
        import requests

        try:
            ok = requests.get(f"http://127.0.0.1:{self.port}/web:web:sys/dyn", timeout=3).status_code == 200
            with connect(f"ws://127.0.0.1:{self.port}/wsa:web:sys/ws", open_timeout=3) as ws:
                ws.send("up?")
                return ok and ws.recv(timeout=3) == "up?"
        except Exception:
            return False

    def pid(self, program: str) -> int:
        return int(self.rpc.getProcessInfo(program)["pid"])

    def rss(self) -> dict[str, int]:
        """KiB per service (the http-server: keeper + workers)."""
        out = {}
        for name, program in PROGRAMS.items():
            pid = self.pid(program)
            pids = [pid, *children(pid)] if name == "http-server" else [pid]
            out[name] = sum(_rss_kib(p) for p in pids if p)
        return out

    def down(self) -> None:
        porch_cli("down", home=self.node.home.root, timeout=90)
        shutil.rmtree(self.node.dir, ignore_errors=True)

    # ------------------------------------------------------------------ load

    def ws_client(self, n: int) -> None:
        url = f"ws://127.0.0.1:{self.port}/wsa:web:sys/ws"
        seq = 0
        while not self.stop.is_set():
            try:
                ws = connect(url, open_timeout=ECHO_S)
            except InvalidStatus as exc:
                self._ws(f"open refused {exc.response.status_code}")
                time.sleep(0.2)
                continue
            except Exception as exc:
                self._ws(f"open failed {type(exc).__name__}")
                time.sleep(0.2)
                continue
            self._ws("opened")
            with ws:
                while not self.stop.is_set():
                    seq += 1
                    text = f"{n}-{seq}"
                    try:
                        ws.send(text)
                    except ConnectionClosed:
                        self._ws(f"closed {ws.close_code}")
                        break
                    outcome = self._await_echo(ws, text)
                    self._ws(outcome)
                    if outcome.startswith("closed"):
                        self._ws("unanswered at close")
                        break
                    time.sleep(0.02)

    def _await_echo(self, ws: Any, text: str) -> str:
        give_up = time.monotonic() + ECHO_S
        while True:
            try:
                got = ws.recv(timeout=max(0.0, give_up - time.monotonic()))
            except TimeoutError:
                return "LOST on an open socket"
            except ConnectionClosed:
                return f"closed {ws.close_code}"
            if got == text:
                return "echoed"
            self._ws("late echo")  # the echo of an earlier message that was counted lost
            print(f"    {time.strftime('%H:%M:%S')} late echo {got!r} while waiting for {text!r}", flush=True)

    def _ws(self, what: str) -> None:
        with self.lock:
            self.ws[what] += 1

    def http_client(self, n: int, server: TestServer) -> None:
        proc = porch.Process(f"caller-{n}:soak:sys", home=self.node.home.root, connect_timeout=60)
        url = server.url("/hello")
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                send_request_await_response(proc, "GET", url, timeout=HUNG_S)
                what = "200"
            except HttpClientError as exc:
                what = f"HttpClientError {exc.kind}"
            except porch.PorchError as exc:
                what = type(exc).__name__
            took = time.monotonic() - started
            with self.lock:
                self.hc[what] += 1
                if took >= HUNG_S:
                    self.hc_hung += 1
            time.sleep(0.01)
        proc.close()

    # ------------------------------------------------------------------ trouble

    def strike(self, rng: random.Random) -> str:
        event = rng.choice(EVENTS)
        if event == "porch restart http-server":
            porch_cli("restart", "http-server", home=self.node.home.root)
        elif event == "kill -9 http-server worker":
            workers = children(self.pid("http-server"))
            if workers:
                os.kill(workers[-1], signal.SIGKILL)
        else:
            name = event.removeprefix("kill -9 ").removesuffix(" keeper")
            pid = self.pid(PROGRAMS[name])
            if pid:
                os.kill(pid, signal.SIGKILL)
        self.events[event] += 1
        return event

    # ------------------------------------------------------------------ run

    def run(self) -> None:
        args = self.args
        print(f"soak: porch from {os.path.dirname(porch.__file__)}; {args.minutes} min, an event every "
              f"{args.every} s (seed {args.seed}); {args.http} HTTP, {args.ws} WebSocket, "
              f"{args.http_client} http-client clients", flush=True)
        self.up()
        rss_start = self.rss()
        server = TestServer().start()
        rng = random.Random(args.seed)
        threads = [threading.Thread(target=self.ws_client, args=(i,), daemon=True) for i in range(args.ws)]
        threads += [threading.Thread(target=self.http_client, args=(i, server), daemon=True)
                    for i in range(args.http_client)]
        load = KeepAliveLoad(self.port, ["/web:web:sys/dyn"], threads=args.http, timeout=HUNG_S, pause_s=0.005)
        try:
            with load:
                for t in threads:
                    t.start()
                end = time.monotonic() + args.minutes * 60
                next_event = time.monotonic() + args.every
                while time.monotonic() < end:
                    time.sleep(min(1.0, max(0.0, next_event - time.monotonic())))
                    if time.monotonic() >= next_event:
                        event = self.strike(rng)
                        print(f"  {time.strftime('%H:%M:%S')} {event}", flush=True)
                        next_event += args.every
                # The last event's service must be back before the end figures.
                wait_for(self.serving, 60, 0.5, "the node after the last event")
                time.sleep(2)
                rss_end = self.rss()
                self.stop.set()
            for t in threads:
                t.join(HUNG_S + 5)
        finally:
            self.stop.set()
            server.stop()
        statuses, errors = load.snapshot()
        hung = errors.pop("TimeoutError", 0)
        print("\nevents:", dict(self.events))
        print(f"HTTP (keep-alive, no retries): {load.requests} requests, max latency "
              f"{load.max_latency_s * 1000:.0f} ms")
        print(f"  answers: {dict(sorted(statuses.items(), key=lambda kv: -kv[1]))}")
        print(f"  errors by kind: {errors or 'none'}")
        print(f"  hung (no answer in {HUNG_S:.0f} s): {hung}")
        calls = sum(self.hc.values())
        print(f"http-client calls: {calls}; outcomes: {dict(self.hc.most_common())}; hung: {self.hc_hung}")
        lost = self.ws.pop("LOST on an open socket", 0)
        print(f"WebSocket: {dict(self.ws.most_common())}")
        print(f"  lost on open sockets (no echo in {ECHO_S:.0f} s, socket still open): {lost}")
        print("RSS KiB (start -> end):")
        for name in PROGRAMS:
            print(f"  {name:<12} {rss_start[name]:>8} -> {rss_end[name]:>8}")
        verdict = hung == 0 and self.hc_hung == 0 and lost == 0
        print(f"\n{'OK' if verdict else 'FAILED'}: hung {hung + self.hc_hung}, lost on open sockets {lost}")
        if not verdict:
            raise SystemExit(1)


def _rss_kib(pid: int) -> int:
    stat = proc_stat(pid)  # (None: gone)
    return stat.rss_bytes // 1024 if stat is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=20.0, help="seconds between events")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--http", type=int, default=4, help="keep-alive HTTP clients")
    parser.add_argument("--ws", type=int, default=4, help="WebSocket echo clients")
    parser.add_argument("--http-client", type=int, default=2, help="http-client callers")
    soak = Soak(parser.parse_args())
    try:
        soak.run()
    finally:
        soak.down()


if __name__ == "__main__":
    main()
