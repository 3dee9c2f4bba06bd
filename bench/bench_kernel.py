"""Kernel benchmark: porch's two-hop path through the kernel, beside a raw pyzmq echo.

What runs (all on ipc:// in temporary node homes, each its own OS process):
  - a real kernel (`python -m porch.kernel`), as a node runs it (it speaks ZMTP on its
    socket itself, `porch.link.server`);
  - a responder user process: the blocking `await_message` / `respond` loop;
  - a raw echo server: a pyzmq ROUTER that sends every frame set straight back;
  - two do-nothing relays, the floors of each transport: a pyzmq ROUTER and a minimal
    Python ZMTP relay, each with an echo DEALER behind it (the kernel's topology);
  - this process: the requesters (blocking `porch.Process`, asyncio `porch.AsyncProcess`)
    and the raw DEALER clients.

Every round measures each side in turn, the order rotating from round to round so a
noisy shared machine hurts all sides alike: ping-pong round-trip latency (porch
`send_and_await_response` vs raw DEALER->ROUTER->DEALER), pipelined throughput (porch
asyncio with a window of outstanding requests vs raw with the same window), and each
kernel's CPU per routed message, read from /proc (all of its threads). Medians over
rounds are printed.

    python bench/bench_kernel.py [--quick] [--rounds N] [--keep]

`python bench/run.py` runs it with the other benches; PORCH_BENCH_QUICK=1 = --quick.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

import porch
from porch.node.home import ENV_HOME, ENV_PROCESS, NodeHome

PY = sys.executable
BODY = bytes(range(100))  # 100-byte request and response bodies
RESPONDER = "echo:bench:sys"
CLIENT = "client:bench:sys"
PIPE_CLIENT = "pipe:bench:sys"

RESPONDER_SRC = """
    import porch
    proc = porch.Process()             # $PORCH_PROCESS in $PORCH_HOME
    print("ready", flush=True)
    while True:
        msg = proc.await_message()
        if msg.is_request:
            proc.respond(msg, msg.body)
"""

# The kernel's topology with nothing but forwarding in Python: one ROUTER in the middle,
# the requester and an echo DEALER (a third process) connected to it. The floor for any
# Python router on this transport: four one-way hops per round trip, like porch.
RELAY_SRC = """
    import sys, zmq
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    sock.setsockopt(zmq.RCVHWM, 10_000)
    sock.bind(sys.argv[1])
    print("ready", flush=True)
    while True:
        frames = sock.recv_multipart()
        if frames[0] == b"echo":       # [echo, client, payload] -> [client, payload]
            sock.send_multipart(frames[1:])
        else:                          # [client, payload] -> [echo, client, payload]
            sock.send_multipart([b"echo", *frames])
"""

RELAY_ECHO_SRC = """
    import sys, zmq
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, b"echo")
    sock.connect(sys.argv[1])
    print("ready", flush=True)
    while True:
        sock.send_multipart(sock.recv_multipart())
