"""Whether the http-server can write its state, as last seen, and saying so loudly.

A full or read-only disk must not take HTTP down: the server keeps serving what it
could read, refuses what it cannot save, and tells the operator: one ERROR line when
writing starts to fail (then a reminder every `remind_s` while it lasts), a WARNING
when it works again, and the fields of `status()` in the local /status JSON, which
`porch status` prints. Every attempt to write reports here; the last one counts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("porch.http_server")

REMIND_S = 600.0


class StateHealth:
    def __init__(self, state_dir: Path, remind_s: float = REMIND_S) -> None:
        self.state_dir = state_dir
        self.remind_s = remind_s
        self.writable = True
        self.reason = ""
        self.since = 0.0  # wall clock of the first failure of this spell
        self._reminded = 0.0  # monotonic

    def failed(self, what: str, reason: str) -> None:
        """`what` (e.g. "saving bind /a:b:c/x") could not be written, because `reason`."""
        if self.writable:
            self.writable = False
            self.since = time.time()
            self._reminded = time.monotonic()
            log.error("STATE NOT WRITABLE: %s failed: %s. The http-server keeps serving "
                      "the bindings it has; binds, unbinds and logins are refused until "
                      "%s can be written again (free space, or remount it read-write; "
                      "no restart needed)", what, reason, self.state_dir)
        else:
            log.warning("state still not writable: %s failed: %s", what, reason)
        self.reason = f"{what}: {reason}"

    def succeeded(self) -> None:
        if not self.writable:
            log.warning("state writable again (it was not since %s)", _clock(self.since))
            self.writable = True
            self.reason = ""
            self.since = 0.0

    def remind(self, now: float | None = None) -> bool:
        """Log the reminder if one is due (call it periodically); whether it did."""
        now = time.monotonic() if now is None else now
        if self.writable or now - self._reminded < self.remind_s:
            return False
        self._reminded = now
        log.error("STATE STILL NOT WRITABLE since %s: %s", _clock(self.since), self.reason)
        return True

    def status(self) -> dict[str, Any]:
        """For /status: state_writable, and while it is false, why and since when."""
        out: dict[str, Any] = {"state_writable": self.writable}
        if not self.writable:
            out["state_error"] = self.reason
            out["state_error_since"] = _clock(self.since)
        return out


def _clock(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(wall))
