"""The asyncio stub API: many requests in flight at once, one connection.

    proc = await porch.AsyncProcess.connect("web:demo:sys")
    proc.on_request(handle)                      # or: msg = await proc.await_message()
    reply = await proc.send_and_await_response("other:demo:sys", b"hi", timeout=5)

The twin of `porch.Process`: the same operations with the same names, arguments and
defaults, the ones that wait being coroutines (held to it by
tests/unit/test_twin_apis.py). What only asyncio can do is here alone: a handler
called for every request (`on_request`), callbacks on reconnection and on another
process's exit, and `request_future` for callers that need the id of what they await.

The loop itself speaks ZMTP to the kernel on the Unix socket
(`porch.link.asyncio_dealer`), with no I/O thread between the loop and the socket; a
process on another machine reaches the kernel over TCP with CURVE
(`porch.link.remote`: `endpoint="tcp://..."` or $PORCH_KERNEL, and its key file).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import os
from collections.abc import Callable

from porch.address import HTTP_SERVER, KERNEL, is_reserved
from porch.link.asyncio_dealer import AsyncioDealer
from porch.link.fds import BlobFile
from porch.link.remote import AsyncioRemoteDealer
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
    Exited,
    Incoming,
    KernelSession,
    KeysArg,
    Refused,
    Registered,
    Reply,
    Superseded,
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

RequestHandler = Callable[[Message], None]


class AsyncProcess:
    """A process connected to the kernel, driven by the running asyncio loop."""

    def __init__(self, core: KernelSession, loop: asyncio.AbstractEventLoop) -> None:
        self._core = core
        self._loop = loop
        self._futures: dict[int, asyncio.Future[Message]] = {}
        # Local deadlines (a fallback: the kernel's Timeout normally comes first), as a
        # heap of (when, id, target) under one loop timer for the earliest. A
        # TimerHandle per request (call_later, then cancel) was ~20% of a pipelining
        # requester's CPU. Answered entries stay in the heap until popped or rebuilt.
        self._deadlines: list[tuple[float, int, str]] = []
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = math.inf
        # What await_message returns: Requests (while no handler is set), and the
        # Responses or SendErrors of send_request(..., expects_response=...).
        self._inbox: asyncio.Queue[Message | SendError] = asyncio.Queue()
        self._handler: RequestHandler | None = None
        # Set between on_request() and the hand-over of what was queued before it, so
        # that a request arriving meanwhile waits its turn behind them.
        self._handover_pending = False
        self._registered: asyncio.Future[None] = loop.create_future()
        self._on_reconnect: list[Callable[[], None]] = []
        self._on_disconnect: list[Callable[[], None]] = []
        self._watches: dict[str, list[Callable[[str], None]]] = {}
        self._on_superseded: list[Callable[[], None]] = []
        self._on_undelivered: Callable[[SendError], None] | None = None
        self.took_over = False  # the first registration took the id over from a live process
        # The WebSockets this process holds itself (direct bindings), once one is offered.
        self.held_sockets: HeldSockets | None = None
        # What the http-server sends an app is HttpServerRequests, some of them offers
        # for its direct bindings (the node's services get other messages from it).
        self._takes_offers = not is_reserved(core.process_id)
        link = core.link
        if not isinstance(link, AsyncioDealer | AsyncioRemoteDealer):
            raise TypeError(f"AsyncProcess needs an asyncio-driven link, not {type(link).__name__}")
        core.bind(self._deliver, self._on_lost)
        link.start(loop, core)

    @classmethod
    async def connect(
        cls,
        process_id: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        connect_timeout: float = 30.0,
        keys: KeysArg = None,
        takeover: bool = False,
        member_of: int = 0,
    ) -> AsyncProcess:
        """Connect as process_id and wait until registered (KernelUnreachable after
        connect_timeout, KernelRefused for a bad or duplicate id, or a key the kernel
        refused). `keys`: the key file of a process on another machine (default
        $PORCH_KEYS), used when the endpoint is tcp://.

        `takeover` (a node service's reserved id only): take the id over from a live
        process instead of being refused; that one is told (see `on_superseded`) and
        finishes what it holds. `took_over` says whether there was one. `member_of` (a
        node service's reserved id only): join the live process (that OS pid) holding
        the id as a member: send as the id and get the answers, receive no requests
        (docs/workers.md); while that process is not registered, registering is
        retried (until connect_timeout at first)."""
        pid, endpoint_, client = resolve(process_id, home, endpoint, keys)
        link: AsyncioDealer | AsyncioRemoteDealer
        if client is not None:
            link = AsyncioRemoteDealer(endpoint_, name=pid, **remote_settings(client))
        else:
            link = AsyncioDealer(endpoint_, name=pid)
        self = cls(KernelSession(pid, endpoint_, link, takeover=takeover, member_of=member_of),
                   asyncio.get_running_loop())
        try:
            await asyncio.wait_for(asyncio.shield(self._registered), connect_timeout)
        except TimeoutError:
            self.close()
            raise KernelUnreachable(
                f"no kernel answered at {endpoint_} within {connect_timeout} s"
            ) from None
        except KernelRefused:
            self.close()
            raise
        return self

    # ------------------------------------------------------------------ identity

    @property
    def our(self) -> str:
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
        """time.monotonic() (the loop's clock) when the kernel last sent anything."""
        return self._core.link.last_heard

    @property
    def can_hold_sockets(self) -> bool:
        """Whether the http-server can hand this process its WebSockets (a direct
        binding): only a process on the node's machine can be given a descriptor."""
        return isinstance(self._core.link, AsyncioDealer)

    def accept_direct(self) -> bool:
        """Whether a binding of this process may be direct (docs/websockets.md,
        docs/direct.md): a process on the node's machine that is not a node service."""
        return self._takes_offers and self.can_hold_sockets

    def close(self) -> None:
        core = self._core
        if core.closed:
            return
        self._fail_all("process closed its connection")
        core.close()

    async def __aenter__(self) -> AsyncProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def on_request(self, handler: RequestHandler | None) -> None:
        """Call handler(msg) in the loop for every incoming Request (instead of
        await_message(), which then returns only the outcomes of send_request(...,
        expects_response=...)). An exception in the handler is logged, not raised.

        Requests that arrived before it was set (a restarted app is sent requests the
        moment it registers, while it is still binding its paths) go to the handler
        first, in order, on the loop's next turn: none is left in a queue nobody reads."""
        self._handler = handler
        if handler is not None and not self._inbox.empty() and not self._handover_pending:
            self._handover_pending = True
            self._loop.call_soon(self._hand_over_queued)

    def _hand_over_queued(self) -> None:
        self._handover_pending = False
        items: list[Message | SendError] = []
        while not self._inbox.empty():
            items.append(self._inbox.get_nowait())
        for item in items:
            if self._handler is not None and isinstance(item, Message) and item.is_request:
                if not expired(item):
                    self._call_handler(item)
            else:  # outcomes of expects_response (and requests, if the handler was unset)
                self._inbox.put_nowait(item)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Called after every re-registration (a kernel restart, say)."""
        self._on_reconnect.append(callback)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self._on_disconnect.append(callback)

    def on_superseded(self, callback: Callable[[], None]) -> None:
        """Called once when another process took this id over (or, after a kernel
        restart, holds it already): no new request comes; answer what is held, then
        close. Called in the loop, after every message that arrived before it."""
        self._on_superseded.append(callback)

    def on_undelivered(self, callback: Callable[[SendError], None] | None) -> None:
        """Called with the kernel's SendError for a request nobody waits for: a
        `report_undelivered` one it could not deliver (Offline), or one forgotten."""
        self._on_undelivered = callback

    def watch(self, process_id: str, callback: Callable[[str], None]) -> None:
        """Call callback(process_id) once, when that process's registration ends (it
        exited, was killed, or closed its connection). Survives kernel restarts."""
        callbacks = self._watches.get(process_id)
        if callbacks is None:
            callbacks = self._watches[process_id] = []
            self._core.send_watch(process_id)
        callbacks.append(callback)

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
        later by await_message, as for `porch.Process`; without, none is expected.
        `id` reuses a given id (http-client: WebSocket frames carry the id of the
        request that opened the connection, as in Kinode). `report_undelivered`: if the
        kernel cannot hand it to the target, `on_undelivered` hears it (Offline)."""
        blob_ = as_blob(blob, mime)
        if expects_response is not None:
            id_, fut = self.request_future(target, as_bytes(body), timeout=expects_response,
                                           blob=blob_, metadata=metadata, rsvp=rsvp, id=id)
            fut.add_done_callback(self._file_outcome)
            return id_
        env = self._core.new_request(target, as_bytes(body), blob=blob_, metadata=metadata,
                                     rsvp=rsvp, id=id, report_undelivered=report_undelivered)
        self._core.send_envelope(env, blob_)
        return env.id

    def _file_outcome(self, fut: asyncio.Future[Message]) -> None:
        """The outcome of a send_request(expects_response=...), for await_message."""
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self._inbox.put_nowait(fut.result())
        elif isinstance(exc, SendError):
            self._inbox.put_nowait(exc)

    def request_future(
        self,
        target: str,
        body: bytes,
        *,
        timeout: float,
        blob: Blob | BlobFile | None = None,
        metadata: str | None = None,
        rsvp: str | None = None,
        id: int | None = None,
    ) -> tuple[int, asyncio.Future[Message]]:
        """Send a Request expecting a Response; return its id and a future for it.

        The future fails with the SendError variant. Raises Offline at once when the
        kernel is not reachable. The lower-level form of `request`, for callers that
        need the id (the http-server, to forget a request whose client went away).
        """
        env = self._core.new_request(target, body, blob=blob, timeout=timeout,
                                     metadata=metadata, rsvp=rsvp, id=id)
        self._core.send_envelope(env, blob)
        fut: asyncio.Future[Message] = self._loop.create_future()
        id_ = env.id
        self._track(id_, fut, target, timeout + LOCAL_GRACE_S)
        return id_, fut

    async def send_and_await_response(
        self,
        target: str,
        body: bytes | str = b"",
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        blob: BlobLike = None,
        mime: str | None = None,
        metadata: str | None = None,
    ) -> Message:
        """Send a Request and await its Response; raise the SendError variant
        (Offline, Timeout, NoCapability) if there is none. Any number may be awaited
        at once."""
        _, fut = self.request_future(target, as_bytes(body), timeout=timeout,
                                     blob=as_blob(blob, mime), metadata=metadata)
        return await fut

    request = send_and_await_response  # the older, shorter name: the same coroutine

    def forget(self, id_: int) -> None:
        """Stop waiting for a response (its caller went away); a late one is dropped."""
        self._futures.pop(id_, None)  # its deadline entry is now stale

    def respond(
        self,
        to: Message | None = None,
        body: bytes | str = b"",
        *,
        blob: BlobLike = None,
        mime: str | None = None,
        metadata: str | None = None,
    ) -> bool:
        """Answer the request `to`. Unlike `porch.Process.respond` it has no default:
        with requests handled concurrently there is no "last" one, so leaving `to` out
        raises PorchError. False when the kernel was not reachable: the answer is
        dropped, never raised (see `porch.Process.respond`)."""
        request, body = answer_args(to, body)
        return respond_or_drop(self._core, request, body, blob, mime, metadata)

    async def registry(self, timeout: float = 5.0, process_id: str = "",
                       metrics: bool = False) -> kernel_pb2.Registry:
        """The kernel's registry and counters (what `porch status` shows); with
        `process_id`, that process's entry only (or none); with `metrics`, the kernel's
        figures too (`Registry.metrics`, for the node's services only)."""
        id_ = self._core.send_registry_query(process_id, metrics)
        fut: asyncio.Future[Message] = self._loop.create_future()
        self._track(id_, fut, KERNEL, timeout)
        msg = await fut
        return kernel_pb2.Registry.FromString(msg.body)

    # ------------------------------------------------------------------ receiving

    async def await_message(self, timeout: float | None = None) -> Message:
        """The next Request (when no on_request handler is set), or Response to a
        request sent with expects_response.

        Raises the SendError variant for such a request that failed, and Timeout (with
        id 0) when `timeout` seconds pass with nothing.
        """
        give_up = None if timeout is None else self._loop.time() + timeout
        while True:
            try:
                item = self._inbox.get_nowait()
            except asyncio.QueueEmpty:
                if give_up is None:
                    item = await self._inbox.get()
                else:
                    try:
                        item = await asyncio.wait_for(self._inbox.get(),
                                                      max(0.0, give_up - self._loop.time()))
                    except TimeoutError:
                        raise Timeout(self.our, 0, f"no message within {timeout} s") from None
            if isinstance(item, SendError):
                raise item
            if item.is_request and expired(item):
                continue  # it waited here past its deadline: the requester has moved on
            return item

    recv = await_message  # the older name: the same coroutine

    def _deliver(self, item: Incoming) -> None:
        """One decoded item from the kernel."""
        if isinstance(item, Reply):
            fut = self._futures.pop(item.id, None)
            if fut is None or fut.done():
                # Late (already timed out), forgotten, or an undelivered fire-and-forget.
                if fut is None and item.error is not None and self._on_undelivered is not None:
                    try:
                        self._on_undelivered(item.error)
                    except Exception:
                        log.exception("%s: undelivered callback failed", self.our)
                return
            if item.error is not None:
                fut.set_exception(item.error)
            else:
                assert item.message is not None
                fut.set_result(item.message)
        elif isinstance(item, Message):
            if self._takes_offers and item.source == HTTP_SERVER and item.is_request:
                tag = item.body[:1]
                if tag == LINK_TAG_BYTE:  # the stub's own, never the app's (docs/direct.md)
                    if self.can_hold_sockets:
                        self._held().link_offered(item)
                    return
                if tag == OPEN_TAG_BYTE and self.can_hold_sockets:
                    self._held().offered(item)
                elif self.held_sockets is not None:
                    self.held_sockets.told(item)
            self._file(item)
        elif isinstance(item, Registered):
            first = not self._registered.done()
            if first:
                self.took_over = item.took_over
                self._registered.set_result(None)
            else:
                log.info("%s: re-registered with kernel %s", self.our, item.boot_id)
                for pid in self._watches:  # the new kernel knows nothing of them
                    self._core.send_watch(pid)
                for cb in self._on_reconnect:
                    cb()
        elif isinstance(item, Exited):
            for watcher in self._watches.pop(item.process_id, ()):
                try:
                    watcher(item.process_id)
                except Exception:
                    log.exception("%s: watch callback for %s failed", self.our, item.process_id)
        elif isinstance(item, Superseded):
            self._superseded()
        elif isinstance(item, Refused):
            if self._core.member_of and item.code == "AlreadyRegistered" and not self._core.retired:
                # The holder is not registered (yet, or again after a kernel restart).
                self._loop.call_later(0.1, self._core.register_again)
                return
            err = refused_error(item)
            if (self._registered.done() and item.code == "AlreadyRegistered"
                    and self._on_superseded):
                # After a kernel restart our successor registered first: the same as
                # being superseded (we stop registering, and finish).
                log.info("%s: the id is held by a successor; finishing", self.our)
                self._core.retired = True
                self._superseded()
                return
            log.error("%s: %s", self.our, err)
            if not self._registered.done():
                self._registered.set_exception(err)

    def _file(self, msg: Message) -> None:
        """A message for the app: to its handler, or await_message."""
        if self._handler is not None and not self._handover_pending:
            self._call_handler(msg)
        else:  # no handler yet, or queued ones are still to be handed over first
            self._inbox.put_nowait(msg)

    def _held(self) -> HeldSockets:
        if self.held_sockets is None:
            self.held_sockets = HeldSockets(self.our, self._loop, self._file,
                                            lambda body: self.send_request(HTTP_SERVER, body))
        return self.held_sockets

    def _superseded(self) -> None:
        callbacks, self._on_superseded = self._on_superseded, []
        for cb in callbacks:
            try:
                cb()
            except Exception:
                log.exception("%s: superseded callback failed", self.our)

    def _call_handler(self, msg: Message) -> None:
        assert self._handler is not None
        try:
            self._handler(msg)
        except Exception:
            log.exception("%s: request handler failed on message %d from %s",
                          self.our, msg.id, msg.source)

    def _on_lost(self) -> None:
        """The connection to the kernel ended: what waits on it fails now."""
        log.warning("%s: lost the connection to the kernel", self.our)
        self._fail_all("lost the connection to the kernel")
        for cb in self._on_disconnect:
            cb()

    def _track(self, id_: int, fut: asyncio.Future[Message], target: str, timeout: float) -> None:
        """Wait for the answer to id_ until timeout seconds from now, then fail Timeout."""
        self._futures[id_] = fut
        when = self._loop.time() + timeout
        heap = self._deadlines
        heapq.heappush(heap, (when, id_, target))
        if len(heap) > 2 * len(self._futures) + 1000:
            # Mostly answered entries: keep the live ones (bounded by the futures).
            futures = self._futures
            self._deadlines = heap = [e for e in heap if e[1] in futures]
            heapq.heapify(heap)
        if when < self._deadline_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_at = when
        self._deadline_timer = self._loop.call_at(when, self._expire_due)

    def _expire_due(self) -> None:
        self._deadline_timer = None
        self._deadline_at = math.inf
        heap = self._deadlines
        futures = self._futures
        # The loop may run a timer up to its clock resolution early: a millisecond of
        # slack keeps that from re-arming for the same entry.
        now = self._loop.time() + 0.001
        # Due entries expire; stale ones (answered, forgotten) on top are dropped too.
        while heap and (heap[0][0] <= now or heap[0][1] not in futures):
            _, id_, target = heapq.heappop(heap)
            fut = futures.pop(id_, None)
            if fut is not None and not fut.done():
                fut.set_exception(Timeout(target, id_, "no answer (kernel did not report either)"))
        if heap:
            self._arm(heap[0][0])

    def _fail_all(self, detail: str) -> None:
        futures, self._futures = self._futures, {}
        for id_, fut in futures.items():
            if not fut.done():
                fut.set_exception(Offline("kernel:distro:sys", id_, detail))
        self._deadlines.clear()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._deadline_at = math.inf

