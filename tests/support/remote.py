"""A node that listens for processes on other machines, for tests and the bench.

`RemoteNode` is a `Node` whose kernel listens on TCP (`[kernel] listen`) with CURVE
keys made for the remote process ids it declares; `remote()` links a stub in this
process over TCP, `spawn_remote()` runs one as a subprocess that knows nothing of the
node's home (only $PORCH_KERNEL and $PORCH_KEYS), optionally inside a network
namespace (`NetNs`: a veth pair with private test addresses, a real second host's
link).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import porch
from porch.node import keys
from support.node import PY, Node, free_port, wait_for

# The node's and the remote processes' heartbeat interval: a silent link is dropped
# after 5 of them (2 s) instead of 5 s.
HEARTBEAT_IVL_S = "0.4"
HEARTBEAT_TIMEOUT_S = 5 * float(HEARTBEAT_IVL_S)


class RemoteNode(Node):
    def __init__(self, remote_ids: list[str], *, host: str = "127.0.0.1", extra: str = "",
                 caps: tuple[str, ...] = ("http-server:distro:sys", "http-client:distro:sys")) -> None:
        super().__init__()
        self.tcp_port = free_port()
        self.endpoint = f"tcp://{host}:{self.tcp_port}"
        self.keys_dir = self.dir / "remote-keys"  # where a remote machine would keep them
        self.keys_dir.mkdir(mode=0o700)
        server = keys.server_keys(self.home)
        self.server_public = server.public
        self.pairs: dict[str, keys.KeyPair] = {}
        entries = ""
        cap_list = ", ".join(f'"{c}"' for c in caps)
        for pid in remote_ids:
            pair = self.pairs[pid] = keys.new_pair()
            keys.write_client(self.key_file(pid), keys.ClientKeys(pid, pair.public, pair.secret,
                                                                   server.public))
            entries += f'[[process]]\nid = "{pid}"\nkey = "{pair.public}"\ncapabilities = [{cap_list}]\n'
        self.home.config_path.write_text(
            f'node = "remote.os"\n[kernel]\nlisten = "{self.endpoint}"\n{extra}\n' + entries)

    def key_file(self, pid: str) -> Path:
        return self.keys_dir / (pid.replace(":", "_") + ".key")

    def stranger_keys(self, pid: str) -> Path:
        """A key file with a pair the node never declared."""
        pair = keys.new_pair()
        path = self.keys_dir / ("stranger-" + pid.replace(":", "_") + ".key")
        keys.write_client(path, keys.ClientKeys(pid, pair.public, pair.secret, self.server_public))
        return path

    def remote(self, pid: str, key_file: Path | None = None, **kwargs: Any) -> porch.Process:
        """A blocking stub in this process, linked over TCP with pid's keys."""
        kwargs.setdefault("connect_timeout", 10)
        proc = porch.Process(pid, endpoint=self.endpoint, keys=key_file or self.key_file(pid), **kwargs)
        self._stubs.append(proc)
        return proc

    def spawn_remote(self, pid: str, source: str, *, netns: str | None = None,
                     endpoint: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        """Run Python source as pid on "another machine": no node home, only the
        kernel's endpoint and the key file (inside netns, if given)."""
        script = self.dir / f"remote-{pid.replace(':', '_')}.py"
        script.write_text(textwrap.dedent(source))
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PORCH_")}
        environ.update(PYTHONUNBUFFERED="1", PORCH_KERNEL=endpoint or self.endpoint,
                       PORCH_KEYS=str(self.key_file(pid)), PORCH_HEARTBEAT_IVL_S=HEARTBEAT_IVL_S,
                       **env)
        prefix = ["ip", "netns", "exec", netns] if netns else []
        log_path = self.log_path(pid)
        if log_path.exists():
            log_path.replace(log_path.with_suffix(".prev.log"))
        with log_path.open("ab") as log:
            proc = subprocess.Popen([*prefix, PY, str(script)], stdout=log, stderr=subprocess.STDOUT,
                                    env=environ, cwd=self.dir)
        self.procs[pid] = proc
        return proc

    def kernel_pid(self) -> int:
        return self.procs["kernel"].pid

    def kernel_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.kernel_pid()}/fd"))


def netns_usable() -> str:
    """Why a network-namespace test cannot run here ("" if it can)."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    probe = f"porchprobe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"ip netns does not work here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


class NetNs:
    """A network namespace joined to this host by a veth pair with private /30
    addresses that exist only for the test: host side .1, namespace side .2."""

    def __init__(self) -> None:
        tag = os.getpid() % 10000
        self.name = f"porch{os.getpid()}"
        self.host_if, self.ns_if = f"pv{tag}a", f"pv{tag}b"
        self.host_ip, self.ns_ip = self._free_subnet()
        try:
            for cmd in (
                ["ip", "netns", "add", self.name],
                ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
                ["ip", "link", "set", self.ns_if, "netns", self.name],
                ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if],
                ["ip", "link", "set", self.host_if, "up"],
                ["ip", "-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if],
                ["ip", "-n", self.name, "link", "set", self.ns_if, "up"],
                ["ip", "-n", self.name, "link", "set", "lo", "up"],
            ):
                subprocess.run(cmd, check=True, capture_output=True, text=True)
            wait_for(lambda: subprocess.run(["ip", "netns", "exec", self.name, "ping", "-c1", "-W1",
                                             self.host_ip], capture_output=True).returncode == 0
                     if shutil.which("ping") else True, 10, what="the veth link")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _free_subnet() -> tuple[str, str]:
        used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        for third in range(os.getpid() % 200, os.getpid() % 200 + 50):
            base = f"10.251.{third % 250}."
            if base not in used:
                return base + "1", base + "2"
        raise RuntimeError("no free 10.251.x.0/30 test subnet")

    def cut(self) -> None:
        """Take the namespace's side down: packets stop, nobody sends a FIN or a reset
        (a cable pulled), so only heartbeats can tell."""
        subprocess.run(["ip", "-n", self.name, "link", "set", self.ns_if, "down"], check=True,
                       capture_output=True)

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
