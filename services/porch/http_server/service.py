"""`porch http-server` / `python -m porch.http_server`: the node's HTTP listener.

Two processes, so that the port never refuses a connection while the server restarts:

- the **keeper** (what supervisord runs) chooses the port, binds it once and holds the
  listening socket for the node's life. It runs the worker as its child, handing it
  the socket, restarts it at once if it dies, and replaces it on SIGHUP
  (`porch restart http-server`). While no worker is accepting, new connections wait in
  the socket's backlog instead of being refused.
- the **worker** (`--worker-fd N`) serves HTTP on that socket with Tornado, registered
  as http-server:distro:sys. Everything it needs to resume (bindings, static content,
  secrets) is in the node home, so a new worker serves exactly what the old one did.

A restart overlaps the two workers (docs/restarts.md): the keeper starts the new one
while the old one serves; the new one takes the kernel registration over
(Register.takeover) and the bindings (`handover.OwnerLock`), then accepts. The kernel
tells the old one it was superseded: it stops accepting, answers what it holds (each
request up to its own deadline), closes its kept-alive connections politely
(`Connection: close` on their last answer; idle ones are closed) and its WebSockets
(1012), and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from porch.address import HTTP_SERVER
from porch.files import remove_leftovers
from porch.http_server import loops
from porch.http_server.accept import raise_open_files_limit
from porch.http_server.auth import Auth
from porch.http_server.bindings import RPC_PROCESS, BindingTable
from porch.http_server.dashboard import DASHBOARD_PATH, PROCESSES_PATH, RESTART_PATH, Dashboard
from porch.http_server.db import StateDb, db_path, describe
from porch.http_server.figures import AppStats, HttpFigures
from porch.http_server.follow import BindingFollower
from porch.http_server.gateway import Gateway
from porch.http_server.gather import Gatherer
from porch.http_server.handover import OwnerLock
from porch.http_server.hosts import FrontDoor, HostAllowList
from porch.http_server.links import Links, link_path
from porch.http_server.listener import Listener, Server
from porch.http_server.port import PortBusy, open_listener, remember
from porch.http_server.processes import START_NAMES
from porch.http_server.rpc_auth import RpcToken
from porch.http_server.scrape import METRICS_PATH, TOKEN_FILE, Scrape
from porch.http_server.sessions import Sessions
from porch.http_server.settings import HttpServerSettings, load_settings
from porch.http_server.state import BindingStore, NodeSecrets, generate_password
from porch.http_server.upgrade import Upgrades
from porch.http_server.websocket import WsHub
from porch.http_server.worker_figures import WorkerFigures, apps_of, sockets_of
from porch.http_server.writable import StateHealth
from porch.http_server.wsdirect import claim_path
from porch.http_server.wshandover import HandoverClient, HandoverServer
from porch.http_server.wshandover import socket_path as handover_path
from porch.node.config import ConfigError, NodeConfig
from porch.node.home import NodeHome
from porch.node.lifetime import die_with_parent
from porch.node.listen_socket import NotAListeningSocket, fetch, from_systemd, holder_path
from porch.node.startup import start_service
from porch.process.aio import AsyncProcess
from porch.process.message import KernelRefused, Message, PorchError
from porch.throttle import Every

log = logging.getLogger("porch.http_server")

# At a stop (node down), how long requests in flight may still take: supervisord kills
# the program's process group 5 s after its SIGTERM (stopwaitsecs in program.conf.tmpl).
STOP_DRAIN_S = 4.0
# A draining worker's kept-alive connections that are between requests get this long to
# send one more (answered with Connection: close) before they are closed: a client that
# reuses a connection the moment it got an answer is never cut off mid-request.
IDLE_CLOSE_S = 0.5
# What a start of the worker counts as (porch.node.starts): the primary's restarts are
# the http-server's, whether supervisord or the keeper started it again; members (with
# `workers` > 1) count apart, or a node of 4 workers would show 3 restarts at `porch up`.
WORKER_PROGRAM = START_NAMES[HTTP_SERVER]
MEMBER_PROGRAM = "http-server.member"
# A replaced worker still running this long (the kernel's longest deadline is an hour)
# is killed by the keeper.
RETIRE_LIMIT_S = 3700.0


def settings_with_overrides(config: NodeConfig, args: argparse.Namespace, where: str) -> HttpServerSettings:
    """[http_server] with --port / --host applied over it."""
    section = dict(config.http_server)
    if args.port is not None:
        section["port"] = args.port
    if args.host:
        section["host"] = args.host
    return load_settings(section, where)


def ensure_password(home: NodeHome) -> None:
    """Normally `porch up` sets it; a server started another way generates one."""
    secrets_ = NodeSecrets(home.state_dir)
    if secrets_.has_password():
        return
    password = os.environ.get("PORCH_PASSWORD") or generate_password()
    try:
        secrets_.set_password(password)
    except OSError as exc:  # the keeper must still hold the port; the worker says the rest
        log.error("cannot save a node password in %s: %s", secrets_.password_path, exc)
        return
    if not os.environ.get("PORCH_PASSWORD"):
        log.warning("no node password was set: generated one, shown only this once: %s", password)


# ---------------------------------------------------------------------------- keeper


class Keeper:
    """Holds the port and runs the workers: one primary (the holder of
    http-server:distro:sys) and, with `workers` > 1, members that join it once it
    serves (docs/workers.md)."""

    def __init__(self, home: NodeHome, sock: socket.socket, workers: int = 1) -> None:
        self.home = home
        self.sock = sock
        self.workers = workers
        self.child: subprocess.Popen[bytes] | None = None  # the primary
        self.members: list[subprocess.Popen[bytes]] = []  # the primary's members
        # Replaced workers finishing what they hold: (process, when it was replaced).
        self.retiring: list[tuple[subprocess.Popen[bytes], float]] = []
        self.stopping = False
        self.restart_requested = False
        self._ready = -1  # the read end of the primary's "serving" pipe
        self._members_due = False
        self._member_respawn_at = 0.0

    def spawn(self) -> None:
        fd = self.sock.fileno()
        cmd = [sys.executable, "-m", "porch.http_server", "--home", str(self.home.root),
               "--worker-fd", str(fd)]
        pass_fds: tuple[int, ...] = (fd,)
        if self.workers > 1:
            if self._ready >= 0:
                os.close(self._ready)
            self._ready, ready_w = os.pipe()
            os.set_blocking(self._ready, False)
            cmd += ["--ready-fd", str(ready_w)]
            pass_fds += (ready_w,)
        self.child = subprocess.Popen(cmd, pass_fds=pass_fds)
        if self.workers > 1:
            os.close(ready_w)
            self._members_due = True
        log.info("worker started (os pid %d)%s", self.child.pid,
                 f"; {self.workers - 1} more join it once it serves" if self.workers > 1 else "")

    def spawn_member(self) -> None:
        assert self.child is not None
        fd = self.sock.fileno()
        cmd = [sys.executable, "-m", "porch.http_server", "--home", str(self.home.root),
               "--worker-fd", str(fd), "--member-of", str(self.child.pid)]
        member = subprocess.Popen(cmd, pass_fds=(fd,))
        self.members.append(member)
        log.info("worker started (os pid %d), a member of os pid %d", member.pid, self.child.pid)

    def _tend_members(self) -> None:
        """Start the members once the primary serves; start again those that died."""
        if self.workers <= 1 or self.child is None or self.child.poll() is not None:
            return
        if self._members_due:
            try:
                serving = os.read(self._ready, 16)
            except BlockingIOError:
                return
            except OSError:
                serving = b""
            if not serving:  # the pipe closed without a word: the primary failed
                return
            self._members_due = False
            for _ in range(self.workers - 1):
                self.spawn_member()
            return
        for member in list(self.members):
            code = member.poll()
            if code is None:
                continue
            self.members.remove(member)
            log.error("worker os pid %d (a member) exited with %s", member.pid, code)
        now = time.monotonic()
        if len(self.members) < self.workers - 1 and now >= self._member_respawn_at:
            self._member_respawn_at = now + 1.0  # one start a second at most
            self.spawn_member()

    def _retire_generation(self) -> None:
        """The primary is replaced (or gone): it and its members finish what they hold
        (the kernel tells the members they are superseded with it)."""
        now = time.monotonic()
        for worker in ([self.child] if self.child is not None else []) + self.members:
            if worker.poll() is None:
                self.retiring.append((worker, now))
        self.members = []

    def stop_workers(self, timeout: float = 10.0) -> None:
        """SIGTERM every worker (the current ones and those finishing), then wait."""
        workers = [w for w, _ in self.retiring] + ([self.child] if self.child is not None else []) \
            + self.members
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        give_up = time.monotonic() + timeout
        for worker in workers:
            try:
                worker.wait(max(0.0, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in %.0f s; killing it", worker.pid, timeout)
                worker.kill()
                worker.wait()

    def reap_retiring(self) -> None:
        now = time.monotonic()
        for entry in list(self.retiring):
            worker, since = entry
            code = worker.poll()
            if code is not None:
                self.retiring.remove(entry)
                log.info("the previous worker (os pid %d) finished after %.1f s (exit %s)",
                         worker.pid, now - since, code)
            elif now - since > RETIRE_LIMIT_S and self.child is not None and self.child.poll() is None:
                log.warning("the previous worker (os pid %d) still runs %.0f s after it was "
                            "replaced; killing it", worker.pid, now - since)
                worker.kill()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        backoff = 0.0
        self.spawn()
        started = time.monotonic()
        while True:
            assert self.child is not None
            try:
                code = self.child.wait(0.2)
            except subprocess.TimeoutExpired:
                code = None
            self.reap_retiring()
            if self.stopping:
                self.stop_workers()
                log.info("http-server stopped")
                return 0
            if self.restart_requested:
                self.restart_requested = False
                # The new worker takes over from the old one, which then finishes what
                # it holds: the port is never without a worker that accepts for longer
                # than the handover itself.
                log.info("restarting the worker (port kept open): a new one takes over from "
                         "os pid %d", self.child.pid)
                self._retire_generation()
                self.spawn()
                started = time.monotonic()
                backoff = 0.0
                continue
            if code is None:
                self._tend_members()
                continue
            self._retire_generation()  # its members finish (superseded with it), then exit
            ran = time.monotonic() - started
            backoff = 0.0 if ran > 5 else min(5.0, max(0.25, backoff * 2))
            log.error("worker exited with %s after %.1f s; restarting%s", code, ran,
                      f" in {backoff:.2f} s" if backoff else "")
            if backoff:
                time.sleep(backoff)
            if self.stopping:
                self.stop_workers()
                return 0
            self.spawn()
            started = time.monotonic()

    def _on_stop(self, *_: object) -> None:
        self.stopping = True

    def _on_hup(self, *_: object) -> None:
        self.restart_requested = True


# ---------------------------------------------------------------------------- worker


async def connect_rpc(home: NodeHome, member_of: int = 0) -> AsyncProcess | None:
    """The identity RPC messages go out under (rpc:distro:sys), a second registration
    of this worker: the capabilities porch.toml grants that id are RPC's, the
    http-server's are not. None if the kernel refuses it (the endpoint then answers 503).
    Like the main registration it takes the id over from a worker being replaced."""
    try:
        rpc = await AsyncProcess.connect(RPC_PROCESS, home=home.root, connect_timeout=60,
                                         takeover=not member_of, member_of=member_of)
    except KernelRefused as exc:
        log.error("cannot register %s, so the RPC endpoint answers 503: %s", RPC_PROCESS, exc)
        return None
    ignored = Every(60.0)

    def incoming(msg: Message) -> None:
        # RPC only sends; what processes send it is dropped (never acted on).
        count = ignored.due()
        if count:
            log.info("%s takes no requests: dropped %d, the last from %s", RPC_PROCESS, count, msg.source)

    rpc.on_request(incoming)
    return rpc


class Ending:
    """Why and by when the worker ends: stopped (SIGTERM: the node stops, or the keeper
    died) or superseded (a new worker took over). Set from signal handlers and the
    kernel's Superseded; `drain_until` may only move earlier."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()
        self.superseded = False
        self.stopped = False
        self.drain_until = float("inf")

    def supersede(self) -> None:
        self.superseded = True
        self.event.set()

    def stop(self) -> None:
        self.stopped = True
        self.drain_until = min(self.drain_until, self.loop.time() + STOP_DRAIN_S)
        self.event.set()


