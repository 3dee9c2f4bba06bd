"""A process that must not outlive the one that started it (Linux's PR_SET_PDEATHSIG).

- The http-server's worker dies with its keeper: it must not hold the port alone.
- An app run by the launcher's relay dies with the launcher (`kill -9` of either ends both).
- A program supervisord runs (the services, the launcher) dies with supervisord: when
  supervisord itself is killed, the node is gone, and programs left behind in process
  groups of their own would hold the port and the kernel's socket against the next
  `porch up` (docs/restarts.md).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int, expected_parent: int | None = None) -> None:
    """Be sent `sig` when the parent (the thread that forked this process) exits. If the
    parent is already gone (not `expected_parent`, default the parent now), exit now:
    the signal would never come."""
    parent = os.getppid() if expected_parent is None else expected_parent
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig)
    except OSError:
        return
    if os.getppid() != parent:
        os._exit(1)


def parent_is_supervisord() -> bool:
    """Whether this process was started by supervisord (not by hand, a test, systemd)."""
    try:
        cmdline = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return False
    return b"supervisord" in cmdline
