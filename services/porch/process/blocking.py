"""The blocking stub API, shaped like kinode_process_lib's `await_message` loop.

    import porch
    proc = porch.Process("echo:demo:sys")         # or porch.init() under `porch up`
    while True:
        msg = proc.await_message()
        if msg.is_request:
            proc.respond(msg.body)                  # answers the last request received

Messages that arrive while `send_and_await_response` waits are kept, in order, for the
next `await_message`.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections import deque
from typing import Any

import zmq

from porch.process.core import Core, Refused, Registered, Reply, expired, refused_error
from porch.process.message import (
    Blob,
    KernelUnreachable,
    Message,
    Offline,
    PorchError,
    SendError,
    Timeout,
)
from porch.wire import kernel_pb2

log = logging.getLogger("porch.process")

# A local wait ends this long after the deadline even if the kernel never says Timeout
# (it may be restarting); the kernel's own Timeout normally arrives first.
LOCAL_GRACE_S = 0.25
DEFAULT_TIMEOUT_S = 5.0


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def _as_blob(blob: Blob | bytes | str | None, mime: str | None) -> Blob | None:
    if blob is None or isinstance(blob, Blob):
        return blob
    return Blob(_as_bytes(blob), mime)


class Process:
    """A connection to the node's kernel as one process id.

    process_id defaults to $PORCH_PROCESS; the kernel endpoint to $PORCH_KERNEL, else
    the home's socket ($PORCH_HOME or ~/.porch). Waits up to connect_timeout seconds for
    the kernel and raises KernelUnreachable, or KernelRefused (bad or duplicate id).
    """

    def __init__(
        self,
        process_id: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        connect_timeout: float = 30.0,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self._core = Core.open(process_id, home, endpoint, context)
        # Waiting is a poll(2) on the two sockets' notification fds. ZeroMQ's fds only
        # say "look again": _pump always looks at a socket (EVENTS or a recv) after the
        # last operation on it and before sleeping on its fd.
        self._sock_fd = self._core.fd
        self._monitor_fd = self._core.monitor_fd
        self._fds = select.poll()
        self._fds.register(self._sock_fd, select.POLLIN)
        self._fds.register(self._monitor_fd, select.POLLIN)
        self._monitor_fds = select.poll()
        self._monitor_fds.register(self._monitor_fd, select.POLLIN)
        self._inbox: deque[Message | SendError] = deque()
        # Requests sent with expects_response whose outcome await_message reports.
        self._awaiting: dict[int, str] = {}
        self._last_request: Message | None = None
        self._last_blob: Blob | None = None
        self._refused: Refused | None = None
        self._wait_registered(connect_timeout)

    # ------------------------------------------------------------------ identity

    @property
    def our(self) -> str:
        """This process's id, "name:package:publisher"."""
        return self._core.process_id

    @property
    def node(self) -> str:
        return self._core.node

    def close(self) -> None:
        self._core.close()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending

    def send_request(
        self,
        target: str,
        body: bytes | str = b"",
        *,
        blob: Blob | bytes | str | None = None,
        mime: str | None = None,
        expects_response: float | None = None,
        metadata: str | None = None,
        rsvp: str | None = None,
        id: int | None = None,
    ) -> int:
        """Send a Request and return its id without waiting.

        With expects_response (seconds), the Response (or the SendError) is delivered
        later by await_message.
        """
        self._check_connection()
        blob_ = _as_blob(blob, mime)
        env = self._core.new_request(target, _as_bytes(body), blob=blob_,
                                     timeout=expects_response, metadata=metadata, rsvp=rsvp,
                                     id=id)
        self._core.send_envelope(env, blob_)
        if expects_response is not None:
            self._awaiting[env.id] = target
        return env.id

    def send_and_await_response(
        self,
        target: str,
        body: bytes | str = b"",
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        blob: Blob | bytes | str | None = None,
        mime: str | None = None,
        metadata: str | None = None,
    ) -> Message:
        """Send a Request and block for its Response; raise the SendError variant
        (Offline, Timeout, NoCapability) if there is none."""
        self._check_connection()
        blob_ = _as_blob(blob, mime)
        env = self._core.new_request(target, _as_bytes(body), blob=blob_,
                                     timeout=timeout, metadata=metadata)
        self._core.send_envelope(env, blob_)
        wanted = env.id
        give_up = time.monotonic() + timeout + LOCAL_GRACE_S
        while True:
            for item in self._take(give_up, wanted):
                if isinstance(item, Reply):
                    if item.error is not None:
                        raise item.error
                    assert item.message is not None
                    self._last_blob = item.message.blob
                    return item.message
            if time.monotonic() >= give_up:
                raise Timeout(target, wanted, "no answer (kernel did not report either)")

    def respond(
        self,
        body: bytes | str = b"",
        *,
        blob: Blob | bytes | str | None = None,
        mime: str | None = None,
        metadata: str | None = None,
        to: Message | None = None,
    ) -> None:
        """Answer `to`, by default the last Request await_message returned."""
        request = to or self._last_request
        if request is None or not request.is_request:
            raise PorchError("respond: no request to answer")
        self._core.send_response(request, _as_bytes(body), blob=_as_blob(blob, mime),
                                 metadata=metadata)

    # ------------------------------------------------------------------ receiving

    def await_message(self, timeout: float | None = None) -> Message:
        """The next Request, or Response to a request sent with expects_response.

        Raises the SendError variant for such a request that failed, and Timeout (with
        id 0) when `timeout` seconds pass with nothing.
        """
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            while not self._inbox:
                self._take(give_up, None)
                if give_up is not None and time.monotonic() >= give_up and not self._inbox:
                    raise Timeout(self.our, 0, f"no message within {timeout} s")
            item = self._inbox.popleft()
            if isinstance(item, SendError):
                raise item
            if item.is_request and expired(item):
                continue  # it waited here past its deadline: the requester has moved on
            if item.is_request:
                self._last_request = item
            self._last_blob = item.blob
            return item

    def get_blob(self) -> Blob | None:
        """The blob of the last message returned (Kinode's get_blob)."""
        return self._last_blob

    def registry(self, timeout: float = 5.0) -> kernel_pb2.Registry:
        """The kernel's registry and counters (what `porch status` shows)."""
        wanted = self._core.send_registry_query()
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            for item in self._take(give_up, wanted):
                if isinstance(item, Reply) and item.message is not None:
                    return kernel_pb2.Registry.FromString(item.message.body)
        raise Timeout("kernel:distro:sys", wanted, "no registry answer")

    # ------------------------------------------------------------------ internals

    def _wait_registered(self, connect_timeout: float) -> None:
        give_up = time.monotonic() + connect_timeout
        warned = False
        while not self._core.registered:
            # Looked at directly, not through its fd: the first event on a new pipe
            # does not signal the fd.
            if self._core.monitor_has_input():
                self._on_monitor([], None)
            self._pump(100)
            if self._refused is not None:
                self.close()
                raise refused_error(self._refused)
            now = time.monotonic()
            if not warned and now > give_up - connect_timeout + 2:
                log.warning("%s: waiting for the kernel at %s", self.our, self._core.endpoint)
                warned = True
            if now >= give_up:
                self.close()
                raise KernelUnreachable(
                    f"no kernel answered at {self._core.endpoint} within {connect_timeout} s "
                    "(is the node running? `porch status`)"
                )

    def _take(self, give_up: float | None, wanted: int | None) -> list[Reply]:
        """Wait (until give_up) for input; file everything; return replies to `wanted`."""
        wait_ms = -1 if give_up is None else max(0, int((give_up - time.monotonic()) * 1000))
        return self._pump(wait_ms if wait_ms >= 0 else 1000, wanted)

    def _check_connection(self) -> None:
        """Before a send: a (re)connection's Register must go out first, a lost
        connection must fail what waits. One poll(2) when nothing happened."""
        if self._monitor_fds.poll(0) and self._core.monitor_has_input():
            self._on_monitor([], None)

    def _pump(self, wait_ms: int, wanted: int | None = None) -> list[Reply]:
        """File what is waiting; if nothing is, wait up to wait_ms for input first.

        Returns the replies to `wanted`, stopping at the first (the rest stays queued in
        the socket, in order, for the next call). The monitor is looked at when the
        socket has nothing: a lost connection leaves nothing to read, and a new one is
        looked for before every send (_check_connection).
        """
        found: list[Reply] = []
        if self._file(found, wanted, False) or wait_ms == 0:
            return found
        sock_ready = False
        for fd, _ in self._fds.poll(wait_ms):
            if fd == self._sock_fd:
                sock_ready = True
            elif self._core.monitor_has_input():
                self._on_monitor(found, wanted)
        # A wakeup on the socket's fd almost always means a message: recv at once (a
        # stray one just gets EAGAIN).
        self._file(found, wanted, sock_ready)
        return found

    def _on_monitor(self, found: list[Reply], wanted: int | None) -> None:
        _, down = self._core.take_monitor_events()
        if down:
            self._fail_all("lost the connection to the kernel")
            if wanted is not None:
                found.append(Reply(wanted, None, Offline("kernel:distro:sys", wanted,
                                                         "lost the connection to the kernel")))

    def _file(self, found: list[Reply], wanted: int | None, ready: bool) -> bool:
        """Read and file messages while there are any (`ready`: skip the first check).

        Returns whether it read anything; it stops early at the reply to `wanted`.
        """
        core = self._core
        inbox = self._inbox
        progress = False
        while ready or core.has_input():
            ready = False
            item = core.recv_nowait()
            if item is False:
                return progress
            progress = True
            if isinstance(item, Message):
                inbox.append(item)
            elif isinstance(item, Reply):
                if item.id == wanted:
                    found.append(item)
                    return True
                if self._awaiting.pop(item.id, None) is not None:
                    inbox.append(item.error if item.error is not None else item.message)  # type: ignore[arg-type]
                # else: late or unsolicited; dropped
            elif isinstance(item, Refused):
                self._refused = item
                log.error("%s: kernel refused: %s: %s", self.our, item.code, item.detail)
                if core.registered or wanted is not None:
                    raise refused_error(item)
            elif isinstance(item, Registered):
                log.info("%s: registered with kernel (node %s)", self.our, item.node)
        return progress

    def _fail_all(self, detail: str) -> None:
        for id_, target in self._awaiting.items():
            self._inbox.append(Offline(target, id_, detail))
        self._awaiting.clear()
