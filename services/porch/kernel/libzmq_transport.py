"""The kernel's transport on a pyzmq ROUTER socket (`[kernel] transport = "libzmq"`).

Options follow DESIGN.md "Failure semantics": ROUTER_MANDATORY (a send to a peer that
is gone fails instead of vanishing), bounded high-water marks (a send to a peer whose
queue is full fails: the core answers Offline), LINGER 0, ZMTP heartbeats.

ZeroMQ's notification fd only says "look again": every sleep comes right after a
drain that ended with EAGAIN (which also consumed the fd's signal), and sends made
outside a drain (deadlines, deaths) are followed by another drain (`flush`).
"""

from __future__ import annotations

import os
import select
import socket
import struct
from typing import Any, cast

import zmq

from porch.kernel.transport import Conn, SendFailed, Sink

HIGH_WATER_MARK = 10_000
MAX_MSG_SIZE = 1 << 30
# Frame sets handled per wakeup before deadlines and deaths are looked at again.
BATCH = 1000
# Plain ints: pyzmq's flag enums cost a Python-level enum construction per `|`.
NOBLOCK = int(zmq.NOBLOCK)
MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


def peer_pid(frame: zmq.Frame) -> int:
    """The pid of the process at the other end of the connection `frame` came on, or 0."""
    try:
        fd = frame.get(zmq.SRCFD)
        with socket.socket(fileno=os.dup(fd)) as conn:
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid: int = struct.unpack("3i", cred)[0]
        return pid
    except (OSError, zmq.ZMQError, AttributeError):
        return 0


class LibzmqTransport:
    name = "libzmq"

    def __init__(self, endpoint: str, context: zmq.Context[Any] | None = None) -> None:
        self.endpoint = endpoint
        ctx = context or zmq.Context.instance()
        self.sock: zmq.Socket[bytes] = ctx.socket(zmq.ROUTER)
        for opt, value in (
            (zmq.LINGER, 0),
            (zmq.ROUTER_MANDATORY, 1),
            (zmq.SNDHWM, HIGH_WATER_MARK),
            (zmq.RCVHWM, HIGH_WATER_MARK),
            (zmq.HEARTBEAT_IVL, 1000),
            (zmq.HEARTBEAT_TIMEOUT, 5000),
            (zmq.HEARTBEAT_TTL, 5000),
            (zmq.MAXMSGSIZE, MAX_MSG_SIZE),
        ):
            self.sock.setsockopt(opt, value)
        self._zfd = -1
        self._epoll: select.epoll | None = None
        self._sink: Sink | None = None

    def bind(self) -> None:
        path = self.endpoint.removeprefix("ipc://")
        if self.endpoint.startswith("ipc://") and os.path.exists(path):
            os.unlink(path)  # stale socket of a previous kernel (the lock proves it)
        old_umask = os.umask(0o077)
        try:
            self.sock.bind(self.endpoint)
        finally:
            os.umask(old_umask)

    def attach(self, epoll: select.epoll, sink: Sink) -> None:
        self._sink = sink
        self._epoll = epoll
        self._zfd = cast(int, self.sock.getsockopt(zmq.FD))
        epoll.register(self._zfd, select.EPOLLIN)

    def detach(self) -> None:
        if self._epoll is not None:
            self._epoll.unregister(self._zfd)
            self._epoll = None

    def on_events(self, ready: list[tuple[int, int]]) -> bool:
        # Messages first: on a wakeup they are what someone is waiting for.
        return self._drain()

    def flush(self, sent: bool) -> bool:
        # A send may have taken the fd's signal for a message now waiting.
        return self._drain() if sent else False

    def next_timer(self) -> int | None:
        return None

    def on_timer(self, now: int) -> None:
        pass

    def _drain(self) -> bool:
        """Handle what is waiting, at most BATCH frame sets; True if more may be waiting.

        Frames are read one at a time, not with recv_multipart: pyzmq's multipart
        helpers cost ~2 us per message (an RCVMORE getsockopt per frame, enum flag
        arithmetic). The identity is copied (a small dict key). The envelope comes as a
        zmq.Frame: its .more tells whether a blob follows, and a Register's frame tells
        which connection, hence which pid, sent it. A blob stays a Frame and is
        forwarded without a copy.
        """
        sink = self._sink
        assert sink is not None
        deliver = sink.deliver
        recv = self.sock.recv
        for _ in range(BATCH):
            try:
                ident = recv(NOBLOCK)
            except zmq.Again:
                return False
            # A ROUTER always delivers the identity with at least one frame after it.
            frame = recv(NOBLOCK, copy=False)
            if not frame.more:
                deliver(ident, frame, None)
                continue
            blob = recv(NOBLOCK, copy=False)
            if not blob.more:
                deliver(ident, frame, blob)
                continue
            count = 2
            while blob.more:
                blob = recv(NOBLOCK, copy=False)
                count += 1
            sink.wrong_frame_count(ident, count)
        return True

    def send(self, conn: Conn, frame: Any, blob: Any) -> None:
        """Send [ident, envelope(, blob)].

        Under ROUTER_MANDATORY an unroutable identity or a full queue fails on the first
        frame, so nothing half-sent is left behind.
        """
        send = self.sock.send
        try:
            send(cast(bytes, conn), MORE_NOBLOCK)
            if blob is None:
                send(frame, NOBLOCK, copy=False)
            else:
                send(frame, MORE_NOBLOCK, copy=False)
                send(blob, NOBLOCK, copy=False)
        except (zmq.Again, zmq.ZMQError) as exc:
            # Gone (EHOSTUNREACH under ROUTER_MANDATORY) or its queue is full.
            raise SendFailed(str(exc)) from None

    def peer_pid(self, conn: Conn, frame: Any) -> int:
        return peer_pid(frame) if isinstance(frame, zmq.Frame) else 0

    def describe(self, conn: Conn) -> str:
        return cast(bytes, conn).hex()

    def close(self) -> None:
        self.sock.close(0)
        if self.endpoint.startswith("ipc://"):
            try:
                os.unlink(self.endpoint.removeprefix("ipc://"))
            except FileNotFoundError:
                pass