def longest_request_s(table: BindingTable, settings: HttpServerSettings) -> float:
    """The longest an app may take to answer a request (its binding's timeout, else
    request_timeout_s), plus the time a client may take to send the body."""
    longest = max([settings.request_timeout_s,
                   *(b.timeout_ms / 1000 for _, b in table.http.items() if b.timeout_ms)])
    return float(longest + settings.body_timeout_s)


async def drain(server: Server, hub: WsHub, ending: Ending, longest_s: float) -> None:
    """Stop accepting and finish what this worker holds (the module docstring)."""
    loop = asyncio.get_running_loop()
    server.stop()  # stop accepting; the keeper (and a new worker) still hold the socket
    hub.draining = True
    if ending.superseded:  # a new worker took over: it keeps what owners hold
        await hub.hand_held_on()
    hub.close_all()  # 1012: clients reconnect (to the new worker); owners get WebSocketClose
    server.begin_drain()
    started = loop.time()
    if not ending.stopped:
        ending.drain_until = min(ending.drain_until, started + longest_s + 5)
    idle_closed = 0
    while server.open_connections:
        now = loop.time()
        if now >= started + IDLE_CLOSE_S:
            idle_closed += server.close_idle()
        if now >= ending.drain_until:
            break
        await asyncio.sleep(0.02)
    left = server.open_connections
    if left:
        log.warning("closing %d connection(s) still open %.1f s after the %s", left,
                    loop.time() - started, "stop" if ending.stopped else "handover")
        server.close_all()
    log.info("drained in %.2f s (%d idle kept-alive connection(s) closed)",
             loop.time() - started, idle_closed)


