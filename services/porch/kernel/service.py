"""`porch kernel` / `python -m porch.kernel`: run the node's kernel in the foreground."""

from __future__ import annotations

import argparse
import fcntl
import logging
from typing import IO

from porch.kernel.policy import CapabilityPolicy
from porch.kernel.router import Kernel, install_signal_handlers
from porch.kernel.transport import RemoteSeam
from porch.node import keys, service_token
from porch.node.config import NodeConfig
from porch.node.home import NodeHome
from porch.node.startup import start_service

log = logging.getLogger("porch.kernel")


def hold_lock(home: NodeHome) -> IO[str] | None:
    """One kernel per home: a second would steal the socket path from the first."""
    lock = open(home.kernel_lock, "w")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def remote_transport(home: NodeHome, config: NodeConfig) -> RemoteSeam | None:
    """The TCP + CURVE transport for processes on other machines, if the node listens."""
    settings = config.kernel
    if not settings.listen:
        return None
    from porch.kernel.keyring import KeyRing
    from porch.kernel.remote import RemoteTransport

    declared = config.remote_keys()
    if not declared:
        log.warning("[kernel] listen is set but no [[process]] has a key: every remote "
                    "connection will be refused (porch keys new ID)")
    return RemoteTransport(settings.listen, KeyRing(declared, keys.revoked_path(home)),
                           keys.server_keys(home), queue=settings.remote_queue,
                           max_connections=settings.remote_connections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="porch kernel",
        description="Run the kernel of a porch node: the message router every process "
        "connects to (registry, capabilities, deadlines). Normally started by `porch up`.",
    )
    parser.add_argument("--home", help="node home (default: $PORCH_HOME or ~/.porch)")
    args = parser.parse_args(argv)
    started = start_service("kernel", args.home)
    if started is None:
        return 2
    home, config = started
    lock = hold_lock(home)
    if lock is None:
        log.error("another kernel is already running for %s", home.root)
        return 1
    try:
        remote = remote_transport(home, config)
    except keys.KeyFileError as exc:
        log.error("%s", exc)
        lock.close()
        return 2
    kernel = Kernel(
        home.kernel_endpoint,
        config.node,
        CapabilityPolicy(config.grants(), config.private()),
        max_timeout_ms=int(config.kernel.max_request_timeout_s * 1000),
        service_token=service_token.read_or_create(home),
        remote=remote,
        metrics=config.metrics.enabled,
    )
    try:
        kernel.bind()
    except OSError as exc:
        log.error("%s", exc)
        kernel.close()
        lock.close()
        return 1
    install_signal_handlers(kernel)
    try:
        kernel.run()
    finally:
        kernel.close()
        log.info("kernel %s stopped", kernel.boot_id)
        lock.close()
    return 0
