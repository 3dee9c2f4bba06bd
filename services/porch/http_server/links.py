"""Direct links from a worker to the processes of `direct` HTTP bindings (docs/direct.md).

The first request for such a binding goes through the kernel as any other; once the
process answered it (it runs), the worker offers it a link: one end of a Unix stream socket pair, put on offer
under a one-time token (porch.http_server.wsdirect.Offers, this worker's own socket
`<home>/run/http-link-<pid>.sock`) and announced to the process in a DirectLink
message routed by the kernel, so only that process can take it. Once it took it, the
worker sends that process's requests on the link (porch.link.pipe frames) and reads
the answers there: no kernel in between, two hand-offs per request instead of four.

What the kernel did for such a request, the link does: a deadline (the worker's own
timer: 504 when it passes), and the answer paired with its request by id; when the
link ends (the process closed it or died), what waited on it fails as Offline with
`delivered` set (502, as when an app dies with a request), and requests go through
the kernel again until a new link is taken. An offer that is not taken (a process on
another machine, an old stub, a busy one) is not made again for OFFER_AGAIN_S.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

from porch.address import HTTP_SERVER
from porch.http_server.wsdirect import Offer, Offers
from porch.link.pipe import encode
from porch.link.pipe_end import PipeEnd
from porch.process.aio import AsyncProcess
from porch.process.message import Blob, Message, Offline, Timeout
from porch.wire import http_pb2, now_ms

log = logging.getLogger("porch.http_server")

OFFER_AGAIN_S = 30.0  # after an offer that was not taken


def link_path(run_dir: Path, pid: int) -> Path:
    return run_dir / f"http-link-{pid}.sock"


class Link(PipeEnd):
    """The worker's end of one process's link, with the requests waiting on it."""

    def __init__(self, links: Links, app: str, sock: socket.socket) -> None:
        self.links = links
        self.app = app
        # id -> (the future of its answer, its deadline's timer)
        self.pending: dict[int, tuple[asyncio.Future[Message], asyncio.TimerHandle]] = {}
        super().__init__(sock, links.loop)

    def received(self, frames: list[tuple[int, int, bytes, bytes | None]]) -> None:
        app = self.app
        for id_, _, body, blob in frames:
            entry = self.pending.pop(id_, None)
            if entry is None:
                continue  # late (its deadline passed) or forgotten (the client left)
            fut, timer = entry
            timer.cancel()
            if not fut.done():
                fut.set_result(Message(id_, app, HTTP_SERVER, False, body,
                                       Blob(blob) if blob is not None else None))

    def ended(self, why: str) -> None:
        if self.links.up.get(self.app) is self:
            del self.links.up[self.app]
        pending, self.pending = self.pending, {}
        for id_, (fut, timer) in pending.items():
            timer.cancel()
            if not fut.done():
                fut.set_exception(Offline(self.app, id_, "the process's direct link ended", delivered=True))
        log.info("direct link to %s closed (%s)%s", self.app, why,
                 f"; {len(pending)} request(s) on it failed" if pending else "")


class Links:
    """This worker's direct links, one per process that took one."""

    def __init__(self, proc: AsyncProcess, path: Path) -> None:
        self.proc = proc
        self.loop = asyncio.get_running_loop()
        self.up: dict[str, Link] = {}
        self.offered: dict[str, float] = {}  # app -> when its last offer went (monotonic)
        self._ids = 0
        self.offers = Offers(path, self._claimed, self._unclaimed)

    def request_future(self, app: str, body: bytes, timeout: float,
                       blob: Blob | None) -> tuple[int, asyncio.Future[Message]] | None:
        """Send a request on `app`'s link: its id and the future of its answer; None
        when there is no link (the caller uses the kernel, and tells `answered`)."""
        link = self.up.get(app)
        if link is None:
            return None
        self._ids += 1
        id_ = self._ids
        if not link.send(encode(id_, body, blob.bytes if blob is not None else None,
                                now_ms() + int(timeout * 1000))):
            return None  # the write found the link broken: this request never left
        fut: asyncio.Future[Message] = self.loop.create_future()
        link.pending[id_] = (fut, self.loop.call_later(timeout, self._expire, link, id_))
        return id_, fut

    def forget(self, id_: int) -> None:
        """The client left: drop the request (its answer, if one comes, is dropped)."""
        for link in self.up.values():
            entry = link.pending.pop(id_, None)
            if entry is not None:
                entry[1].cancel()
                return

    def _expire(self, link: Link, id_: int) -> None:
        entry = link.pending.pop(id_, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(Timeout(link.app, id_, "no answer on the direct link in time"))

    # ------------------------------------------------------------------ offers

    def answered(self, app: str) -> None:
        """`app` answered a request of a direct binding through the kernel: it runs,
        so a link is offered to it (unless it has one, or did not take the last offer
        in the last OFFER_AGAIN_S)."""
        if app not in self.up:
            self._offer(app)

    def _offer(self, app: str) -> None:
        now = time.monotonic()
        if now - self.offered.get(app, -OFFER_AGAIN_S) < OFFER_AGAIN_S:
            return
        self.offered[app] = now
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        token = self.offers.offer(theirs, {"link": app}, keep=mine)
        offer = http_pb2.HttpServerRequest()
        offer.direct_link.handoff_socket = str(self.offers.path)
        offer.direct_link.handoff_token = token
        try:
            self.proc.send_request(app, offer.SerializeToString())
        except Offline:  # the kernel is away: offered again at the next answer
            self.offered.pop(app, None)
            withdrawn = self.offers.withdraw(token)
            if withdrawn is not None:
                self._unclaimed(withdrawn)

    def _claimed(self, offer: Offer) -> None:
        offer.sock.close()  # the process has its own descriptor of its end now
        mine = offer.keep
        assert mine is not None
        app = str(offer.record["link"])
        old = self.up.get(app)
        if old is not None:
            old.close("replaced by a new link")
        self.up[app] = Link(self, app, mine)
        self.offered.pop(app, None)
        log.info("direct link to %s taken", app)

    def _unclaimed(self, offer: Offer) -> None:
        offer.sock.close()
        if offer.keep is not None:
            offer.keep.close()
        log.info("%s did not take a direct link; its requests go through the kernel (offered again in "
                 "%.0f s)", offer.record.get("link"), OFFER_AGAIN_S)

    def close(self) -> None:
        self.offers.close()
        for link in list(self.up.values()):
            link.close("the worker stops")