async def serve(home: NodeHome, config: NodeConfig, settings: HttpServerSettings,
                sock: socket.socket, member_of: int = 0, ready_fd: int | None = None) -> None:
    """One worker: the primary (it holds http-server:distro:sys, taking it over from a
    worker being replaced), or with `member_of` a member of the primary with that OS
    pid (docs/workers.md). `ready_fd`: the primary writes to it once it serves."""
    loop = asyncio.get_running_loop()
    log.info("worker on the %s event loop%s", "uvloop" if "uvloop" in type(loop).__module__ else "asyncio",
             f", a member of os pid {member_of}" if member_of else "")
    ending = Ending(loop)
    owner = OwnerLock(home.state_dir)
    proc = await AsyncProcess.connect(HTTP_SERVER, home=home.root, connect_timeout=60,
                                      takeover=not member_of, member_of=member_of)

    def superseded() -> None:
        # Every message the kernel routed to us before the takeover has been handled
        # (and its binding journaled): the new worker may load the bindings now.
        owner.release()
        if not ending.superseded:
            log.info("%s: finishing what this one holds",
                     "its primary was replaced or went away" if member_of else "a new worker took over")
        ending.supersede()

    proc.on_superseded(superseded)
    if proc.took_over:
        log.info("took over http-server:distro:sys from the previous worker")
    if not ending.superseded and not member_of:
        await owner.acquire()
        if ending.superseded:  # replaced again while waiting
            owner.release()
    rpc = await connect_rpc(home, member_of)
    health = StateHealth(home.state_dir)
    if not member_of:
        clean_state_dir(home.state_dir)
    db = StateDb.open(db_path(home.state_dir))
    store = BindingStore(db, home.state_dir, health)
    table = store.load() if not member_of else store.read()
    if not member_of:
        store.maintain()
    rpc_token = _token(home, health)
    secrets_ = NodeSecrets(home.state_dir)
    try:
        jwt_secret = secrets_.jwt_secret()
    except OSError as exc:  # none yet, and none can be saved: logins last until a restart
        health.failed("creating the JWT secret", describe(exc))
        jwt_secret = secrets.token_bytes(32)
    sessions = Sessions(db)
    auth = Auth(config.node, jwt_secret, secrets_.password_hash(), sessions=sessions,
                session_days=settings.session_days, https=settings.https)
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="login")
    gateway = Gateway(settings, config.node, table, auth, proc, store.save, executor, rpc, rpc_token,
                      health=health)
    hub = WsHub(settings, table, auth, proc, home.state_dir)
    links = gateway.links = Links(proc, link_path(home.run_dir, os.getpid()))  # direct HTTP bindings
    handover_server: HandoverServer | None = None
    if member_of:
        follow = BindingFollower(db, store, table, gateway.bindings_reloaded)
        gateway.refresh = hub.refresh = follow
        hub.handover = HandoverClient(handover_path(home.run_dir, member_of))
    else:
        hub.announce_lost()
        hub.start_offering(claim_path(home.run_dir, os.getpid()))  # direct bindings' sockets
        if ready_fd is not None:  # the keeper runs members beside this worker
            handover_server = HandoverServer(handover_path(home.run_dir, os.getpid()), hub.handed)
    gateway.extra_actions.update({"web_socket_push": hub.on_push, "web_socket_close": hub.on_close,
                                  "web_socket_ext_push_outgoing": hub.on_push,
                                  "web_socket_counts": hub.on_counts})
    gateway.on_ws_binding = hub.binding_changed
    gateway.status_extra["websockets"] = lambda: len(hub.channels)
    gateway.status_extra["worker_pid"] = os.getpid  # which worker answered (docs/workers.md)
    gateway.status_extra["primary"] = lambda: 0 if member_of else 1
    proc.on_request(gateway.on_message)
    # The figures, the access log, the scrape and the node page (docs/metrics.md).
    figures = HttpFigures(config.metrics.enabled, config.logging.access_log)
    gateway.figures = hub.figures = figures
    if settings.trusted_proxies:
        figures.client_of = gateway._client
    metrics_token = _token(home, health, TOKEN_FILE)
    supervisor_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="supervisor")
    gatherer = Gatherer(home, proc, supervisor_executor)

    def open_sockets() -> dict[str, int]:
        return dict(Counter(c.app for c in hub.channels.values()))

    # Filled in below, once the server's gauges exist.
    shared = WorkerFigures(home.run_dir, list, shared=settings.worker_count() > 1)

    def every_sockets() -> dict[str, int]:
        return sockets_of(shared.merged()) if shared.shared else open_sockets()

    def every_apps() -> dict[str, AppStats]:
        return apps_of(shared.merged()) if shared.shared else figures.apps

    # The restart button's calls wait for the program to stop and start (seconds): on a
    # thread of their own, so the figures' calls to supervisord do not queue behind them.
    restart_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restart")
    dashboard = Dashboard(config.node, gatherer, figures, auth, restart_executor, metrics_token,
                          os.getpid(), every_sockets, every_apps, compression=settings.ws_compression)
    upgrades = Upgrades(hub, {DASHBOARD_PATH: dashboard})
    listener = Listener(gateway.dispatch, settings.max_body_bytes, upgrade=upgrades,
                        body_timeout_s=settings.body_timeout_s,
                        front=FrontDoor(HostAllowList(settings.allowed_hosts)).check)
    if figures.enabled or figures.access:
        listener.record = figures.record
    server = Server(
        listener,
        max_body_size=settings.max_body_bytes,
        max_header_size=settings.max_header_bytes,
        idle_connection_timeout=settings.idle_timeout_s,
    )
    server.max_connections = settings.max_connections
    gauges = {
        "porch_http_open_connections": ("HTTP connections open now (WebSockets apart).",
                                        lambda: float(server.open_connections)),
        "porch_http_inflight_requests": ("Requests forwarded to a process and not answered yet.",
                                         lambda: float(gateway.inflight)),
    }
    shared.local = lambda: figures.families(open_sockets, gauges)
    scrape = Scrape(gatherer, shared.merged, every_apps, metrics_token, os.getpid())
    gateway.own_paths.update({METRICS_PATH: scrape.handle, PROCESSES_PATH: dashboard.processes,
                              RESTART_PATH: dashboard.restart})
    dashboard.start()
    if figures.enabled:
        shared.start()
    files = raise_open_files_limit()
    if settings.max_connections + settings.max_websockets + 256 > files:
        log.warning("max_connections (%d) + max_websockets (%d) do not fit in the open-files "
                    "limit (%d): accepts will pause when it is reached (raise `ulimit -n`)",
                    settings.max_connections, settings.max_websockets, files)
    loop.add_signal_handler(signal.SIGTERM, ending.stop)
    loop.add_signal_handler(signal.SIGINT, ending.stop)
    reminder = asyncio.ensure_future(_remind(health))
    if not ending.event.is_set():
        # Accept only now: registered, bindings loaded (the keeper's backlog held
        # whoever connected meanwhile).
        server.add_sockets([sock])
        host, port = sock.getsockname()[:2]  # the address listened on (the keeper's, not our settings)
        if health.writable:
            log.info("serving http on %s:%d with %d binding(s)", host, port, len(table.http) - 1)
        else:
            log.error("serving http on %s:%d with %d binding(s), READ-ONLY: the state cannot be "
                      "written (%s)", host, port, len(table.http) - 1, health.reason)
        if ready_fd is not None:  # the keeper starts the members now
            try:
                os.write(ready_fd, b"1")
            except OSError:
                pass
            os.close(ready_fd)
        await ending.event.wait()
    if handover_server is not None:
        handover_server.close()
    if hub.handover is not None:
        hub.handover.close()
    await drain(server, hub, ending, longest_request_s(table, settings))
    links.close()  # after the drain: what was in flight on a link was answered
    reminder.cancel()
    dashboard.stop()
    shared.stop()
    supervisor_executor.shutdown(wait=False)
    restart_executor.shutdown(wait=False)
    owner.release()
    await asyncio.sleep(0.2)  # let the last answers and close frames go out
    if rpc is not None:
        rpc.close()
    proc.close()
    executor.shutdown(wait=False)
    db.close()