"""

# The floor for the zmtp transport: the same relay speaking ZMTP 3.0 (NULL mechanism)
# itself on the Unix socket, in Python, with epoll, so no libzmq I/O thread and no
# mailbox sit between the socket and the code. The DEALERs on both ends are ordinary
# pyzmq. Minimal on purpose (no heartbeats, no partial-write handling, trusts its
# peers): the experiment that led to porch.link.server, kept as its lower bound.
ZMTP_RELAY_SRC = r"""
    import os, select, socket, struct, sys
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(64)
    GREETING = b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + bytes(32)
    READY = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 6) + b"ROUTER"
    HELLO = GREETING + bytes([4, len(READY)]) + READY

    def frames(parts):
        out = bytearray()
        for i, p in enumerate(parts):
            more = 1 if i < len(parts) - 1 else 0
            if len(p) < 256:
                out += bytes([more, len(p)])
            else:
                out += bytes([more | 2]) + struct.pack(">Q", len(p))
            out += p
        return bytes(out)

    def properties(body):
        props, i = {}, 0
        while i < len(body):
            n = body[i]; key = bytes(body[i + 1:i + 1 + n]); i += 1 + n
            (m,) = struct.unpack(">I", body[i:i + 4]); i += 4
            props[key] = bytes(body[i:i + m]); i += m
        return props

    conns, by_ident, serial = {}, {}, 0
    ep = select.epoll()
    ep.register(lsock.fileno(), select.EPOLLIN)
    print("ready", flush=True)
    while True:
        for fd, _ in ep.poll():
            if fd == lsock.fileno():
                s, _ = lsock.accept()
                s.setblocking(False)
                conns[s.fileno()] = [s, bytearray(), False, b"", []]  # sock buf greeted ident parts
                ep.register(s.fileno(), select.EPOLLIN)
                s.send(HELLO)
                continue
            c = conns[fd]
            data = c[0].recv(65536)
            if not data:
                ep.unregister(fd); del conns[fd]
                if by_ident.get(c[3]) is c:
                    del by_ident[c[3]]
                c[0].close()
                continue
            buf = c[1]
            buf += data
            if not c[2]:
                if len(buf) < 64:
                    continue
                del buf[:64]; c[2] = True
            while len(buf) >= 2:
                flags = buf[0]
                if flags & 2:
                    if len(buf) < 9:
                        break
                    (n,) = struct.unpack(">Q", buf[1:9]); h = 9
                else:
                    n, h = buf[1], 2
                if len(buf) < h + n:
                    break
                body = bytes(buf[h:h + n]); del buf[:h + n]
                if flags & 4:  # a command: READY names the peer
                    if body[1:1 + body[0]] == b"READY":
                        ident = properties(body[1 + body[0]:]).get(b"Identity", b"")
                        if not ident:
                            serial += 1
                            ident = b"\0" + struct.pack(">I", serial)
                        c[3] = ident; by_ident[ident] = c
                    continue
                c[4].append(body)
                if flags & 1:
                    continue
                parts, c[4] = c[4], []
                if c[3] == b"echo":  # [client, payload] -> the client gets [payload]
                    dst, out = by_ident.get(parts[0]), parts[1:]
                else:                # [payload] -> echo gets [client, payload]
                    dst, out = by_ident.get(b"echo"), [c[3], *parts]
                if dst is not None:
                    dst[0].send(frames(out))
"""

RAW_ECHO_SRC = """
    import sys, zmq
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    sock.setsockopt(zmq.RCVHWM, 10_000)
    sock.bind(sys.argv[1])
    print("ready", flush=True)
    while True:
        sock.send_multipart(sock.recv_multipart())
