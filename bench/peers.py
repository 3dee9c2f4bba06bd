"""What the HTTP and WebSocket benches compare porch with, and how they count CPU.

Not a bench itself (run.py runs `bench_*.py` only): the two peers of issue 12's table,
started by the benches on free loopback ports,

- **direct**: one Tornado process (a `RequestHandler` answering "hello world", a
  `WebSocketHandler` echoing), the usual way to serve Python over HTTP;
- **nginx -> Tornado**: Debian's nginx (one worker, keep-alive to the upstream,
  WebSocket upgrades passed through) in front of that same Tornado process: the usual
  production setup, and the one porch replaces (porch, like nginx, has a process that
  holds the port and one that answers);

and the CPU counter: every thread of every process of a side (and of their children),
from `/proc/<pid>/task/<tid>/schedstat` (nanoseconds), read before and after a load.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

TORNADO = """
import asyncio, sys
import tornado.web, tornado.websocket
class Hello(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write(b"hello world")
class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)
async def main():
    tornado.web.Application([(r"/ws", Echo), (r"/.*", Hello)]).listen(int(sys.argv[1]), "127.0.0.1")
    print("READY", flush=True)
    await asyncio.Event().wait()
if len(sys.argv) > 2 and sys.argv[2] == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main())
"""

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream tornado {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://tornado;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


def cpu_ns(pids: Iterable[int], descendants: bool = True) -> int:
    """CPU time (ns) so far of every thread of these processes and (unless told not
    to) their descendants alive now: the sides keep their processes for the whole bench."""
    total = 0
    for pid in with_descendants(pids) if descendants else set(pids):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def with_descendants(pids: Iterable[int]) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    found = set(pids)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


class Tornado:
    """The direct peer: one Tornado process, HTTP hello at any path, echo at /ws."""

    def __init__(self, port: int, loop: str = "asyncio") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="porch-peer-"))
        script = self.dir / "tornado_peer.py"
        script.write_text(textwrap.dedent(TORNADO))
        self.port = port
        self.proc = subprocess.Popen([sys.executable, str(script), str(port), loop], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"READY":
            raise RuntimeError("the Tornado peer did not start")

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx:
    """nginx (one worker) on `port`, proxying everything (WebSockets too) to
    127.0.0.1:`upstream` with keep-alive upstream connections."""

    def __init__(self, port: int, upstream: int) -> None:
        assert NGINX is not None
        self.dir = Path(tempfile.mkdtemp(prefix="porch-nginx-"))
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.dir, port=port, upstream=upstream))
        self.port = port
        self.proc = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        give_up = time.monotonic() + 10
        import socket
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > give_up:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"nginx did not start: {err}") from None
                time.sleep(0.05)

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def side_settings(bench: str, sides_arg: str, env_items: list[str], config_items: list[str]
                  ) -> tuple[list[str], dict[str, dict[str, str]], dict[str, str]]:
    """The sides a bench runs (nginx's left out, with a note, where nginx is absent),
    and the porch variants' environments (`NAME:KEY=VALUE`) and porch.toml lines
    (`NAME:LINE`) by variant name."""
    sides = [s for s in sides_arg.split(",") if s]
    if "nginx" in sides and NGINX is None:
        print(f"{bench}: nginx -> Tornado row skipped: nginx is not installed (apt-get install nginx)")
        sides.remove("nginx")
    envs: dict[str, dict[str, str]] = {}
    configs: dict[str, str] = {}
    for item in env_items:
        name, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        envs.setdefault(name, {})[key] = value
    for item in config_items:
        name, _, line = item.partition(":")
        configs[name] = configs.get(name, "") + line + "\n"
    return sides, envs, configs
