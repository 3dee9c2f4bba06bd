"""Handing WebSockets of `direct` bindings to their owners (docs/websockets.md).

The worker that opened such a socket (the 101 written, nothing read since) keeps it
unserved and sends the owner WebSocketOpen with the path of this worker's hand-over
socket (`<home>/run/http-ws-claim-<pid>.sock`, SOCK_SEQPACKET, owner-only (0700) in the 0700 run
directory) and a one-time token. The owner's stub connects, sends the token, and gets
one record (JSON: the channel id, the limits, the bytes the client sent after its
handshake) with the socket's descriptor (SCM_RIGHTS). A token is good once, for one
socket, until the worker stops waiting (`Offers.wait_s`); after that the worker
serves the socket itself and answers a late claim with a refusal, so that the stub
leaves it to the worker. Only the process the kernel delivered the open to has the
token; the run directory keeps other users away from the socket file.
"""

from __future__ import annotations

import array
import asyncio
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("porch.http_server")

TOKEN_BYTES = 16
CLAIM_WAIT_S = 5.0  # how long an offered socket waits for its owner before the worker serves it


def claim_path(run_dir: Path, pid: int) -> Path:
    return run_dir / f"http-ws-claim-{pid}.sock"


class Offer:
    """A socket waiting for its owner (`keep`: what the offerer keeps with it, e.g. the
    other end of a socket pair)."""

    __slots__ = ("keep", "record", "sock", "timer", "token")

    def __init__(self, sock: socket.socket, token: bytes, record: dict[str, Any],
                 keep: socket.socket | None = None) -> None:
        self.sock = sock
        self.token = token
        self.record = record
        self.keep = keep
        self.timer: asyncio.TimerHandle | None = None


class Offers:
    """The worker's hand-over socket and the sockets on offer. `on_unclaimed(offer)`
    runs when an offer's wait ends without a claim; `on_claimed(offer)` when its owner
    took it."""

    def __init__(self, path: Path, on_claimed: Callable[[Offer], None],
                 on_unclaimed: Callable[[Offer], None], wait_s: float = CLAIM_WAIT_S) -> None:
        self.path = path
        self.on_claimed = on_claimed
        self.on_unclaimed = on_unclaimed
        self.wait_s = wait_s
        self.loop = asyncio.get_running_loop()
        self.waiting: dict[bytes, Offer] = {}
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o077)
        try:
            self.sock.bind(str(path))
        finally:
            os.umask(old)
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def offer(self, sock: socket.socket, record: dict[str, Any], keep: socket.socket | None = None) -> bytes:
        """Put `sock` on offer; the token that claims it."""
        token = secrets.token_bytes(TOKEN_BYTES)
        offer = Offer(sock, token, record, keep)
        self.waiting[token] = offer
        offer.timer = self.loop.call_later(self.wait_s, self._expire, token)
        return token

    def withdraw(self, token: bytes) -> Offer | None:
        offer = self.waiting.pop(token, None)
        if offer is not None and offer.timer is not None:
            offer.timer.cancel()
        return offer

    def _expire(self, token: bytes) -> None:
        offer = self.waiting.pop(token, None)
        if offer is not None:
            self.on_unclaimed(offer)

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("websocket hand-over to an app: cannot accept: %s", exc)
            return
        conn.setblocking(False)
        fd = conn.fileno()
        # A claimant sends its token with its connect; one that does not is dropped.
        timer = self.loop.call_later(1.0, self._drop, conn)
        self.loop.add_reader(fd, self._claim, conn, timer)

    def _drop(self, conn: socket.socket) -> None:
        self.loop.remove_reader(conn.fileno())
        conn.close()

    def _claim(self, conn: socket.socket, timer: asyncio.TimerHandle) -> None:
        try:
            token = conn.recv(TOKEN_BYTES + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            token = b""
        timer.cancel()
        self.loop.remove_reader(conn.fileno())
        with conn:
            offer = self.withdraw(token) if len(token) == TOKEN_BYTES else None
            if offer is None:
                self._answer(conn, {"refused": "no such socket on offer (the server serves it)"}, None)
                return
            if self._answer(conn, offer.record, offer.sock):
                self.on_claimed(offer)
            else:  # the claimant went away: as if nobody had come
                self.on_unclaimed(offer)

    @staticmethod
    def _answer(conn: socket.socket, record: dict[str, Any], sock: socket.socket | None) -> bool:
        data = json.dumps(record).encode()
        try:
            if sock is None:
                conn.send(data)
            else:
                fds = array.array("i", [sock.fileno()])
                conn.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            return True
        except OSError as exc:
            log.info("websocket hand-over to an app failed: %s", exc)
            return False

    def close(self) -> None:
        """Stop offering: what waits is served by the worker (on_unclaimed) at once."""
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        try:
            self.path.unlink()
        except OSError:
            pass
        for token in list(self.waiting):
            self._expire(token)
