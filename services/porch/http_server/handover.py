"""Which worker owns the node's bindings while two run (during `porch restart http-server`).

A restart starts the new worker before the old one goes: the new one takes over the
kernel registration (Register.takeover), the old one answers what it holds. Binding
actions reach whichever worker holds http-server:distro:sys, so one that the kernel
routed to the old worker just before the takeover may still be in the old worker's
queue when the new one loads bindings.json and its journal. `OwnerLock` closes that
gap: a worker holds an flock on state/http-server.owner from its start until it is
superseded, which the kernel tells it after every message routed to it before the
takeover (it has journaled them all by then). The new worker takes the lock before it
loads the bindings. A worker that dies releases it with its descriptors; one that is
stuck is waited for at most `wait_s`.

Only the owner writes the bindings: a superseded worker does not fold its (now stale)
table into bindings.json when it stops.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger("porch.http_server")

WAIT_S = 5.0  # how long a new worker waits for its predecessor to let go


class OwnerLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "http-server.owner"
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    async def acquire(self, wait_s: float = WAIT_S) -> bool:
        """Take the lock, polling while the predecessor holds it; False (and carry on
        without it) if it did not let go within wait_s."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            try:  # a read-only state disk: flock works on a descriptor opened to read
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:  # none there, and none can be made: nothing to hand over
                log.warning("cannot take the bindings' handover lock %s (%s); loading them "
                            "without it", self.path, exc)
                return False
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if loop.time() >= give_up:
                    os.close(fd)
                    log.warning("the previous worker did not hand the bindings over within "
                                "%.0f s; loading them anyway", wait_s)
                    return False
                await asyncio.sleep(0.005)
                continue
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1
