"""Start real porch services and user processes for tests, and clean them up.

`Node` runs the services as plain subprocesses (fast, and each can be killed or
restarted by pid); `SupervisedNode` runs a whole node with `porch up --detach`, as an
operator would. Both use a fresh home under /tmp (short: Unix socket paths are limited
to ~100 bytes) and end only the processes they started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import porch
from porch.cli.procinfo import children
from porch.node.home import ENV_HOME, ENV_PROCESS, NodeHome
from porch.node.service_token import ENV_SERVICE_TOKEN

PY = sys.executable
SERVING = "serving http on"  # the worker's log line once it accepts connections


@contextmanager
def stopped(*pids: int) -> Iterator[None]:
    """These processes do not run (SIGSTOP) inside the block; SIGCONT whatever happens."""
    done: list[int] = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            done.append(pid)
        yield
    finally:
        for pid in done:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll until predicate() is truthy; fail the test with `what` after timeout."""
    give_up = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan waiting for init to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def non_loopback_ip() -> str | None:
    """This machine's own non-loopback IPv4 address, or None if it has none. The
    http-server listens on 0.0.0.0, so a client bound to this address reaches it as a
    non-local peer (for local_only, the RPC endpoint, extension WebSockets)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent for UDP connect
            ip = str(s.getsockname()[0])
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def service_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PORCH_KERNEL", None)
    env.pop(ENV_SERVICE_TOKEN, None)  # the services read the home's; user processes get none
    env[ENV_HOME] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Node:
    """Services of one node as plain subprocesses in a temporary home."""

    def __init__(self, config: str = 'node = "test.os"\n') -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="porch-", dir="/tmp"))
        self.home = NodeHome(self.dir / "h")
        self.home.ensure()
        self.home.config_path.write_text(config)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stubs: list[porch.Process] = []

    # -- services ----------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.dir / f"{name.replace(':', '_')}.log"

    def start(self, name: str, *args: str, module: str | None = None,
              wait: bool = True, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a service ("kernel", "http-server", "http-client") by name."""
        module = module or {"kernel": "porch.kernel", "http-server": "porch.http_server",
                            "http-client": "porch.http_client"}[name]
        served_before = self.log(name).count(SERVING) if name == "http-server" else 0
        with self.log_path(name).open("ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen([PY, "-m", module, "--home", str(self.home.root), *args],
                                    stdout=log, stderr=subprocess.STDOUT,
                                    env=service_env(self.home.root, **(env or {})))
        self.procs[name] = proc
        if wait and name == "kernel":
            wait_for(self.home.kernel_socket.exists, 10, what="the kernel socket")
        elif wait and name != "kernel":
            pid = {"http-server": "http-server:distro:sys",
                   "http-client": "http-client:distro:sys"}.get(name)
            if pid:
                try:
                    self.wait_registered(pid, timeout=30)
                except AssertionError as exc:  # say why: the service's own words
                    tail = "".join(self.log(name).splitlines(keepends=True)[-30:])
                    raise AssertionError(f"{exc} (exit code {proc.poll()}); its log ends:\n{tail}") from None
            if name == "http-server":  # registered, and its worker has finished starting
                wait_for(lambda: self.log(name).count(SERVING) > served_before or proc.poll() is not None,
                         30, what="the http-server's worker serving")
        return proc

    def spawn(self, process_id: str, source: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """Run Python source as a user process registered as process_id."""
        if process_id in self.procs and self.procs[process_id].poll() is None:
            raise RuntimeError(f"{process_id} is already running")
        script = self.dir / f"{process_id.replace(':', '_')}.py"
        script.write_text(textwrap.dedent(source))
        log_path = self.log_path(process_id)
        if log_path.exists():  # keep the previous life's log, start this one fresh
            log_path.replace(log_path.with_suffix(".prev.log"))
        with log_path.open("ab") as log:
            proc = subprocess.Popen([PY, str(script), *args], stdout=log, stderr=subprocess.STDOUT,
                                    env=service_env(self.home.root, **{ENV_PROCESS: process_id}, **env))
        self.procs[process_id] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        proc.send_signal(sig)
        proc.wait(10)

    def stop(self, name: str) -> None:
        self.kill(name, signal.SIGTERM)

    def wait_log(self, name: str, text: str, timeout: float = 15) -> None:
        wait_for(lambda: text in self.log(name), timeout, what=f"{text!r} in the log of {name}")

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    # -- stubs in the test process -----------------------------------------------

    def process(self, process_id: str, **kwargs: Any) -> porch.Process:
        kwargs.setdefault("connect_timeout", 10)
        proc = porch.Process(process_id, home=self.home.root, **kwargs)
        self._stubs.append(proc)
        return proc

    def service_process(self, process_id: str) -> porch.Process:
        """A stub holding the node's service token, as the services the node starts do:
        the only way to register a reserved id (distro:sys)."""
        saved = os.environ.get(ENV_SERVICE_TOKEN)
        os.environ[ENV_SERVICE_TOKEN] = self.home.service_token.read_text().strip()
        try:
            return self.process(process_id)
        finally:
            if saved is None:
                del os.environ[ENV_SERVICE_TOKEN]
            else:
                os.environ[ENV_SERVICE_TOKEN] = saved

    def registered(self) -> set[str]:
        probe = self.process(f"probe-{os.getpid()}-{len(self._stubs)}:test:sys")
        try:
            return {e.process_id for e in probe.registry().entries}
        finally:
            probe.close()

    def wait_registered(self, *process_ids: str, timeout: float = 15) -> None:
        wait_for(lambda: set(process_ids) <= self.registered(), timeout,
                 what=f"{', '.join(process_ids)} to register")

    def close(self) -> None:
        for stub in self._stubs:
            stub.close()
        # The http-server's worker outlives its keeper for a moment (it stops cleanly,
        # saving its bindings): wait for it, or it writes into the home being removed.
        workers = [c for proc in self.procs.values() if proc.poll() is None for c in children(proc.pid)]
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        deadline = time.monotonic() + 10
        while any(running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        shutil.rmtree(self.dir, ignore_errors=True)


def porch_cli(*args: str, home: Path, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "porch.cli", *args, "--home", str(home)],
                          capture_output=True, text=True, timeout=timeout,
                          env=service_env(home), **kw)


class SupervisedNode:
    """A whole node run by `porch up --detach`, stopped with `porch down`."""

    def __init__(self, config: str, *up_args: str,
                 prepare: Callable[[NodeHome], None] | None = None) -> None:
        """`prepare(home)` runs before `porch up` (e.g. to mount a filesystem on state/)."""
        self.dir = Path(tempfile.mkdtemp(prefix="porch-", dir="/tmp"))
        self.home = NodeHome(self.dir / "h")
        self.home.ensure()
        self.home.config_path.write_text(config)
        if prepare is not None:
            prepare(self.home)
        self.up = porch_cli("up", "--detach", *up_args, home=self.home.root)
        self._stubs: list[porch.Process] = []

    def cli(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return porch_cli(*args, home=self.home.root, **kw)

    def process(self, process_id: str, **kwargs: Any) -> porch.Process:
        kwargs.setdefault("connect_timeout", 10)
        proc = porch.Process(process_id, home=self.home.root, **kwargs)
        self._stubs.append(proc)
        return proc

    def pid_of(self, program: str) -> int:
        from porch.cli.supervise import Supervisor

        info = Supervisor(self.home).rpc.getProcessInfo(program)
        return int(info["pid"])

    def close(self) -> None:
        for stub in self._stubs:
            stub.close()
        pid_file = self.home.supervisord_pid
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        self.cli("down", timeout=60)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_home_processes(self.home.root)  # what a failed test left running
        shutil.rmtree(self.dir, ignore_errors=True)


def pids_of_home(home: Path) -> list[int]:
    """The processes started with `--home <home>` (services and launched apps)."""
    mark = b"--home\x00" + str(home).encode() + b"\x00"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark in (entry / "cmdline").read_bytes() + b"\x00":
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def kill_home_processes(home: Path) -> None:
    """SIGKILL every process of a node home: supervisord runs each program in a group
    of its own, so programs outlive a supervisord a failed test killed."""
    for pid in pids_of_home(home):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