"""


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    rounds: int = 5
    ping_pongs: int = 3000  # round trips per latency sample, per side, per round
    warmup: int = 300
    pipelined: int = 20_000  # request/response pairs per throughput sample
    window: int = 64  # outstanding requests in the pipelined runs

    @classmethod
    def quick(cls) -> Settings:
        return cls(rounds=2, ping_pongs=500, warmup=100, pipelined=3000)


# --------------------------------------------------------------------------- processes


TRANSPORTS = ("zmtp",)  # the kernel's transports (one since the libzmq kernel went)


@dataclass
class Bed:
    """The temporary nodes and the processes this bench started (ended by pid)."""

    dir: Path
    homes: dict[str, NodeHome]  # transport -> the home of the node running it
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def home(self) -> NodeHome:
        """The first node's home (the only one, outside the side-by-side run)."""
        return next(iter(self.homes.values()))

    @property
    def raw_endpoint(self) -> str:
        return f"ipc://{self.dir}/raw.sock"

    @property
    def relay_endpoint(self) -> str:
        return f"ipc://{self.dir}/relay.sock"

    @property
    def zmtp_endpoint(self) -> str:
        return f"ipc://{self.dir}/zmtp.sock"

    def env(self, home: NodeHome | None = None, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PORCH_KERNEL", None)
        env[ENV_HOME] = str((home or self.home).root)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PORCH_LOG_LEVEL", "WARNING")
        env.update(extra)
        return env

    def start(self, name: str, argv: list[str], home: NodeHome | None = None,
              **env: str) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                env=self.env(home, **env))
        self.procs[name] = proc
        return proc

    def script(self, name: str, source: str, *args: str, home: NodeHome | None = None,
               **env: str) -> subprocess.Popen[bytes]:
        path = self.dir / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return self.start(name, [PY, str(path), *args], home, **env)

    def wait_log(self, name: str, text: str, timeout: float = 15.0) -> None:
        path = self.dir / f"{name}.log"
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if path.exists() and text in path.read_text(errors="replace"):
                return
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{name} did not start: {path.read_text(errors='replace')[-2000:]}")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextmanager
def testbed(keep: bool = False, kernel_path: str | None = None,
            responder_path: str | None = None, transports: tuple[str, ...] = TRANSPORTS,
            floors: bool = True) -> Iterator[Bed]:
    """A node per transport (kernel `kernel-T`, responder `responder-T`), and with
    `floors` the raw echo and the two relays."""
    root = Path(tempfile.mkdtemp(prefix="porch-bench-", dir="/tmp"))
    # Homes h0, h1: paths of one length (the environment's size alone moves figures).
    bed = Bed(root, {t: NodeHome(root / f"h{i}") for i, t in enumerate(transports)})
    try:
        for t, home in bed.homes.items():
            home.ensure()
            home.config_path.write_text('node = "bench.os"\n')
            # --kernel-path runs another checkout's kernel (its services/ dir): an A/B of
            # a kernel change under the same stubs, on the same machine, minutes apart.
            extra = {"PYTHONPATH": kernel_path} if kernel_path else {}
            bed.start(f"kernel-{t}", [PY, "-m", "porch.kernel", "--home", str(home.root)],
                      home, **extra)
        for t, home in bed.homes.items():
            give_up = time.monotonic() + 15
            while not home.kernel_socket.exists():
                if time.monotonic() > give_up or bed.procs[f"kernel-{t}"].poll() is not None:
                    raise RuntimeError(f"the {t} kernel did not start")
                time.sleep(0.02)
            extra = {"PYTHONPATH": responder_path} if responder_path else {}
            bed.script(f"responder-{t}", RESPONDER_SRC, home=home,
                       **{ENV_PROCESS: RESPONDER}, **extra)
        waiting = [f"responder-{t}" for t in transports]
        if floors:
            bed.script("raw-echo", RAW_ECHO_SRC, bed.raw_endpoint)
            bed.script("relay", RELAY_SRC, bed.relay_endpoint)
            bed.wait_log("relay", "ready")
            bed.script("relay-echo", RELAY_ECHO_SRC, bed.relay_endpoint)
            bed.script("zmtp-relay", ZMTP_RELAY_SRC, bed.zmtp_endpoint.removeprefix("ipc://"))
            bed.wait_log("zmtp-relay", "ready")
            bed.script("zmtp-echo", RELAY_ECHO_SRC, bed.zmtp_endpoint)
            waiting += ["raw-echo", "relay-echo", "zmtp-echo"]
        for name in waiting:
            bed.wait_log(name, "ready")
        yield bed
    finally:
        bed.close()
        if keep:
            print(f"  (kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- measuring


def cpu_ns(pid: int) -> tuple[int, int]:
    """CPU time of a process in ns: (all threads, main thread), from schedstat.

    schedstat is per task and in ns (utime/stime in /proc/pid/stat tick at 10 ms);
    summing the tasks includes ZeroMQ's I/O thread, which does the socket work.
    """
    total = main = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError):
            continue
        total += ns
        if task == str(pid):
            main = ns
    return total, main


