"""The blocking stub API, shaped like kinode_process_lib's `await_message` loop.

    import porch
    proc = porch.Process("echo:demo:sys")         # under `porch up`: porch.Process()
    while True:
        msg = proc.await_message()
        if msg.is_request:
            proc.respond(msg, msg.body)

`porch.AsyncProcess` is its twin: the same operations with the same names and
arguments, the ones that wait being coroutines (tests/unit/test_twin_apis.py holds
them to it).

Messages that arrive while `send_and_await_response` waits are kept, in order, for the
next `await_message`. The calls themselves speak ZMTP on the kernel's Unix socket
(`porch.link.blocking_dealer`): there is no loop and no I/O thread. A process on
another machine reaches the kernel over TCP with CURVE (`porch.link.remote`, libzmq's
I/O thread keeping the connection alive): `endpoint="tcp://..."` or $PORCH_KERNEL, and
its key file (`keys=` or $PORCH_KEYS).
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque

from porch.address import HTTP_SERVER, KERNEL, is_reserved
from porch.link.blocking_dealer import BlockingDealer
from porch.link.remote import BlockingRemoteDealer
from porch.process.held import LINK_TAG_BYTE, OPEN_TAG_BYTE, HeldSockets
from porch.process.message import (
    Blob,
    KernelRefused,
    KernelUnreachable,
    Message,
    Offline,
    SendError,
    Timeout,
)
from porch.process.session import (
    Incoming,
    KernelSession,
    KeysArg,
    Refused,
    Registered,
    Reply,
    expired,
    refused_error,
    remote_settings,
    resolve,
)
from porch.process.shared import (
    DEFAULT_TIMEOUT_S,
    LOCAL_GRACE_S,
    BlobLike,
    answer_args,
    as_blob,
    as_bytes,
    respond_or_drop,
)
from porch.wire import kernel_pb2

log = logging.getLogger("porch.process")
UNDELIVERED_KEPT = 10_000


class Process:
    """A connection to the node's kernel as one process id.

    process_id defaults to $PORCH_PROCESS; the kernel endpoint to $PORCH_KERNEL, else
    the home's socket ($PORCH_HOME or ~/.porch). Waits up to connect_timeout seconds for
    the kernel and raises KernelUnreachable, or KernelRefused (bad or duplicate id, or a
    key the kernel refused). `keys`: the key file of a process on another machine
    (default $PORCH_KEYS), used when the endpoint is tcp:// (docs/remote.md).
    `takeover` (a node service's reserved id only): take the id over from a live
    process instead of being refused (see `porch.AsyncProcess.connect`); `member_of`
    likewise: join that OS pid's registration of the id (refused if it holds none).
    """

    def __init__(
        self,
        process_id: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        connect_timeout: float = 30.0,
        keys: KeysArg = None,
        takeover: bool = False,
        member_of: int = 0,
    ) -> None:
        pid, endpoint_, client = resolve(process_id, home, endpoint, keys)
        self._inbox: deque[Message | SendError] = deque()
        # Requests sent with expects_response whose outcome await_message reports.
        self._awaiting: dict[int, str] = {}
        # One-way requests sent with report_undelivered (the kernel says only on failure).
        self._one_way: OrderedDict[int, str] = OrderedDict()
        # The reply a call waits for (send_and_await_response, registry), once it is in.
        self._wanted: int | None = None
        self._found: Reply | None = None
        self._last_request: Message | None = None
        self._last_blob: Blob | None = None
        self._refused: KernelRefused | None = None
        self._raise: KernelRefused | None = None  # a refusal, raised once the wait returns
        self._link: BlockingDealer | BlockingRemoteDealer
        if client is not None:
            self._link = BlockingRemoteDealer(endpoint_, name=pid, **remote_settings(client))
        else:
            self._link = BlockingDealer(endpoint_, name=pid)
        self._core = KernelSession(pid, endpoint_, self._link, takeover=takeover, member_of=member_of)
        # The WebSockets this process holds itself (direct bindings), once one is offered.
        self.held_sockets: HeldSockets | None = None
        # What the http-server sends an app is HttpServerRequests, some of them offers
        # for its direct bindings (the node's services get other messages from it).
        self._takes_offers = not is_reserved(pid)
        self._core.bind(self._deliver, self._lost)
        self._link.start(self._core)
        self._wait_registered(connect_timeout)

    # ------------------------------------------------------------------ identity

    @property
    def our(self) -> str:
        """This process's id, "name:package:publisher"."""
        return self._core.process_id

    @property
    def node(self) -> str:
        return self._core.node

    @property
    def connected(self) -> bool:
        """Whether the link to the kernel is up now (sends can go out)."""
        return self._core.connected

    @property
    def last_heard(self) -> float:
        """time.monotonic() when the kernel last sent anything (0 before it ever did)."""
        return self._link.last_heard

    @property
    def can_hold_sockets(self) -> bool:
        """Whether the http-server can hand this process its WebSockets (a direct
        binding): only a process on the node's machine can be given a descriptor."""
        return isinstance(self._link, BlockingDealer)

    def accept_direct(self) -> bool:
        """Whether a binding of this process may be direct (docs/websockets.md,
        docs/direct.md): a process on the node's machine that is not a node service."""
        return self._takes_offers and self.can_hold_sockets

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
        blob: BlobLike = None,
        mime: str | None = None,
        expects_response: float | None = None,
        metadata: str | None = None,
        rsvp: str | None = None,
        id: int | None = None,
        report_undelivered: bool = False,
    ) -> int:
        """Send a Request and return its id without waiting.

        With expects_response (seconds), the Response (or the SendError) is delivered
        later by await_message. `report_undelivered` (without expects_response): if the
        kernel cannot hand it to the target, await_message raises that Offline (the
        last UNDELIVERED_KEPT such requests are remembered).
        """
        self._check_connection()
        blob_ = as_blob(blob, mime)
        env = self._core.new_request(target, as_bytes(body), blob=blob_,
                                     timeout=expects_response, metadata=metadata, rsvp=rsvp,
                                     id=id, report_undelivered=report_undelivered)
        self._core.send_envelope(env, blob_)
        if expects_response is not None:
            self._awaiting[env.id] = target
        elif report_undelivered:
            self._one_way[env.id] = target
            if len(self._one_way) > UNDELIVERED_KEPT:
                self._one_way.popitem(last=False)
        return env.id

    def send_and_await_response(
        self,
        target: str,
        body: bytes | str = b"",
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        blob: BlobLike = None,
        mime: str | None = None,
        metadata: str | None = None,
    ) -> Message:
        """Send a Request and block for its Response; raise the SendError variant
        (Offline, Timeout, NoCapability) if there is none."""
        self._check_connection()
        blob_ = as_blob(blob, mime)
        env = self._core.new_request(target, as_bytes(body), blob=blob_,
                                     timeout=timeout, metadata=metadata)
        self._core.send_envelope(env, blob_)
        reply = self._await_reply(env.id, time.monotonic() + timeout + LOCAL_GRACE_S)
        if reply is None:
            raise Timeout(target, env.id, "no answer (kernel did not report either)")
        if reply.error is not None:
            raise reply.error
        assert reply.message is not None
        self._last_blob = reply.message.blob
        return reply.message

    def respond(
        self,
        to: Message | None = None,
        body: bytes | str = b"",
        *,
        blob: BlobLike = None,
        mime: str | None = None,
        metadata: str | None = None,
    ) -> bool:
        """Answer the request `to`, by default the last Request await_message returned.

        False when the kernel was not reachable (restarting, say): the answer is
        dropped, never raised, since the requester has been told Offline by its own
        side. (The old form `respond(body)` still works, with a DeprecationWarning.)
        """
        request, body = answer_args(to, body)
        return respond_or_drop(self._core, request or self._last_request, body, blob, mime, metadata)

    # ------------------------------------------------------------------ receiving

    def await_message(self, timeout: float | None = None) -> Message:
        """The next Request, or Response to a request sent with expects_response.

        Raises the SendError variant for such a request that failed, and Timeout (with
        id 0) when `timeout` seconds pass with nothing.
        """
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            while not self._inbox:
                self._take(give_up)
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

    def registry(self, timeout: float = 5.0, process_id: str = "",
                 metrics: bool = False) -> kernel_pb2.Registry:
        """The kernel's registry and counters (what `porch status` shows); with
        `process_id`, that process's entry only (or none); with `metrics`, the kernel's
        figures too (`Registry.metrics`, for the node's services only)."""
        wanted = self._core.send_registry_query(process_id, metrics)
        reply = self._await_reply(wanted, time.monotonic() + timeout)
        if reply is None:
            raise Timeout(KERNEL, wanted, "no registry answer")
        if reply.error is not None:  # the connection was lost: Offline, as for requests
            raise reply.error
        assert reply.message is not None
        return kernel_pb2.Registry.FromString(reply.message.body)

    # ------------------------------------------------------------------ internals

    def _wait_registered(self, connect_timeout: float) -> None:
        give_up = time.monotonic() + connect_timeout
        warned = False
        while not self._core.registered:
            self._link.pump(100)
            if self._refused is not None:
                self.close()
                raise self._refused
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

    def _take(self, give_up: float | None) -> None:
        """Wait (until give_up) for input and file it."""
        wait_ms = 1000 if give_up is None else max(0, int((give_up - time.monotonic()) * 1000))
        self._link.pump(wait_ms)
        self._raise_refusal()

    def _await_reply(self, wanted: int, give_up: float) -> Reply | None:
        """Wait until give_up for the reply to request `wanted` (None: none came);
        everything else that arrives meanwhile is filed."""
        self._wanted = wanted
        try:
            while self._found is None:
                self._take(give_up)
                if self._found is None and time.monotonic() >= give_up:
                    return None
            return self._found
        finally:
            self._wanted = self._found = None

    def _check_connection(self) -> None:
        """Before a send: a (re)connection's Register must go out first, a lost
        connection must fail what waits. One poll(2) when nothing happened."""
        self._link.check()
        self._raise_refusal()

    def _raise_refusal(self) -> None:
        """A refusal that came in while registered (or waiting for a reply) is raised
        once, from the call that saw it."""
        if self._raise is not None:
            err, self._raise = self._raise, None
            raise err

    def _deliver(self, item: Incoming) -> bool:
        """File one item from the kernel. True when it is the reply being waited for."""
        if isinstance(item, Message):
            if self._takes_offers and item.source == HTTP_SERVER and item.is_request:
                tag = item.body[:1]
                if tag == LINK_TAG_BYTE:  # the stub's own, never the app's (docs/direct.md)
                    if self.can_hold_sockets:
                        self._held().link_offered(item)
                    return False
                if tag == OPEN_TAG_BYTE and self.can_hold_sockets:
                    self._held().offered(item)
                elif self.held_sockets is not None:
                    self.held_sockets.told(item)
            self._inbox.append(item)
        elif isinstance(item, Reply):
            if item.id == self._wanted:
                self._found = item
                return True
            if self._awaiting.pop(item.id, None) is not None:
                self._inbox.append(item.error if item.error is not None else item.message)  # type: ignore[arg-type]
            elif self._one_way.pop(item.id, None) is not None and item.error is not None:
                self._inbox.append(item.error)
            # else: late or unsolicited; dropped
        elif isinstance(item, Refused):
            self._refused = refused_error(item)
            log.error("%s: %s", self.our, self._refused)
            # A key refused (remote) does not heal: whichever call comes next raises it.
            if self._core.registered or self._wanted is not None or item.code == "KeyRefused":
                self._raise = self._refused
        elif isinstance(item, Registered):
            log.info("%s: registered with kernel (node %s)", self.our, item.node)
        return False

    def _held(self) -> HeldSockets:
        if self.held_sockets is None:
            assert isinstance(self._link, BlockingDealer)
            self.held_sockets = HeldSockets(self.our, self._link.loop, self._inbox.append,
                                            lambda body: self.send_request(HTTP_SERVER, body),
                                            self._link.loop.lock, blocking=True)
        return self.held_sockets

    def _lost(self) -> None:
        """The connection to the kernel ended: what waits on it fails now."""
        detail = "lost the connection to the kernel"
        for id_, target in self._awaiting.items():
            self._inbox.append(Offline(target, id_, detail))
        self._awaiting.clear()
        if self._wanted is not None and self._found is None:
            self._found = Reply(self._wanted, None, Offline(KERNEL, self._wanted, detail))