def clean_state_dir(state_dir: Path) -> None:
    """Remove what interrupted writes left in the state directory (issue 10 item 7):
    the temporary files of porch.files (any writer's: a living one holds a lock on its
    own) and the port file's of older porch versions (port.tmp)."""
    removed, problems = remove_leftovers(state_dir)
    old_port_tmp = state_dir / "port.tmp"
    if old_port_tmp.exists():
        try:
            old_port_tmp.unlink()
            removed.append(old_port_tmp)
        except OSError as exc:
            problems.append(f"{old_port_tmp}: {exc}")
    if removed:
        log.warning("removed %d file(s) left by interrupted writes: %s", len(removed),
                    ", ".join(p.name for p in removed))
    for problem in problems:
        log.warning("cannot remove a file left by an interrupted write: %s", problem)


def _token(home: NodeHome, health: StateHealth, name: str = "rpc.token") -> str:
    """The node's RPC token (or, by `name`, the metrics token); if there is none and
    none can be saved, one nobody knows (RPC then takes the owner's cookie only, the
    scrape nothing) until the disk can be written."""
    try:
        return RpcToken(home.state_dir, name).get()
    except OSError as exc:
        health.failed(f"creating {name}", describe(exc))
        return secrets.token_urlsafe(32)


async def _remind(health: StateHealth, interval: float = 60.0) -> None:
    """While the state cannot be written, say so again now and then (health.remind_s)."""
    while True:
        await asyncio.sleep(interval)
        health.remind()