def cpu_ticks_ns(pid: int) -> int:
    """utime+stime from /proc/pid/stat (all threads), in ns: a cross-check of schedstat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


@dataclass
class KernelCpu:
    """Kernel CPU over one burst, per message it routed."""

    per_msg_us: float
    python_us: float
    ticks_us: float
    # The stubs' side, per round trip (two routed messages): where the rest goes.
    requester_us: float = 0.0
    responder_us: float = 0.0


class KernelMeter:
    def __init__(self, pid: int, proc: porch.Process, responder_pid: int) -> None:
        self.pid = pid
        self.proc = proc
        self.responder_pid = responder_pid

    @contextmanager
    def measure(self, out: list[KernelCpu]) -> Iterator[None]:
        routed0 = self.proc.registry().routed
        total0, main0 = cpu_ns(self.pid)
        ticks0 = cpu_ticks_ns(self.pid)
        req0, resp0 = cpu_ns(os.getpid())[0], cpu_ns(self.responder_pid)[0]
        yield
        total1, main1 = cpu_ns(self.pid)
        ticks1 = cpu_ticks_ns(self.pid)
        req1, resp1 = cpu_ns(os.getpid())[0], cpu_ns(self.responder_pid)[0]
        routed = self.proc.registry().routed - routed0
        if routed > 0:
            out.append(KernelCpu((total1 - total0) / routed / 1000,
                                 (main1 - main0) / routed / 1000,
                                 (ticks1 - ticks0) / routed / 1000,
                                 (req1 - req0) / routed * 2 / 1000,
                                 (resp1 - resp0) / routed * 2 / 1000))


@contextmanager
def one_core(pids: list[int]) -> Iterator[None]:
    """Every thread of these processes on one CPU for a while, then back.

    On this VM a wakeup across vCPUs costs ~8 µs more than one on the same vCPU, and
    the scheduler places the threads differently from run to run: a raw echo measures
    ~38 µs or ~71 µs. On one core every hop is a plain context switch, the figures are
    stable, and a round trip is the sum of the CPU its path burns.
    """
    cpu = min(os.sched_getaffinity(0))
    saved: dict[int, set[int]] = {}
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            tid = int(task)
            try:
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, {cpu})
            except OSError:
                pass
    try:
        yield
    finally:
        for tid, cpus in saved.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass


def dealer(ctx: zmq.Context[Any], endpoint: str) -> zmq.Socket[bytes]:
    """A connected DEALER, once its peer answers (a ROUTER drops what it cannot route)."""
    sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    give_up = time.monotonic() + 15
    while time.monotonic() < give_up:
        sock.send(b"probe")
        if sock.poll(200):
            sock.recv()
            while sock.poll(50):  # answers to earlier probes
                sock.recv()
            return sock
    raise RuntimeError(f"nothing echoes at {endpoint}")


def percentile(sorted_values: list[int], q: float) -> float:
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def latencies(one_round_trip: Callable[[], object], n: int, warmup: int) -> tuple[float, float]:
    """(p50, p99) in µs of n calls, after warmup calls."""
    for _ in range(warmup):
        one_round_trip()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = clock()
        one_round_trip()
        samples.append(clock() - t0)
    samples.sort()
    return percentile(samples, 0.50) / 1000, percentile(samples, 0.99) / 1000


def raw_pipelined(sock: zmq.Socket[bytes], n: int, window: int) -> float:
    """Request/response pairs per second with `window` outstanding."""
    t0 = time.perf_counter()
    sent = 0
    for _ in range(min(window, n)):
        sock.send(BODY)
        sent += 1
    for _ in range(n):
        sock.recv()
        if sent < n:
            sock.send(BODY)
            sent += 1
    return n / (time.perf_counter() - t0)


async def porch_pipelined(proc: porch.AsyncProcess, n: int, window: int) -> float:
    """Request/response pairs per second through the kernel, `window` outstanding."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    sent = received = 0
    failures: list[BaseException] = []

    def send_one() -> None:
        nonlocal sent
        sent += 1
        _, fut = proc.request_future(RESPONDER, BODY, timeout=30)
        fut.add_done_callback(on_reply)

    def on_reply(fut: asyncio.Future[porch.Message]) -> None:
        nonlocal received
        received += 1
        exc = fut.exception()
        if exc is not None:
            failures.append(exc)
        if sent < n:
            send_one()
        elif received == n and not done.done():
            done.set_result(None)

    t0 = time.perf_counter()
    for _ in range(min(window, n)):
        send_one()
    await done
    rate = n / (time.perf_counter() - t0)
    if failures:
        raise RuntimeError(f"{len(failures)} pipelined requests failed, first: {failures[0]!r}")
    return rate


# --------------------------------------------------------------------------- report


@dataclass
class Side:
    """One thing measured: a porch kernel (by transport), the raw echo, or a relay."""

    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    p50_1: list[float] = field(default_factory=list)  # every process on one core (one_core)
    rate: list[float] = field(default_factory=list)  # pipelined pairs per second
    rate1: list[float] = field(default_factory=list)  # the same on one core (--ab)
    cpu_pingpong: list[KernelCpu] = field(default_factory=list)
    cpu_pingpong1: list[KernelCpu] = field(default_factory=list)
    cpu_pipelined: list[KernelCpu] = field(default_factory=list)
    cpu_pipelined1: list[KernelCpu] = field(default_factory=list)
    relay_cpu: list[float] = field(default_factory=list)  # a relay's µs per forwarded message


FLOORS = ("raw", "relay", "zmtp-relay")


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a/b (both drift together within a round)."""
    return med([x / y for x, y in zip(a, b, strict=True)]) if a and b else float("nan")


def rotate(names: list[str], i: int) -> list[str]:
    """Round i's order: every side takes every place in turn."""
    k = i % len(names)
    return names[k:] + names[:k]


