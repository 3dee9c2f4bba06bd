"""Handing WebSockets of `direct` bindings to their owners (docs/websockets.md).

The worker that opened such a socket (the 101 written, nothing read since) keeps it
unserved and sends the owner WebSocketOpen with the path of this worker's hand-over
socket (`<home>/run/http-ws-claim-<pid>.sock`, SOCK_SEQPACKET, 0600 in the 0700 run
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
import secrets
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from porch.node.listen_socket import owner_only_listener

log = logging.getLogger("porch.http_server")

TOKEN_BYTES = 16
CLAIM_WAIT_S = 5.0  # how long an offered socket waits for its owner before the worker serves it
MAX_RECORD = 256 * 1024
ADOPT_BATCH = 200  # descriptors per message (Linux takes at most 253 with one sendmsg)
ADOPT_WAIT_S = 2.0  # how long a replaced worker looks for its successor's socket


def claim_path(run_dir: Path, pid: int) -> Path:
    return run_dir / f"http-ws-claim-{pid}.sock"


def successor_path(run_dir: Path, own_pid: int, is_worker: Callable[[int], bool]) -> Path | None:
    """The hand-over socket of another live worker (the one that replaces this one)."""
    for path in sorted(run_dir.glob("http-ws-claim-*.sock")):
        middle = path.name[len("http-ws-claim-"):-len(".sock")]
        if middle.isdigit() and int(middle) != own_pid and is_worker(int(middle)):
            return path
    return None


def hand_held(path: Path, entries: list[dict[str, Any]], socks: list[socket.socket],
              timeout: float = 1.0) -> int:
    """Give a successor worker our descriptors of sockets their owners hold (it then
    closes them 1001 should an owner die): how many it took."""
    taken = 0
    for at in range(0, len(entries), ADOPT_BATCH):
        part, fds = entries[at:at + ADOPT_BATCH], [s.fileno() for s in socks[at:at + ADOPT_BATCH]]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
                conn.settimeout(timeout)
                conn.connect(str(path))
                conn.sendmsg([json.dumps({"adopt": part}).encode()],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
                answer = json.loads(conn.recv(MAX_RECORD) or b"{}")
        except (OSError, ValueError) as exc:
            log.info("could not hand held WebSockets to the next worker: %s", exc)
            break
        taken += int(answer.get("adopted", 0)) if isinstance(answer, dict) else 0
    return taken


def peer_pid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[0])


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
                 on_unclaimed: Callable[[Offer], None], wait_s: float = CLAIM_WAIT_S,
                 on_adopt: Callable[[list[Any], list[socket.socket]], int] | None = None,
                 may_adopt: Callable[[int], bool] = lambda pid: False) -> None:
        """`on_adopt(entries, sockets)`: a worker this one replaces hands over its
        descriptors of held sockets (accepted from a peer whose pid `may_adopt`)."""
        self.on_adopt = on_adopt
        self.may_adopt = may_adopt
        self.path = path
        self.on_claimed = on_claimed
        self.on_unclaimed = on_unclaimed
        self.wait_s = wait_s
        self.loop = asyncio.get_running_loop()
        self.waiting: dict[bytes, Offer] = {}
        self.sock = owner_only_listener(path, socket.SOCK_SEQPACKET, 64)
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
        fds = array.array("i")
        try:
            token, ancdata, _, _ = conn.recvmsg(MAX_RECORD, socket.CMSG_SPACE(ADOPT_BATCH * fds.itemsize))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            token, ancdata = b"", []
        timer.cancel()
        self.loop.remove_reader(conn.fileno())
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        with conn:
            if fds:  # descriptors come only with a hand-over from a replaced worker (a
                # claimant sends its token alone, and a token may begin with any byte)
                self._adopt(conn, token, list(fds))
                return
            offer = self.withdraw(token) if len(token) == TOKEN_BYTES else None
            if offer is None:
                self._answer(conn, {"refused": "no such socket on offer (the server serves it)"}, None)
                return
            if self._answer(conn, offer.record, offer.sock):
                self.on_claimed(offer)
            else:  # the claimant went away: as if nobody had come
                self.on_unclaimed(offer)

    def _adopt(self, conn: socket.socket, data: bytes, fds: list[int]) -> None:
        """Descriptors of held sockets from the worker this one replaces."""
        socks = [socket.socket(fileno=fd) for fd in fds]
        adopted = 0
        try:
            entries = json.loads(data)["adopt"]
            if not (self.on_adopt is not None and isinstance(entries, list) and len(entries) == len(socks)
                    and self.may_adopt(peer_pid(conn))):
                raise ValueError("not from a worker, or not one descriptor per socket")
            adopted = self.on_adopt(entries, socks)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("refused a hand-over of held WebSockets: %s", exc)
            for sock in socks:
                sock.close()
        self._answer(conn, {"adopted": adopted}, None)

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
