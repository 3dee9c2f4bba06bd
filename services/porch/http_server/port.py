"""Choosing and holding the node's HTTP port (docs/kinode.md §5, improved).

- `--port P`: bind P or fail with a message naming the next free port (Kinode panics
  with the same hint; it never falls back).
- Otherwise the port this node chose at its first start (state/port), so bookmarks
  and cookies keep working; if something else took it, fail and say so.
- First start: the first free port from 8080 up to 8998. The socket that was probed is
  the socket that is kept: there is no check-then-bind race (Kinode's has one).
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

from porch.files import write_atomic

log = logging.getLogger("porch.http_server")

FIRST_PORT = 8080
LAST_PORT = 8998


class PortBusy(Exception):
    pass


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _try(host: str, port: int) -> socket.socket | None:
    try:
        return _listen(host, port)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return None
        raise


def first_free(host: str, start: int, end: int) -> socket.socket | None:
    for port in range(start, end + 1):
        sock = _try(host, port)
        if sock is not None:
            return sock
    return None


def _next_free_hint(host: str, port: int) -> str:
    probe = first_free(host, port + 1, min(port + 1000, 65535))
    if probe is None:
        return "no free port found near it"
    free = probe.getsockname()[1]
    probe.close()
    return f"first available port found was {free}"


def open_listener(host: str, requested: int, port_file: Path) -> socket.socket:
    """The listening socket for this node, its port remembered in port_file; raises
    PortBusy with a message for people."""
    sock = probe(host, requested, port_file)
    remember(port_file, sock.getsockname()[1])
    return sock


def remember(port_file: Path, port: int) -> None:
    """Write the port down (`porch up` and `porch status` read it)."""
    if read_port(port_file) != port:
        try:
            write_atomic(port_file, f"{port}\n".encode())
        except OSError as exc:  # a full or read-only disk: serve anyway, say what is lost
            log.error("cannot remember the port %d in %s (%s): the next start may choose "
                      "another one", port, port_file, exc)


def probe(host: str, requested: int, port_file: Path) -> socket.socket:
    """Bind the port this node should use (see the module docstring) without recording
    it. `porch up` probes first so that a busy port fails the command, not a service."""
    if requested:
        sock = _try(host, requested)
        if sock is None:
            raise PortBusy(f"couldn't bind {requested}; {_next_free_hint(host, requested)}. "
                           "Set an available port with --port and try again.")
    else:
        remembered = read_port(port_file)
        if remembered is not None:
            sock = _try(host, remembered)
            if sock is None:
                raise PortBusy(
                    f"this node's port {remembered} (remembered in {port_file}) is busy; "
                    f"{_next_free_hint(host, remembered)}. Free it, or choose another with "
                    "--port (the new port is then remembered)."
                )
        else:
            sock = first_free(host, FIRST_PORT, LAST_PORT)
            if sock is None:
                raise PortBusy(f"couldn't bind any ports between {FIRST_PORT} and {LAST_PORT + 1}. "
                               "Set an available port with --port and try again.")
    return sock


def read_port(port_file: Path) -> int | None:
    """The port remembered in port_file (<home>/state/port), None if there is none;
    `porch status` and `porch up` read it too."""
    try:
        return int(port_file.read_text().strip())
    except (OSError, ValueError):
        return None