def report(r: dict[str, Side], s: Settings) -> None:
    kernels = [t for t in TRANSPORTS if t in r]
    raw = r["raw"]
    print(f"kernel: 100-byte request/response, ipc loopback, medians of {s.rounds} rounds "
          f"({s.ping_pongs} ping-pongs, {s.pipelined} pipelined pairs, window {s.window}), "
          "sides alternated in every round")
    head = "".join(f"{t + ' kernel':>16}" for t in kernels)
    print(f"  {'':30}{head}{'raw zmq echo':>16}")

    def row(label: str, values: list[str], tail: str = "") -> None:
        print(f"  {label:30}" + "".join(f"{v:>16}" for v in values) + tail)

    def us(xs: list[float]) -> str:
        return f"{med(xs):.1f} µs"

    def x(v: float) -> str:
        return f"{v:.2f}x"

    row("round trip p50, 2 cores", [us(r[t].p50) for t in kernels] + [us(raw.p50)])
    verdict = ", ".join(f"{t} {'ok' if ratio(r[t].p50, raw.p50) <= 2 else 'MISSED'}" for t in kernels)
    row("  / raw", [x(ratio(r[t].p50, raw.p50)) for t in kernels], f"   (target <= 2x: {verdict})")
    row("round trip p99, 2 cores", [us(r[t].p99) for t in kernels] + [us(raw.p99)])
    row("  / raw", [x(ratio(r[t].p99, raw.p99)) for t in kernels])
    row("round trip p50, one core", [us(r[t].p50_1) for t in kernels] + [us(raw.p50_1)])
    row("  / raw", [x(ratio(r[t].p50_1, raw.p50_1)) for t in kernels])
    row("pipelined req/s, 2 cores", [f"{med(r[t].rate):.0f}" for t in kernels] + [f"{med(raw.rate):.0f}"])
    row("  / raw", [x(ratio(r[t].rate, raw.rate)) for t in kernels])

    def cpu(cs: list[KernelCpu], attr: str = "per_msg_us", k: float = 1.0) -> str:
        return f"{k * med([getattr(c, attr) for c in cs]):.1f} µs"

    pp = {t: med([c.per_msg_us for c in r[t].cpu_pingpong]) for t in kernels}
    cpu_verdict = ", ".join(f"{t} {'ok' if pp[t] <= 50 else 'MISSED'}" for t in kernels)
    row("kernel CPU / routed, ping-pong", [cpu(r[t].cpu_pingpong) for t in kernels],
        f"   (target <= 50 µs: {cpu_verdict})")
    row("  python thread", [cpu(r[t].cpu_pingpong, "python_us") for t in kernels])
    row("kernel CPU / routed, pipelined", [cpu(r[t].cpu_pipelined) for t in kernels])
    row("  python thread", [cpu(r[t].cpu_pipelined, "python_us") for t in kernels])
    row("  /proc/pid/stat cross-check", [cpu(r[t].cpu_pipelined, "ticks_us") for t in kernels])
    row("one core CPU / rt: kernel", [cpu(r[t].cpu_pingpong1, k=2) for t in kernels], "   (2 routed msgs)")
    row("  requester (blocking stub)", [cpu(r[t].cpu_pingpong1, "requester_us") for t in kernels])
    row("  responder (blocking stub)", [cpu(r[t].cpu_pingpong1, "responder_us") for t in kernels],
        "   (the three add up to the round trip)")
    row("stub CPU / rt, 2 cores: req.", [cpu(r[t].cpu_pingpong, "requester_us") for t in kernels],
        "   (ping-pong)")
    row("  responder", [cpu(r[t].cpu_pingpong, "responder_us") for t in kernels])
    row("stub CPU / rt, pipelined: req.", [cpu(r[t].cpu_pipelined, "requester_us") for t in kernels],
        "   (asyncio requester)")
    row("  responder", [cpu(r[t].cpu_pipelined, "responder_us") for t in kernels])
    for t in kernels:
        pl = med([c.per_msg_us for c in r[t].cpu_pipelined])
        if pl > 0:
            print(f"  {t} kernel ceiling ~{1e6 / pl:.0f} routed msg/s per core at the pipelined cost")
    if len(kernels) == 2:
        a, b = (r[t] for t in kernels)
        cpu_a, cpu_b = ([c.per_msg_us for c in side.cpu_pingpong] for side in (a, b))
        print(f"  {kernels[0]} / {kernels[1]}: p50 {x(ratio(a.p50, b.p50))}"
              f" (per round: {' '.join(f'{p / q:.2f}' for p, q in zip(a.p50, b.p50, strict=True))}),"
              f" one core {x(ratio(a.p50_1, b.p50_1))}, pipelined {x(ratio(a.rate, b.rate))},"
              f" kernel CPU ping-pong {x(ratio(cpu_a, cpu_b))}")
    relay, zrelay = r["relay"], r["zmtp-relay"]
    print(f"  floors (do-nothing relays, the kernel's 4 hops): pyzmq relay {us(relay.p50)}"
          f" = {x(ratio(relay.p50, raw.p50))} raw, one core {x(ratio(relay.p50_1, raw.p50_1))},"
          f" {med(relay.relay_cpu):.1f} µs CPU/msg;")
    print(f"    ZMTP-speaking relay {us(zrelay.p50)} = {x(ratio(zrelay.p50, raw.p50))} raw, one core"
          f" {x(ratio(zrelay.p50_1, raw.p50_1))}, {med(zrelay.relay_cpu):.1f} µs CPU/msg"
          + "".join(f"; {t} kernel / its floor {x(ratio(r[t].p50, (zrelay if t == 'zmtp' else relay).p50))}"
                    for t in kernels))


