"""supervisord's XML-RPC interface on the node home's socket: the login it asks for,
and a thin client. In the ground layer because both the CLI (`porch up`, `porch
restart`) and the http-server (the node page's process states and its restart button,
the scrape's restart counts) talk to it.

supervisord's socket asks for a login (user "porch", a random password generated once
per home in state/supervisor.secret, 0600): the socket is already 0700 in a 0700
directory, but without a login supervisord logs a CRIT line at every start, and the
login is what its own supervisorctl expects.
"""

from __future__ import annotations

import http.client
import os
import secrets
import xmlrpc.client
from typing import Any

from porch.node.home import NodeHome

SUPERVISOR_USER = "porch"


def credentials(home: NodeHome, *, create: bool = False) -> tuple[str, str] | None:
    """The login of the home's supervisord socket; made on first use when `create`."""
    path = home.supervisor_secret
    try:
        return SUPERVISOR_USER, path.read_text().strip()
    except FileNotFoundError:
        if not create:
            return None
    secret = secrets.token_hex(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another `porch`
        return SUPERVISOR_USER, path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return SUPERVISOR_USER, secret


class Supervisor:
    """A thin client of supervisord's XML-RPC interface on the home's unix socket."""

    def __init__(self, home: NodeHome) -> None:
        self.home = home
        self._login: tuple[str, str] | None = None
        self._proxy: xmlrpc.client.ServerProxy | None = None

    @property
    def rpc(self) -> Any:
        # The login is read each time: `porch up` makes it after its first running() check.
        login = credentials(self.home)
        if self._proxy is None or login != self._login:
            from supervisor.xmlrpc import SupervisorTransport

            user, password = login or (None, None)
            transport = SupervisorTransport(user, password, f"unix://{self.home.supervisor_socket}")
            self._proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
            self._login = login
        return self._proxy.supervisor

    def running(self) -> bool:
        if not self.home.supervisor_socket.exists():
            return False
        try:
            state = self.rpc.getState()
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            # Not up yet (a stale socket file, a supervisord still starting): the next
            # call gets a new connection, not this one left mid-request.
            self._proxy = None
            return False
        return bool(state.get("statename") == "RUNNING")

    def processes(self) -> list[dict[str, Any]]:
        return list(self.rpc.getAllProcessInfo())

    def restart(self, program: str) -> None:
        info = self.rpc.getProcessInfo(program)
        if program == "http-server" and info["statename"] == "RUNNING":
            # The keeper restarts its worker and keeps the port open: no refused connection.
            self.rpc.signalProcess(program, "HUP")
            return
        if info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
            self.rpc.stopProcess(program, True)
        self.rpc.startProcess(program, True)

    def update(self) -> tuple[list[str], list[str], list[str]]:
        """supervisorctl's reread + update: supervisord rereads its config file, then
        programs that appeared are added (and started if autostart), programs that
        disappeared are stopped and removed, and changed ones are replaced. Returns the
        program names (added, changed, removed)."""
        [[added, changed, removed]] = self.rpc.reloadConfig()
        for name in [*removed, *changed]:
            self.rpc.stopProcessGroup(name, True)
            self.rpc.removeProcessGroup(name)
        for name in [*changed, *added]:
            self.rpc.addProcessGroup(name)
        return list(added), list(changed), list(removed)

    def shutdown(self) -> None:
        self.rpc.shutdown()
