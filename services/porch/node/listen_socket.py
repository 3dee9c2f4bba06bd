"""A listening socket held outside the http-server's keeper, so that the port outlives
the keeper too (issue 10 item 5).

The keeper holds the node's listening socket for its workers, so a worker's crash or
restart refuses no connection; the keeper's own death would close the port until
supervisord has started a new one (about half a second). With systemd socket
activation, systemd holds the socket instead (deploy/porch.socket) and nothing is
refused while the keeper is down: connections wait in the socket's backlog.

- `from_systemd()`: the socket systemd passed to this process (the sd_listen_fds
  protocol: $LISTEN_PID is our pid, $LISTEN_FDS >= 1, the first socket is fd 3). The
  variables are removed so that no child takes them for its own.
- `Holder`: `porch up`, socket-activated, runs supervisord, which closes every inherited
  descriptor of the programs it starts. So `porch up` keeps the socket and hands a copy
  to whoever connects to run/http-listen.sock (SCM_RIGHTS), as long as it runs; the
  keeper `fetch`es it there at every start. The Unix socket is 0600 in the node's 0700
  run/ and answers only the node's own Unix user (SO_PEERCRED): the same boundary as the
  rest of the home (SECURITY.md).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import MutableMapping
from pathlib import Path

from porch.node.home import NodeHome

log = logging.getLogger("porch.node")

SD_LISTEN_FDS_START = 3
_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class NotAListeningSocket(ValueError):
    pass


def holder_path(home: NodeHome) -> Path:
    return home.run_dir / "http-listen.sock"


def from_systemd(environ: MutableMapping[str, str] | None = None) -> socket.socket | None:
    """The first listening socket systemd passed to this process, or None."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    for name in _ENV:
        env.pop(name, None)
    if pid is None or count is None or pid != str(os.getpid()):
        return None
    if not count.isdigit() or int(count) < 1:
        log.warning("LISTEN_FDS=%r: no socket passed", count)
        return None
    if int(count) > 1:
        log.warning("%s sockets passed (LISTEN_FDS); serving on the first (fd %d)", count,
                    SD_LISTEN_FDS_START)
    return listening(SD_LISTEN_FDS_START)


def listening(fd: int) -> socket.socket:
    """fd as a non-blocking socket object, which must be a listening TCP socket."""
    sock = socket.socket(fileno=fd)
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise NotAListeningSocket(f"descriptor {fd} is not a TCP socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise NotAListeningSocket(f"descriptor {fd} is a socket that is not listening")
    except (OSError, NotAListeningSocket):
        sock.detach()  # not ours to close
        raise
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def owner_only_listener(path: Path, kind: int = socket.SOCK_STREAM, backlog: int = 16) -> socket.socket:
    """A Unix socket listening at `path` (a stale file there replaced) that only this
    user may connect to (0600; the node's run directory is 0700 besides)."""
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, kind)
    old = os.umask(0o177)
    try:
        server.bind(str(path))
    finally:
        os.umask(old)
    server.listen(backlog)
    return server


class Holder:
    """Hands copies of `sock` to the node's own processes that connect to `path`."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.sock = sock
        self.path = path
        self._server = owner_only_listener(path)
        self._thread = threading.Thread(target=self._serve, name="listen-holder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                    _, uid, _ = struct.unpack("3i", creds)
                    if uid != os.getuid():
                        log.warning("refused the listening socket to Unix user %d", uid)
                        continue
                    socket.send_fds(conn, [b"L"], [self.sock.fileno()])
                except OSError as exc:
                    log.warning("could not hand the listening socket over: %s", exc)

    def close(self) -> None:
        self._server.close()
        self.path.unlink(missing_ok=True)


def fetch(path: Path, timeout: float = 5.0) -> socket.socket | None:
    """A copy of the socket a `Holder` hands out at path, or None if none answers."""
    if not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            _, fds, _, _ = socket.recv_fds(conn, 16, 4)
    except OSError as exc:
        log.warning("no listening socket from %s (%s): binding the port instead", path, exc)
        return None
    if not fds:
        return None
    for extra in fds[1:]:
        os.close(extra)
    try:
        return listening(fds[0])
    except (OSError, NotAListeningSocket) as exc:
        os.close(fds[0])
        log.warning("%s handed over something unusable (%s): binding the port instead", path, exc)
        return None