# --------------------------------------------------------------------------- main


def run(s: Settings, keep: bool = False, kernel_path: str | None = None) -> dict[str, Side]:
    r = {name: Side() for name in (*TRANSPORTS, *FLOORS)}
    with testbed(keep, kernel_path) as bed:
        ctx: zmq.Context[Any] = zmq.Context.instance()
        loop = asyncio.new_event_loop()
        clients: dict[str, porch.Process] = {}
        aprocs: dict[str, porch.AsyncProcess] = {}
        meters: dict[str, KernelMeter] = {}
        socks: dict[str, zmq.Socket[bytes]] = {}
        try:
            for t, home in bed.homes.items():
                clients[t] = porch.Process(CLIENT, home=home.root, connect_timeout=15)
                aprocs[t] = loop.run_until_complete(
                    porch.AsyncProcess.connect(PIPE_CLIENT, home=home.root, connect_timeout=15))
                meters[t] = KernelMeter(bed.procs[f"kernel-{t}"].pid, clients[t],
                                        bed.procs[f"responder-{t}"].pid)
            socks = {"raw": dealer(ctx, bed.raw_endpoint), "relay": dealer(ctx, bed.relay_endpoint),
                     "zmtp-relay": dealer(ctx, bed.zmtp_endpoint)}

            def round_trip(name: str) -> Callable[[], object]:
                if name in clients:
                    client = clients[name]
                    return lambda: client.send_and_await_response(RESPONDER, BODY, timeout=10)
                sock = socks[name]

                def rt() -> None:
                    sock.send(BODY)
                    sock.recv()
                return rt

            def latency(name: str, pinned: bool = False) -> None:
                side = r[name]
                rt = round_trip(name)
                if name in meters:
                    with meters[name].measure(side.cpu_pingpong1 if pinned else side.cpu_pingpong):
                        p50, p99 = latencies(rt, s.ping_pongs, s.warmup)
                elif name in ("relay", "zmtp-relay") and not pinned:
                    pid = bed.procs[name].pid
                    c0 = cpu_ns(pid)[0]
                    p50, p99 = latencies(rt, s.ping_pongs, s.warmup)
                    side.relay_cpu.append((cpu_ns(pid)[0] - c0) / (s.ping_pongs + s.warmup) / 2000)
                else:
                    p50, p99 = latencies(rt, s.ping_pongs, s.warmup)
                if pinned:
                    side.p50_1.append(p50)
                else:
                    side.p50.append(p50)
                    side.p99.append(p99)

            def rate(name: str) -> None:
                side = r[name]
                if name in aprocs:
                    aproc = aprocs[name]
                    loop.run_until_complete(porch_pipelined(aproc, s.window, s.window))  # warm
                    with meters[name].measure(side.cpu_pipelined):
                        side.rate.append(loop.run_until_complete(
                            porch_pipelined(aproc, s.pipelined, s.window)))
                else:
                    raw_pipelined(socks[name], s.window, s.window)
                    side.rate.append(raw_pipelined(socks[name], s.pipelined, s.window))

            everyone = [p.pid for p in bed.procs.values()] + [os.getpid()]
            lat_names = [*TRANSPORTS, *FLOORS]
            rate_names = [*TRANSPORTS, "raw"]
            for i in range(s.rounds):
                gc.collect()
                for name in rotate(lat_names, i):
                    latency(name)
                for name in rotate(rate_names, i):
                    rate(name)
            # Last, since threads stay where pinning put them for a while after.
            with one_core(everyone):
                for i in range(s.rounds):
                    for name in rotate(lat_names, i):
                        latency(name, pinned=True)
        finally:
            for aproc in aprocs.values():
                aproc.close()
            loop.close()
            for client in clients.values():
                client.close()
            for sock in socks.values():
                sock.close(0)
    return r


