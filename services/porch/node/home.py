"""The node home: where a node keeps its config, sockets, logs and state.

Layout (created by `porch up`, modes enforced every time):

    <home>/porch.toml      node config (node name, settings, user processes)
    <home>/run/            0700: kernel.sock, supervisor.sock, supervisord.conf (0600),
                           applied.json (what the running node was given), pid files,
                           service.token (0600, new at every start: see service_token),
                           demo.toml (the demo apps of `porch up --demo`, that run only)
    <home>/logs/           one log per service
    <home>/state/          0700: chosen port, bindings, static content, secrets (0600),
                           among them supervisor.secret (supervisord's socket login)

The home defaults to $PORCH_HOME, else ~/.porch.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "PORCH_HOME"
ENV_KERNEL = "PORCH_KERNEL"
ENV_PROCESS = "PORCH_PROCESS"

# sun_path is 108 bytes on Linux; "ipc://" is not part of it.
MAX_IPC_PATH = 100


def default_home() -> Path:
    env = os.environ.get(ENV_HOME)
    return Path(env) if env else Path.home() / ".porch"


@dataclass(frozen=True)
class NodeHome:
    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> NodeHome:
        return cls(Path(home).expanduser().resolve() if home else default_home().resolve())

    @property
    def config_path(self) -> Path:
        return self.root / "porch.toml"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def kernel_socket(self) -> Path:
        return self.run_dir / "kernel.sock"

    @property
    def kernel_endpoint(self) -> str:
        return f"ipc://{self.kernel_socket}"

    @property
    def kernel_lock(self) -> Path:
        return self.run_dir / "kernel.lock"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def supervisord_conf(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def supervisord_pid(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def supervisor_secret(self) -> Path:
        return self.state_dir / "supervisor.secret"

    @property
    def service_token(self) -> Path:
        return self.run_dir / "service.token"

    @property
    def applied_path(self) -> Path:
        return self.run_dir / "applied.json"

    @property
    def demo_config(self) -> Path:
        """[[process]] entries that run with the node beside porch.toml's, for one run
        (`porch up --demo` writes it, a `porch up` that starts the node without it
        removes it): porch.toml itself is never edited for a demo."""
        return self.run_dir / "demo.toml"

    def exists(self) -> bool:
        """A home `porch up` made (or one prepared by hand): it has its porch.toml."""
        return self.config_path.is_file()

    def ensure(self) -> None:
        """Create the directories with their modes; refuse paths too long for sockets."""
        self.root.mkdir(parents=True, exist_ok=True)
        for d in (self.root, self.run_dir, self.state_dir, self.logs_dir):
            d.mkdir(exist_ok=True)
            # Only when wrong: a chmod fails on a read-only disk even when it would
            # change nothing, and a service must still start there.
            if stat.S_IMODE(d.stat().st_mode) != 0o700:
                os.chmod(d, 0o700)
        for sock in (self.kernel_socket, self.supervisor_socket):
            if len(str(sock)) > MAX_IPC_PATH:
                raise ValueError(
                    f"node home {self.root} is too deep: socket path {sock} is longer than "
                    f"{MAX_IPC_PATH} bytes (a Unix socket limit); choose a shorter --home"
                )


def kernel_endpoint(home: str | os.PathLike[str] | None = None) -> str:
    """$PORCH_KERNEL if set, else the kernel socket of the (given or default) home."""
    env = os.environ.get(ENV_KERNEL)
    if env and home is None:
        return env
    return NodeHome.resolve(home).kernel_endpoint
