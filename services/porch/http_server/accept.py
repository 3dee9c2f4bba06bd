"""Accepting connections within limits, for the worker's `Server`.

An accept handler needs to avoid two failure modes a gateway cannot afford (Tornado's
had both):

- no bound on open connections: idle or slow clients can hold every file descriptor
  the worker may open (`idle_timeout_s` bounds how long, not how many);
- at that point `accept()` fails with EMFILE, the error escapes the handler, asyncio
  logs it, and since the listening socket stays readable the loop spins on it,
  logging at full speed, until descriptors free up.

`Acceptor` replaces it: past `max_connections` open HTTP connections a new one is
answered 503 (Retry-After: 1) and closed at once, and when the process is out of
descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM) it stops watching the listening socket
for a moment (the kernel's backlog holds the clients meanwhile) and logs once a
second at most. `raise_open_files_limit` lifts the worker's soft RLIMIT_NOFILE to the
hard one at start, so the default limits fit in it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
from collections.abc import Callable
from typing import Any

from porch.http_server.exchange import closing_response
from porch.throttle import Every

log = logging.getLogger("porch.http_server")

PAUSE_S = 0.1  # out of descriptors: look at the listening socket again after this
ACCEPTS_PER_WAKEUP = 128  # as Tornado: let other work run between bursts of clients
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}



def raise_open_files_limit() -> int:
    """Set the soft limit on open files to the hard one (as far as allowed); returns
    the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class Acceptor:
    """Accepts connections on one listening socket and hands them to `on_connection`,
    refusing them (503) while `open_count()` is at `max_connections`."""

    def __init__(self, sock: socket.socket, on_connection: Callable[[socket.socket, Any], None],
                 open_count: Callable[[], int], max_connections: int) -> None:
        self.sock = sock
        self.on_connection = on_connection
        self.open_count = open_count
        self.max_connections = max_connections
        self.loop = asyncio.get_running_loop()
        self._pause: asyncio.TimerHandle | None = None
        self.watching = False
        self.stopped = False
        self._busy_log = Every()
        self._exhausted_log = Every()

    def start(self) -> None:
        if not self.stopped and not self.watching:
            self.loop.add_reader(self.sock.fileno(), self._ready)
            self.watching = True

    def stop(self) -> None:
        """Stop accepting (Server.stop calls this, then closes the socket)."""
        self.stopped = True
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        if self.watching:
            self.loop.remove_reader(self.sock.fileno())
            self.watching = False

    def _ready(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            if self.stopped:
                return
            try:
                conn, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                self._out_of_descriptors(exc)
                return
            if self.open_count() >= self.max_connections:
                self._refuse(conn, address)
                continue
            self.on_connection(conn, address)

    def _refuse(self, conn: socket.socket, address: Any) -> None:
        """503 and close, without reading the request: it costs one descriptor for a
        moment. What the client already sent is read first, so that closing sends a
        FIN (the client reads the 503), not a reset."""
        try:
            conn.setblocking(False)
            conn.send(closing_response(503, "too many connections; try again", "Retry-After: 1\r\n"))
            conn.recv(65536)
        except OSError:
            pass
        finally:
            conn.close()
        refused = self._busy_log.due()
        if refused:
            log.warning("max_connections (%d) reached: refused %d connection(s) with 503, the "
                        "last from %s", self.max_connections, refused, address)

    def _out_of_descriptors(self, exc: OSError) -> None:
        """Stop watching the listening socket for PAUSE_S: retrying at once would spin."""
        if self.watching:
            self.loop.remove_reader(self.sock.fileno())
            self.watching = False
        self._pause = self.loop.call_later(PAUSE_S, self._resume)
        failed = self._exhausted_log.due()
        if failed:
            log.error("cannot accept connections: %s (open HTTP connections: %d); pausing "
                      "accepts for %.1f s at a time (%d time(s) since the last line)",
                      exc.strerror or exc, self.open_count(), PAUSE_S, failed)

    def _resume(self) -> None:
        self._pause = None
        self.start()