def ab(s: Settings, base: str, other: str | None = None, *, transport: str = TRANSPORTS[0]) -> None:
    """Paired A/B: kernel and responder from `base` (another checkout's services/) vs
    this checkout's, two nodes side by side, measured alternately in every round.

    Minutes apart, this machine's figures drift by 10-20%; within one round they drift
    together, so the per-round ratio B/A shows changes of a few percent.
    """
    # Both sides get an explicit PYTHONPATH of the same length. Measured A/A (the same
    # code on both sides), a side without one, or with a path of another length, ran
    # ~5-10% slower or faster: the environment's size moves the stack's alignment.
    here = other or str(Path(porch.__file__).resolve().parent.parent)
    if len(here) != len(base):
        print(f"warning: {base!r} and {here!r} differ in length; A/A showed that alone can move "
              "figures by ~5-10%: use two checkouts at paths of equal length")
    one = (transport,)
    with testbed(kernel_path=base, responder_path=base, transports=one, floors=False) as bed_a, \
            testbed(kernel_path=here, responder_path=here, transports=one, floors=False) as bed_b:
        loop = asyncio.new_event_loop()
        sides = []
        for name, bed in (("A", bed_a), ("B", bed_b)):
            client = porch.Process(CLIENT, home=bed.home.root, connect_timeout=15)
            aproc = loop.run_until_complete(
                porch.AsyncProcess.connect(PIPE_CLIENT, home=bed.home.root, connect_timeout=15))
            meter = KernelMeter(bed.procs[f"kernel-{transport}"].pid, client,
                                bed.procs[f"responder-{transport}"].pid)
            sides.append((name, client, aproc, meter, Side()))
        everyone = [p.pid for bed in (bed_a, bed_b) for p in bed.procs.values()] + [os.getpid()]
        try:
            for i in range(s.rounds):
                gc.collect()
                order = sides if i % 2 == 0 else sides[::-1]
                # Ping-pong on one core: stable to ~2% run to run (see one_core).
                with one_core(everyone):
                    for _, client, _, meter, r in order:
                        def rt(c: porch.Process = client) -> None:
                            c.send_and_await_response(RESPONDER, BODY, timeout=10)

                        with meter.measure(r.cpu_pingpong):
                            p50, p99 = latencies(rt, s.ping_pongs, s.warmup)
                        r.p50.append(p50)
                        r.p99.append(p99)
                with one_core(everyone):
                    for _, _, aproc, meter, r in order:
                        loop.run_until_complete(porch_pipelined(aproc, s.window, s.window))
                        with meter.measure(r.cpu_pipelined1):
                            r.rate1.append(loop.run_until_complete(
                                porch_pipelined(aproc, s.pipelined, s.window)))
                for _, _, aproc, meter, r in order:
                    loop.run_until_complete(porch_pipelined(aproc, s.window, s.window))
                    with meter.measure(r.cpu_pipelined):
                        r.rate.append(loop.run_until_complete(
                            porch_pipelined(aproc, s.pipelined, s.window)))
        finally:
            for _, client, aproc, _, _ in sides:
                aproc.close()
                client.close()
            loop.close()
    a, b = sides[0][4], sides[1][4]

    def line(what: str, xa: list[float], xb: list[float], unit: str) -> None:
        print(f"  {what:22s} A {med(xa):8.1f} {unit:6s} B {med(xb):8.1f} {unit:6s} B/A {ratio(xb, xa):.3f}"
              f"  (per round: {' '.join(f'{y / x:.2f}' for x, y in zip(xa, xb, strict=True))})")

    print(f"A/B over {s.rounds} rounds ({transport} kernels): A = kernel+responder from {base}, "
          f"B = from {here}")
    line("one-core rt p50", a.p50, b.p50, "µs")
    line("one-core rt p99", a.p99, b.p99, "µs")
    line("one-core pipelined", a.rate1, b.rate1, "req/s")
    line("pipelined (2 cores)", a.rate, b.rate, "req/s")
    for what, field_name in (("kernel CPU 1-core p-p", "cpu_pingpong"),
                             ("kernel CPU 1-core pipe", "cpu_pipelined1"),
                             ("kernel CPU pipelined", "cpu_pipelined")):
        ca: list[KernelCpu] = getattr(a, field_name)
        cb: list[KernelCpu] = getattr(b, field_name)
        line(what, [c.per_msg_us for c in ca], [c.per_msg_us for c in cb], "µs/msg")
        line("  python thread", [c.python_us for c in ca], [c.python_us for c in cb], "µs/msg")
        line("  requester / rt", [c.requester_us for c in ca], [c.requester_us for c in cb], "µs")
        line("  responder / rt", [c.responder_us for c in ca], [c.responder_us for c in cb], "µs")


