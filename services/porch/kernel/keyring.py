"""Who may connect from another machine: the keys porch.toml declares, minus the revoked.

Pure policy, shared by two threads: libzmq's ZAP handler (pyzmq's authenticator
thread) asks `zap_allows` during every CURVE handshake; the kernel's thread asks
`grants` at registration and calls `reload` once a heartbeat interval, which re-reads
the revoked-keys file when it changed (`porch keys revoke`: no restart). The sets are
replaced whole, never changed in place, so the other thread sees the old one or the
new one.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

from porch.node.keys import read_revoked, short

# Refusals the ZAP thread noted and the kernel's thread has not logged yet (bounded:
# a flood of handshakes must not grow the kernel).
MAX_NOTED = 256


class KeyRing:
    def __init__(self, declared: dict[str, str], revoked_path: Path) -> None:
        """declared: process id -> its public key (Z85), from porch.toml."""
        self.ids = {key: pid for pid, key in declared.items()}
        self.revoked_path = revoked_path
        self.revoked: frozenset[str] = frozenset()
        self.allowed: frozenset[str] = frozenset(self.ids)
        self._stamp: tuple[int, int, int] | None = None
        # (address, key) of refused handshakes, for the kernel's thread to log.
        self.refused: deque[tuple[str, str]] = deque(maxlen=MAX_NOTED)
        self.refusals = 0
        self.reload()

    def reload(self) -> frozenset[str]:
        """Read the revoked keys again if the file changed; the keys newly revoked."""
        try:
            st = os.stat(self.revoked_path)
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return frozenset()
        self._stamp = stamp
        revoked = read_revoked(self.revoked_path)
        fresh = revoked - self.revoked
        self.revoked = revoked
        self.allowed = frozenset(self.ids) - revoked
        return fresh

    def zap_allows(self, address: str, key: str) -> bool:
        """From the ZAP thread: may this key complete a handshake?"""
        if key in self.allowed:
            return True
        self.refusals += 1
        self.refused.append((address, key))
        return False

    def grants(self, key: str, process_id: str) -> str:
        """Why a connection that proved `key` may not register `process_id` ("" if it may)."""
        if key in self.revoked:
            return f"the key {short(key)} was revoked (porch keys revoke)"
        granted = self.ids.get(key)
        if granted is None:
            return f"the key {short(key)} is not declared in porch.toml"
        if granted != process_id:
            return (f"the key {short(key)} is granted {granted}, not {process_id} "
                    "(each remote process id has its own key: porch keys new ID)")
        return ""

    def why_refused(self, key: str) -> str:
        if key in self.revoked:
            return "revoked key"
        return "unknown key"