# ---------------------------------------------------------------------------- main


def inherited_socket(home: NodeHome) -> socket.socket | None:
    """A listening socket held by someone who outlives the keeper (issue 10 item 5):
    systemd's (socket activation, the keeper run by systemd itself), else the one a
    socket-activated `porch up` holds (porch.node.listen_socket). None: bind the port."""
    sock = from_systemd()
    via = "systemd (LISTEN_FDS)"
    if sock is None:
        sock = fetch(holder_path(home))
        via = "porch up (socket activation)"
    if sock is None:
        return None
    port = sock.getsockname()[1]
    remember(home.state_dir / "port", port)
    log.info("listening socket (port %d) held by %s: a crash of this keeper refuses no "
             "connection; [http_server] port and host do not apply", port, via)
    return sock



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="porch http-server",
        description="Run the node's HTTP server (http-server:distro:sys). Normally started "
        "by `porch up`; settings come from the [http_server] table of porch.toml.",
    )
    parser.add_argument("--home", help="node home (default: $PORCH_HOME or ~/.porch)")
    parser.add_argument("--port", type=int, help="port to bind; fails if busy (default: the "
                        "node's remembered port, else the first free from 8080)")
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)  # primary: say when serving
    parser.add_argument("--member-of", type=int, default=0, help=argparse.SUPPRESS)  # a member worker
    args = parser.parse_args(argv)
    program = ("http-server" if args.worker_fd is None
               else MEMBER_PROGRAM if args.member_of else WORKER_PROGRAM)
    started = start_service("http-server", args.home, program)
    if started is None:
        return 2
    home, config = started
    try:
        settings = settings_with_overrides(config, args, f"{home.config_path} [http_server]")
        loops.chosen(settings.event_loop)  # "uvloop" without uvloop: say so once, here
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if args.worker_fd is not None:
        die_with_parent(signal.SIGTERM)  # the worker must not hold the port without its keeper
        sock = socket.socket(fileno=args.worker_fd)
        try:
            loops.run(serve(home, config, settings, sock, member_of=args.member_of,
                            ready_fd=args.ready_fd), settings.event_loop)
        except (PorchError, ConfigError) as exc:
            log.error("%s", exc)
            return 1
        return 0
    try:
        held = inherited_socket(home)
    except (OSError, NotAListeningSocket) as exc:
        log.error("error: the socket passed by systemd (LISTEN_FDS) is unusable: %s", exc)
        return 2
    if held is not None:
        sock = held
    else:
        try:
            sock = open_listener(settings.host, settings.port, home.state_dir / "port")
        except PortBusy as exc:
            log.error("error: %s", exc)
            print(f"error: {exc}", file=sys.stderr)
            return 2
    ensure_password(home)
    port = sock.getsockname()[1]
    log.info("Login at http://localhost:%d", port)
    return Keeper(home, sock, settings.worker_count()).run()