def load(kind: str, seconds: float, transport: str = TRANSPORTS[0]) -> None:
    """Hold a steady load for a profiler: `py-spy record --pid <kernel pid>` etc."""
    with testbed(transports=(transport,), floors=False) as bed:
        client = porch.Process(CLIENT, home=bed.home.root, connect_timeout=15)
        loop = asyncio.new_event_loop()
        aproc = loop.run_until_complete(
            porch.AsyncProcess.connect(PIPE_CLIENT, home=bed.home.root, connect_timeout=15))
        pids = {name: p.pid for name, p in bed.procs.items()}
        print(f"{kind} load for {seconds:.0f} s on the {transport} kernel; kernel pid "
              f"{pids[f'kernel-{transport}']}, responder pid {pids[f'responder-{transport}']}, "
              f"requester (this) pid {os.getpid()}", flush=True)
        n = 0
        give_up = time.monotonic() + seconds
        try:
            while time.monotonic() < give_up:
                if kind == "pingpong":
                    for _ in range(1000):
                        client.send_and_await_response(RESPONDER, BODY, timeout=10)
                    n += 1000
                else:
                    loop.run_until_complete(porch_pipelined(aproc, 10_000, 64))
                    n += 10_000
        finally:
            aproc.close()
            loop.close()
            client.close()
        print(f"{n} round trips")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 5, quick 2)")
    parser.add_argument("--ping-pongs", type=int, help="round trips per latency sample")
    parser.add_argument("--pipelined", type=int, help="pairs per throughput sample")
    parser.add_argument("--window", type=int, help="outstanding requests when pipelined")
    parser.add_argument("--keep", action="store_true", help="keep the temp home (logs)")
    parser.add_argument("--kernel-path", metavar="DIR",
                        help="run the kernels from another checkout's services/ (A/B a change)")
    parser.add_argument("--ab", metavar="DIR", nargs="+",
                        help="paired A/B: kernel+responder from DIR (a services/ dir) vs this checkout's,"
                             " or vs a second DIR")
    parser.add_argument("--transport", choices=TRANSPORTS, default=TRANSPORTS[0],
                        help="the kernels' transport for --ab and --load (default %(default)s)")
    parser.add_argument("--load", choices=("pingpong", "pipelined"),
                        help="no figures: hold this load (for a profiler) and print the pids")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long --load runs")
    args = parser.parse_args([] if argv is None and __name__ != "__main__" else argv)
    if args.load:
        load(args.load, args.seconds, args.transport)
        return
    quick = args.quick or os.environ.get("PORCH_BENCH_QUICK") == "1"
    s = Settings.quick() if quick else Settings()
    for name in ("rounds", "ping_pongs", "pipelined", "window"):
        value: Any = getattr(args, name)
        if value is not None:
            setattr(s, name, value)
    if args.ab:
        ab(s, *args.ab[:2], transport=args.transport)
        return
    report(run(s, args.keep, args.kernel_path), s)


if __name__ == "__main__":
    main()
