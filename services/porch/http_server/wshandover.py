"""WebSockets admitted by a member worker, handed to the primary (docs/workers.md §4).

Apps push to a channel through `http-server:distro:sys`, whose requests only the
primary worker receives, so every open WebSocket lives in the primary. A member that
admitted an upgrade (every check passed) sends the socket itself to the primary with
SCM_RIGHTS, over a SOCK_SEQPACKET Unix socket the primary listens on
(`<home>/run/http-ws-<primary's pid>.sock`, 0600 in the 0700 run directory): one
record per socket, JSON (what opening it needs) plus the descriptor. The primary
opens it as if it had admitted it (it checks the binding and its socket limit again:
either may have changed); a member that cannot hand a socket over answers 503.
"""

from __future__ import annotations

import array
import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from porch.http_server.exchange import closing_response
from porch.node.listen_socket import owner_only_listener

log = logging.getLogger("porch.http_server")

MAX_RECORD = 256 * 1024  # JSON of one socket (the bytes a client sent after its head included)


def socket_path(run_dir: Path, primary_pid: int) -> Path:
    return run_dir / f"http-ws-{primary_pid}.sock"


def refuse(sock: socket.socket, why: str) -> None:
    """Answer 503 on an upgrade's socket that nobody can open, and close it. Never
    waits (it runs in the worker's loop): a short answer fits in a socket's buffer,
    and a client that left no room for it gets the close alone."""
    try:
        sock.setblocking(False)
        sock.send(closing_response(503, why, "Retry-After: 1\r\n"))
    except OSError:
        pass
    sock.close()


class HandoverServer:
    """The primary's end: `on_socket(sock, record)` opens each socket handed over."""

    def __init__(self, path: Path, on_socket: Callable[[socket.socket, dict[str, Any]], None]) -> None:
        self.path = path
        self.on_socket = on_socket
        self.loop = asyncio.get_running_loop()
        self.sock = owner_only_listener(path, socket.SOCK_SEQPACKET, 64)
        self.sock.setblocking(False)
        self.peers: dict[int, socket.socket] = {}
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("websocket hand-over: cannot accept a member: %s", exc)
            return
        conn.setblocking(False)
        self.peers[conn.fileno()] = conn
        self.loop.add_reader(conn.fileno(), self._record, conn)

    def _record(self, conn: socket.socket) -> None:
        fds = array.array("i")
        try:
            data, ancdata, _, _ = conn.recvmsg(MAX_RECORD, socket.CMSG_SPACE(fds.itemsize))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancdata = b"", []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        if not data:
            for fd in fds:
                os.close(fd)
            self.loop.remove_reader(conn.fileno())
            self.peers.pop(conn.fileno(), None)
            conn.close()
            return
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            log.warning("websocket hand-over: a record with %d descriptor(s); dropped", len(fds))
            return
        sock = socket.socket(fileno=fds[0])
        try:
            record = json.loads(data)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            log.warning("websocket hand-over: unreadable record (%s)", exc)
            refuse(sock, "the server could not open this websocket")
            return
        self.on_socket(sock, record)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        for conn in self.peers.values():
            self.loop.remove_reader(conn.fileno())
            conn.close()
        self.peers.clear()
        self.sock.close()
        try:
            self.path.unlink()
        except OSError:
            pass


class HandoverClient:
    """A member's end: `hand(sock, record)`; False if the primary cannot take it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock: socket.socket | None = None

    def hand(self, sock: socket.socket, record: dict[str, Any]) -> bool:
        data = json.dumps(record).encode()
        if len(data) > MAX_RECORD:
            return False
        for _ in range(2):  # a primary that restarted: connect again once
            if self.sock is None:
                try:
                    self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                    self.sock.settimeout(1.0)
                    self.sock.connect(str(self.path))
                except OSError as exc:
                    log.warning("websocket hand-over: cannot reach the primary worker at %s: %s",
                                self.path, exc)
                    self._drop()
                    return False
            try:
                self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", [sock.fileno()]))])
                return True
            except OSError as exc:
                log.info("websocket hand-over failed (%s); trying a new connection", exc)
                self._drop()
        return False

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        self._drop()
