"""Direct HTTP links in-process (docs/direct.md, issue 12), both ends on a real asyncio
loop with real Unix sockets: the worker's `porch.http_server.links.Links` with a fake
stub (it records the DirectLink offers it is asked to send, and can be made to raise
Offline), claimed with the stub's own blocking client (`porch.process.held.claim`, run
off the loop as the stub does); the process's `porch.process.direct.LinkEnd` on a
socket pair; `respond_or_drop` for a request that came on a link; and the gateway's
choice between a link and the kernel, with fake links.

Pinned: when a link is offered (after an answer through the kernel, once per
OFFER_AGAIN_S, not to an app that has one) and what a failed offer leaves; the
frames a request and its answer are (id, deadline, body, blob) and how answers are
paired with requests; the worker's deadline; how a link ends (the requests on it fail
as Offline, delivered) and what comes after; large writes on both ends; answers from
several threads of a blocking process. The real path (a node, its apps) is
tests/integration/test_http_direct.py."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from porch.http_server import actions
from porch.http_server import links as links_module
from porch.http_server.bindings import BindingTable, HttpBinding
from porch.http_server.gateway import Gateway
from porch.http_server.links import OFFER_AGAIN_S, Links, link_path
from porch.http_server.settings import HttpServerSettings
from porch.http_server.wsdirect import CLAIM_WAIT_S
from porch.link.fds import BlobFile, memfd_blob
from porch.link.pipe import HEADER, MAX_FRAME, FrameReader, encode
from porch.process import direct as direct_module
from porch.process.direct import LinkEnd
from porch.process.held import claim
from porch.process.message import Blob, Message, Offline, Timeout
from porch.process.shared import respond_or_drop
from porch.wire import http_pb2, now_ms
from support.http_fakes import FakeExchange, fake_auth
from support.peers import PeerEnd, until

APP = "app:pkg:pub.os"
OTHER = "other:pkg:pub.os"
HTTP_SERVER = "http-server:distro:sys"
Frame = tuple[int, int, bytes, bytes | None]


def run_loop(test: Callable[[], Awaitable[None]]) -> None:
    """Run `test` on a fresh loop; nothing may reach the loop's exception handler
    (a callback that raised, a failed future nobody looked at)."""
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        await test()
    asyncio.run(main())
    assert errors == []


# ====================================================================== the worker's end

class FakeProc:
    """The worker's stub as Links uses it: send_request(target, body) recorded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.offline = False

    def send_request(self, target: str, body: bytes) -> int:
        if self.offline:
            raise Offline(target, 0, "the kernel is away")
        self.sent.append((target, body))
        return len(self.sent)


class Clock:
    """links.time, with a monotonic clock the test sets (the loop keeps the real one)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


class ProcEnd(PeerEnd):
    """The process's end of a link, read without blocking the loop: the frames."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.reader = FrameReader()
        self.frames: list[Frame] = []

    def took(self, chunk: bytes) -> None:
        self.frames += self.reader.feed(chunk)

    async def take(self, count: int) -> list[Frame]:
        """The next `count` frames the worker sent."""
        def enough() -> bool:
            self.pull()
            return len(self.frames) >= count
        await until(enough, f"{count} frame(s) from the worker")
        got, self.frames = self.frames[:count], self.frames[count:]
        return got

    async def ended(self) -> None:
        def eof() -> bool:
            self.pull()
            return self.eof
        await until(eof, "the worker to close the link")

    def answer(self, id_: int, body: bytes, blob: bytes | None = None) -> None:
        self.sock.sendall(encode(id_, body, blob))


class Bed:
    def __init__(self, path: Path) -> None:
        self.proc = FakeProc()
        self.links = Links(self.proc, path)  # type: ignore[arg-type]
        self.path = path
        self.socks: list[socket.socket] = []
        self.offered: list[tuple[socket.socket, socket.socket | None]] = []  # (theirs, mine) per offer
        real_offer = self.links.offers.offer

        def offer(sock: socket.socket, record: dict[str, Any], keep: socket.socket | None = None) -> bytes:
            self.offered.append((sock, keep))
            return real_offer(sock, record, keep)
        self.links.offers.offer = offer  # type: ignore[method-assign]

    def offers(self) -> list[tuple[str, http_pb2.HttpServerRequest]]:
        """What the stub was asked to send (target, the request parsed)."""
        return [(target, http_pb2.HttpServerRequest.FromString(body)) for target, body in self.proc.sent]

    def last_token(self) -> bytes:
        return self.offers()[-1][1].direct_link.handoff_token

    async def claim(self, token: bytes) -> ProcEnd:
        """As the stub takes the link (porch.process.held.claim), off the loop."""
        sock, record = await asyncio.get_running_loop().run_in_executor(None, claim, str(self.path), token)
        self.socks.append(sock)
        assert record == {"link": APP}
        return ProcEnd(sock)

    async def link(self) -> ProcEnd:
        """APP answered through the kernel, was offered a link and took it."""
        self.links.answered(APP)
        end = await self.claim(self.last_token())
        await until(lambda: APP in self.links.up, "the link to be up")
        return end

    def close(self) -> None:
        if self.links.offers.sock.fileno() != -1:
            self.links.close()
        for sock in self.socks:
            sock.close()


def run(tmp_path: Path, test: Callable[[Bed], Awaitable[None]]) -> None:
    async def main() -> None:
        bed = Bed(tmp_path / "link.sock")
        try:
            await test(bed)
        finally:
            bed.close()
    run_loop(main)


def closed(sock: socket.socket | None) -> bool:
    return sock is not None and sock.fileno() == -1


# ---------------------------------------------------------------------- offers

def test_the_hand_over_socket_is_named_after_the_worker_pid(tmp_path: Path) -> None:
    assert link_path(tmp_path, 4321) == tmp_path / "http-link-4321.sock"
    assert OFFER_AGAIN_S == 30.0 and CLAIM_WAIT_S == 5.0


def test_without_a_link_request_future_is_none_and_nothing_is_sent(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        assert bed.links.request_future(APP, b"body", 5.0, Blob(b"blob")) is None
        assert bed.links.up == {} and bed.proc.sent == []

    run(tmp_path, test)


def test_an_answer_through_the_kernel_offers_exactly_one_direct_link(tmp_path: Path) -> None:
    """The offer is a DirectLink naming the Offers' hand-over socket and a 16-byte
    token that claims the other end of a socket pair (record {"link": app}); requests
    still go through the kernel until it is taken."""
    async def test(bed: Bed) -> None:
        bed.links.answered(APP)
        [(target, request)] = bed.offers()
        assert target == APP and request.WhichOneof("request") == "direct_link"
        assert request.direct_link.handoff_socket == str(bed.path) == str(bed.links.offers.path)
        token = request.direct_link.handoff_token
        assert len(token) == 16
        [offer] = bed.links.offers.waiting.values()
        assert offer.token == token and offer.record == {"link": APP}
        assert (offer.sock, offer.keep) == bed.offered[0] and offer.keep is not None
        assert bed.links.request_future(APP, b"", 1.0, None) is None, "not taken yet"

    run(tmp_path, test)


def test_an_offer_is_not_made_again_within_offer_again_s_and_is_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted from the last offer, on the monotonic clock: the first goes at once
    (even at clock 0), none at +29.5 s, the next at exactly +30 s, with a new token;
    each app has its own count."""
    clock = Clock(0.0)
    monkeypatch.setattr(links_module, "time", clock)

    async def test(bed: Bed) -> None:
        bed.links.answered(APP)
        assert len(bed.proc.sent) == 1
        clock.now = 29.5
        bed.links.answered(APP)
        bed.links.answered(APP)
        assert len(bed.proc.sent) == 1
        bed.links.answered(OTHER)
        assert [target for target, _ in bed.proc.sent] == [APP, OTHER]
        clock.now = 30.0
        bed.links.answered(APP)
        assert [target for target, _ in bed.proc.sent] == [APP, OTHER, APP]
        first, second = bed.offers()[0][1], bed.offers()[2][1]
        assert first.direct_link.handoff_token != second.direct_link.handoff_token
        assert bed.links.offered == {APP: 30.0, OTHER: 29.5}

    run(tmp_path, test)


def test_an_app_with_a_link_is_not_offered_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(100.0)
    monkeypatch.setattr(links_module, "time", clock)

    async def test(bed: Bed) -> None:
        await bed.link()
        assert bed.links.offered == {}, "taken: its offer time is dropped"
        clock.now += 1000
        bed.links.answered(APP)
        assert len(bed.proc.sent) == 1 and bed.links.offers.waiting == {}

    run(tmp_path, test)


def test_an_offer_the_stub_cannot_send_is_withdrawn_and_made_again_at_the_next_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """send_request raising Offline (the kernel is away): the offer is withdrawn at
    once and both ends of its socket pair are closed; it does not count as an offer
    (none reached the process): the next answer makes one."""
    clock = Clock(50.0)
    monkeypatch.setattr(links_module, "time", clock)

    async def test(bed: Bed) -> None:
        bed.proc.offline = True
        bed.links.answered(APP)
        [(theirs, mine)] = bed.offered
        assert closed(theirs) and closed(mine)
        assert bed.links.offers.waiting == {} and bed.links.up == {} and bed.proc.sent == []
        assert bed.links.offered == {}
        bed.proc.offline = False
        clock.now = 51.0
        bed.links.answered(APP)
        assert len(bed.proc.sent) == 1 and len(bed.offered) == 2
        assert bed.links.offered == {APP: 51.0}

    run(tmp_path, test)


def test_an_offer_not_taken_in_its_wait_is_closed_and_its_token_refused(tmp_path: Path) -> None:
    """Offers.wait_s passes (a stub that cannot take it): both ends are closed, a
    late claim is refused, and requests stay on the kernel."""
    async def test(bed: Bed) -> None:
        bed.links.offers.wait_s = 0.01
        bed.links.answered(APP)
        [(theirs, mine)] = bed.offered
        await until(lambda: closed(theirs) and closed(mine), "the offer to expire")
        assert bed.links.offers.waiting == {} and bed.links.up == {}
        with pytest.raises(Exception, match="no such socket on offer"):
            await bed.claim(bed.last_token())
        assert bed.links.request_future(APP, b"", 1.0, None) is None

    run(tmp_path, test)


# ---------------------------------------------------------------------- requests on a link

def test_a_request_is_a_frame_on_the_link_and_its_answer_resolves_the_future(tmp_path: Path) -> None:
    """Frame: id (1, then 2: the worker's own count), deadline now_ms() + timeout in
    ms, the body, the blob's bytes (none for no blob). The answer with that id is a
    Message from the app to the http-server, a response, with the answer's body and
    blob; the worker's socket end of the pair was closed once handed over."""
    async def test(bed: Bed) -> None:
        end = await bed.link()
        [(theirs, mine)] = bed.offered
        assert closed(theirs) and not closed(mine)
        assert bed.links.offers.waiting == {}
        before = now_ms()
        sent = bed.links.request_future(APP, b"request body", 2.5, Blob(b"request blob", "text/plain"))
        after = now_ms()
        assert sent is not None
        id_, fut = sent
        assert id_ == 1
        [(got_id, deadline, body, blob)] = await end.take(1)
        assert (got_id, body, blob) == (1, b"request body", b"request blob")
        assert before + 2500 <= deadline <= after + 2500
        end.answer(1, b"answer body", b"answer blob")
        msg = await asyncio.wait_for(fut, 10)
        assert msg == Message(1, APP, HTTP_SERVER, False, b"answer body", Blob(b"answer blob"))
        assert msg.is_request is False and msg.via is None and msg.metadata is None
        assert bed.links.up[APP].pending == {}

        sent = bed.links.request_future(APP, b"", 0.25, None)
        assert sent is not None and sent[0] == 2
        [(got_id, _, body, blob)] = await end.take(1)
        assert (got_id, body, blob) == (2, b"", None)
        end.answer(2, b"no blob")
        assert await asyncio.wait_for(sent[1], 10) == Message(2, APP, HTTP_SERVER, False, b"no blob", None)

    run(tmp_path, test)


def test_an_answer_for_an_unknown_id_is_ignored(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        end = await bed.link()
        sent = bed.links.request_future(APP, b"q", 5.0, None)
        assert sent is not None
        end.answer(999, b"not for anything")
        end.answer(0, b"nor this")
        end.answer(1, b"the answer")
        msg = await asyncio.wait_for(sent[1], 10)
        assert (msg.id, msg.body) == (1, b"the answer")
        end.answer(1, b"a second answer to the same request")
        await asyncio.sleep(0.01)
        assert APP in bed.links.up and not bed.links.up[APP].closed

    run(tmp_path, test)


def test_two_requests_answered_in_reverse_order_each_get_their_own_answer(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        end = await bed.link()
        first = bed.links.request_future(APP, b"first", 5.0, None)
        second = bed.links.request_future(APP, b"second", 5.0, Blob(b"2"))
        assert first is not None and second is not None
        assert [(f[0], f[2], f[3]) for f in await end.take(2)] == [(1, b"first", None), (2, b"second", b"2")]
        end.sock.sendall(encode(2, b"to second", b"b2") + encode(1, b"to first", None))
        one, two = await asyncio.wait_for(asyncio.gather(first[1], second[1]), 10)
        assert one == Message(1, APP, HTTP_SERVER, False, b"to first", None)
        assert two == Message(2, APP, HTTP_SERVER, False, b"to second", Blob(b"b2"))

    run(tmp_path, test)


def test_an_answer_split_across_reads_resolves_once_whole(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        end = await bed.link()
        sent = bed.links.request_future(APP, b"q", 5.0, None)
        assert sent is not None
        frame = encode(1, b"split answer", b"its blob")
        end.sock.sendall(frame[:10])
        await asyncio.sleep(0.01)
        assert not sent[1].done()
        end.sock.sendall(frame[10:])
        assert (await asyncio.wait_for(sent[1], 10)).blob == Blob(b"its blob")

    run(tmp_path, test)


# ---------------------------------------------------------------------- deadline, forget

def test_a_request_not_answered_in_time_fails_timeout_and_its_late_answer_is_dropped(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        end = await bed.link()
        late = bed.links.request_future(APP, b"slow", 0.05, None)
        other = bed.links.request_future(APP, b"other", 30.0, None)
        assert late is not None and other is not None
        with pytest.raises(Timeout) as failed:
            await asyncio.wait_for(late[1], 10)
        assert (failed.value.target, failed.value.id, failed.value.delivered) == (APP, 1, False)
        assert failed.value.detail == "no answer on the direct link in time"
        assert list(bed.links.up[APP].pending) == [2]
        end.answer(1, b"too late")
        end.answer(2, b"in time")
        assert (await asyncio.wait_for(other[1], 10)).body == b"in time"
        assert bed.links.up[APP].pending == {} and not bed.links.up[APP].closed

    run(tmp_path, test)


def test_forget_cancels_the_deadline_and_drops_a_later_answer(tmp_path: Path) -> None:
    """The client left: the future is left as it is (nobody waits on it), its timer
    cancelled, its answer dropped; forgetting an unknown id does nothing."""
    async def test(bed: Bed) -> None:
        end = await bed.link()
        sent = bed.links.request_future(APP, b"q", 0.05, None)
        assert sent is not None
        id_, fut = sent
        timer = bed.links.up[APP].pending[id_][1]
        bed.links.forget(id_)
        bed.links.forget(12345)
        assert timer.cancelled() and bed.links.up[APP].pending == {}
        end.answer(id_, b"nobody wants this")
        await asyncio.sleep(0.1)  # past its timeout too
        assert not fut.done()
        fut.cancel()

    run(tmp_path, test)


# ---------------------------------------------------------------------- how a link ends

def test_the_process_closing_its_end_fails_what_waits_as_offline_delivered_and_a_new_offer_follows(
        tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        end = await bed.link()
        link = bed.links.up[APP]
        sent = [bed.links.request_future(APP, b"q", 30.0, None) for _ in range(2)]
        timers = [entry[1] for entry in link.pending.values()]
        await end.take(2)
        end.sock.close()
        for item, id_ in zip(sent, (1, 2), strict=True):
            assert item is not None
            with pytest.raises(Offline) as failed:
                await asyncio.wait_for(item[1], 10)
            assert (failed.value.target, failed.value.id, failed.value.delivered) == (APP, id_, True)
            assert failed.value.detail == "the process's direct link ended"
        assert all(timer.cancelled() for timer in timers)
        assert link.closed and closed(link.sock) and bed.links.up == {}
        assert bed.links.request_future(APP, b"q", 1.0, None) is None
        bed.links.answered(APP)
        assert len(bed.proc.sent) == 2, "offered again at once (the taken offer's time was dropped)"
        await bed.claim(bed.last_token())
        await until(lambda: APP in bed.links.up, "the new link")
        assert bed.links.up[APP] is not link

    run(tmp_path, test)


@pytest.mark.parametrize("garbage", [
    pytest.param(HEADER.pack(5, 1, 0, 0, 0), id="length-shorter-than-the-header"),
    pytest.param(HEADER.pack(21, 1, 0, 1, 0), id="body-longer-than-the-frame"),
    pytest.param(HEADER.pack(MAX_FRAME + 1, 1, 0, 0, 0), id="length-over-max-frame"),
])
def test_garbage_from_the_process_ends_the_link_the_same_way(tmp_path: Path, garbage: bytes) -> None:
    async def test(bed: Bed) -> None:
        end = await bed.link()
        sent = bed.links.request_future(APP, b"q", 30.0, None)
        assert sent is not None
        end.sock.sendall(garbage)
        with pytest.raises(Offline) as failed:
            await asyncio.wait_for(sent[1], 10)
        assert (failed.value.target, failed.value.id, failed.value.delivered) == (APP, 1, True)
        assert bed.links.up == {}
        await end.ended()
        assert [f[0] for f in end.frames] == [1]
        bed.links.answered(APP)
        assert len(bed.proc.sent) == 2

    run(tmp_path, test)


async def settled(sent: tuple[int, asyncio.Future[Message]] | None) -> BaseException | None:
    """The outcome of a request_future (None: it was not sent on a link)."""
    if sent is None:
        return None
    try:
        await asyncio.wait_for(sent[1], 10)
    except Exception as exc:
        return exc
    return None


def test_a_send_on_a_link_whose_process_end_is_gone_ends_the_link(tmp_path: Path) -> None:
    """The process closed its end, and a request came before the worker read the EOF:
    the send breaks (EPIPE) and the link ends as if the EOF had been read."""
    async def test(bed: Bed) -> None:
        end = await bed.link()
        link = bed.links.up[APP]
        end.sock.close()
        sent = bed.links.request_future(APP, b"q", 30.0, None)  # before the loop reads the EOF
        assert link.closed and bed.links.up == {}
        await settled(sent)
        assert bed.links.request_future(APP, b"q", 30.0, None) is None

    run(tmp_path, test)


def test_a_request_whose_send_breaks_is_not_reported_as_delivered(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        end = await bed.link()
        end.sock.close()
        sent = bed.links.request_future(APP, b"q", 30.0, None)  # before the loop reads the EOF
        failed = await settled(sent)
        assert sent is None or (isinstance(failed, Offline) and not failed.delivered), repr(failed)

    run(tmp_path, test)


def test_a_second_link_for_the_same_app_replaces_the_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two offers out at once (OFFER_AGAIN_S 0), both taken: the second replaces the
    first, whose requests fail Offline delivered and whose process end sees EOF;
    requests then go on the second."""
    monkeypatch.setattr(links_module, "OFFER_AGAIN_S", 0.0)

    async def test(bed: Bed) -> None:
        bed.links.answered(APP)
        bed.links.answered(APP)
        first_token, second_token = (r.direct_link.handoff_token for _, r in bed.offers())
        first = await bed.claim(first_token)
        await until(lambda: APP in bed.links.up, "the first link")
        old = bed.links.up[APP]
        sent = bed.links.request_future(APP, b"on the first", 30.0, None)
        assert sent is not None
        await first.take(1)
        second = await bed.claim(second_token)
        await until(lambda: bed.links.up.get(APP) not in (None, old), "the second link")
        with pytest.raises(Offline) as failed:
            await asyncio.wait_for(sent[1], 10)
        assert (failed.value.target, failed.value.id, failed.value.delivered) == (APP, 1, True)
        assert old.closed
        await first.ended()
        again = bed.links.request_future(APP, b"on the second", 30.0, None)
        assert again is not None and again[0] == 2
        [(id_, _, body, _)] = await second.take(1)
        assert (id_, body) == (2, b"on the second")
        second.answer(2, b"from the second")
        assert (await asyncio.wait_for(again[1], 10)).body == b"from the second"

    run(tmp_path, test)


def test_close_ends_every_link_and_offer_and_removes_the_socket_file(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        end = await bed.link()
        link = bed.links.up[APP]
        sent = bed.links.request_future(APP, b"q", 30.0, None)
        assert sent is not None
        bed.links.answered(OTHER)
        [_, (theirs, mine)] = bed.offered
        assert bed.path.exists()
        bed.links.close()
        assert not bed.path.exists()
        assert link.closed and bed.links.up == {}
        assert closed(theirs) and closed(mine) and bed.links.offers.waiting == {}
        with pytest.raises(Offline) as failed:
            await asyncio.wait_for(sent[1], 10)
        assert (failed.value.target, failed.value.id, failed.value.delivered) == (APP, 1, True)
        await end.ended()

    run(tmp_path, test)


# ---------------------------------------------------------------------- large requests

def test_a_request_larger_than_the_socket_buffer_is_written_whole_in_order(tmp_path: Path) -> None:
    """6 MB do not fit: the rest is written by the loop as the process reads (slowly,
    64 KiB at a time in a thread); a request sent meanwhile queues behind it."""
    body = bytes(range(256)) * 4096  # 1 MiB
    blob = os.urandom(5 * 1024 * 1024)

    async def test(bed: Bed) -> None:
        end = await bed.link()
        link = bed.links.up[APP]
        big = bed.links.request_future(APP, body, 30.0, Blob(blob))
        assert big is not None
        assert link.writing and len(link.out) > 0
        small = bed.links.request_future(APP, b"small", 30.0, None)
        assert small is not None

        def read_slowly() -> list[Frame]:
            end.sock.setblocking(True)
            end.sock.settimeout(10)
            reader = FrameReader()
            frames: list[Frame] = []
            while len(frames) < 2:
                chunk = end.sock.recv(64 * 1024)
                assert chunk, "the worker closed the link"
                frames += reader.feed(chunk)
                time.sleep(0.0005)
            assert reader.buffered == 0
            return frames

        frames = await asyncio.get_running_loop().run_in_executor(None, read_slowly)
        assert [(f[0], f[2], f[3]) for f in frames] == [(1, body, blob), (2, b"small", None)]
        await until(lambda: not link.writing, "the writer to be removed")
        assert link.out == bytearray()
        end.sock.setblocking(False)
        end.answer(1, b"ok")
        assert (await asyncio.wait_for(big[1], 10)).body == b"ok"
        small[1].cancel()

    run(tmp_path, test)


# ====================================================================== the process's end

OUR = APP


class EndBed:
    """A LinkEnd on one end of a socket pair; the worker's end is `peer`."""

    def __init__(self, blocking_writes: bool = False) -> None:
        ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.delivered: list[Message] = []
        self.ends: list[LinkEnd] = []
        self.link = LinkEnd(OUR, ours, asyncio.get_running_loop(), self.delivered.append, self.ends.append,
                            blocking_writes=blocking_writes)
        self.reader = FrameReader()
        self.frames: list[Frame] = []

    def request(self, id_: int) -> Message:
        return Message(id_, HTTP_SERVER, OUR, True, b"", None, None, True, 0, via=self.link)

    def pull(self) -> bool:
        """Read what the link wrote; True at EOF."""
        self.peer.setblocking(False)
        while True:
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                return False
            if not chunk:
                return True
            self.frames += self.reader.feed(chunk)

    def close(self) -> None:
        self.link.close()
        self.peer.close()


def run_end(test: Callable[[EndBed], Awaitable[None]], blocking_writes: bool = False) -> None:
    async def main() -> None:
        bed = EndBed(blocking_writes)
        try:
            await test(bed)
        finally:
            bed.close()
    run_loop(main)


def test_frames_in_become_requests_from_the_http_server_delivered_in_order() -> None:
    """Each frame is a request from http-server:distro:sys to this process that
    expects a response, with the frame's id, deadline, body and blob (None when the
    frame has none, an empty Blob when it has an empty one), `via` the LinkEnd; a
    frame split across reads is delivered once whole."""
    async def test(bed: EndBed) -> None:
        third = encode(9, b"three", b"", 3000)
        bed.peer.sendall(encode(7, b"one", None, 1234) + encode(8, b"two", b"blob two", 5678) + third[:7])
        await until(lambda: len(bed.delivered) == 2, "two requests")
        bed.peer.sendall(third[7:])
        await until(lambda: len(bed.delivered) == 3, "the third")
        assert bed.delivered == [
            Message(7, HTTP_SERVER, OUR, True, b"one", None, None, True, 1234),
            Message(8, HTTP_SERVER, OUR, True, b"two", Blob(b"blob two"), None, True, 5678),
            Message(9, HTTP_SERVER, OUR, True, b"three", Blob(b""), None, True, 3000),
        ]
        assert all(msg.via is bed.link for msg in bed.delivered)
        assert all(msg.rsvp == "" and msg.reply_to == HTTP_SERVER for msg in bed.delivered)
        assert bed.ends == []

    run_end(test)


def test_respond_writes_an_answer_frame_with_the_requests_id() -> None:
    """bytes, no blob, and a BlobFile (a sealed memfd: read, its descriptor closed, the
    BlobFile detached); answers carry no deadline (0)."""
    async def test(bed: EndBed) -> None:
        data = os.urandom(100_000)
        fd = memfd_blob(data)
        blob_file = BlobFile(fd, len(data), "application/octet-stream")
        assert bed.link.respond(bed.request(41), b"with bytes", Blob(b"the blob", "text/plain")) is True
        assert bed.link.respond(bed.request(42), b"no blob", None) is True
        assert bed.link.respond(bed.request(43), b"from a memfd", blob_file) is True
        assert blob_file.fd == -1
        with pytest.raises(OSError):
            os.fstat(fd)
        await until(lambda: bed.pull() or len(bed.frames) >= 3, "three answers")
        assert bed.frames == [(41, 0, b"with bytes", b"the blob"), (42, 0, b"no blob", None),
                              (43, 0, b"from a memfd", data)]

    run_end(test)


def test_respond_after_close_returns_false_and_writes_nothing() -> None:
    """The BlobFile given is consumed all the same (its descriptor closed)."""
    async def test(bed: EndBed) -> None:
        bed.link.close()
        assert bed.ends == [bed.link]
        fd = memfd_blob(b"x" * 10)
        blob_file = BlobFile(fd, 10)
        assert bed.link.respond(bed.request(1), b"late", None) is False
        assert bed.link.respond(bed.request(2), b"late", blob_file) is False
        assert blob_file.fd == -1
        assert bed.pull() is True and bed.frames == []
        assert bed.ends == [bed.link]

    run_end(test)


@pytest.mark.parametrize("ending", [
    pytest.param(lambda peer: peer.shutdown(socket.SHUT_WR), id="eof"),
    pytest.param(lambda peer: peer.sendall(HEADER.pack(5, 1, 0, 0, 0)), id="bad-frame"),
])
def test_eof_or_a_bad_frame_closes_the_link_and_calls_on_end_once(
        ending: Callable[[socket.socket], None]) -> None:
    async def test(bed: EndBed) -> None:
        bed.peer.sendall(encode(1, b"before", None))
        await until(lambda: bed.delivered, "the request before")
        ending(bed.peer)
        await until(lambda: bed.ends, "the link to end")
        assert bed.ends == [bed.link] and bed.link.closed
        assert [msg.id for msg in bed.delivered] == [1]
        bed.link.close()
        assert bed.ends == [bed.link]
        assert bed.link.respond(bed.delivered[0], b"too late", None) is False
        await until(bed.pull, "the worker to see the link closed")

    run_end(test)


def test_an_answer_the_socket_cannot_take_at_once_is_written_by_the_loop() -> None:
    """blocking_writes False (an asyncio process): respond returns at once and the
    loop writes the rest as the worker reads; a second answer queues behind it."""
    blob = os.urandom(4 * 1024 * 1024)

    async def test(bed: EndBed) -> None:
        assert bed.link.respond(bed.request(1), b"big", Blob(blob)) is True
        assert bed.link.writing and len(bed.link.out) > 0
        assert bed.link.respond(bed.request(2), b"small", None) is True
        await until(lambda: bed.pull() or len(bed.frames) >= 2, "both answers")
        assert bed.frames == [(1, 0, b"big", blob), (2, 0, b"small", None)]
        await until(lambda: not bed.link.writing, "the writer to be removed")
        assert bed.link.out == bytearray()

    run_end(test)


def reader_thread(peer: socket.socket, count: int, slowly: bool) -> tuple[threading.Thread, list[Frame]]:
    """The worker reading `count` frames in a thread (64 KiB at a time, pausing if
    `slowly`) and then to EOF; the frames land in the list."""
    frames: list[Frame] = []

    def read() -> None:
        peer.setblocking(True)
        peer.settimeout(10)
        reader = FrameReader()
        while True:
            chunk = peer.recv(64 * 1024)
            if not chunk:
                break
            frames.extend(reader.feed(chunk))
            if slowly:
                time.sleep(0.0005)
        assert reader.buffered == 0
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, frames


def test_a_blocking_process_writes_its_whole_answer_before_respond_returns() -> None:
    """blocking_writes True: 8 MB leave while the worker reads slowly, before respond
    returns: closing the link right after loses nothing."""
    blob = os.urandom(8 * 1024 * 1024)

    async def test(bed: EndBed) -> None:
        thread, frames = reader_thread(bed.peer, 1, slowly=True)
        assert bed.link.respond(bed.request(5), b"all of it", Blob(blob)) is True
        assert not bed.link.writing and bed.link.out == bytearray() and not bed.link.closed
        bed.link.close()
        thread.join(10)
        assert not thread.is_alive()
        assert frames == [(5, 0, b"all of it", blob)]

    run_end(test, blocking_writes=True)


def test_a_blocking_answer_the_worker_never_reads_gives_up_after_write_timeout_s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """WRITE_TIMEOUT_S (30 s; 0.2 here) without room: respond returns False and the link
    is closed (on_end told once)."""
    assert direct_module.WRITE_TIMEOUT_S == 30.0
    monkeypatch.setattr(direct_module, "WRITE_TIMEOUT_S", 0.2)

    async def test(bed: EndBed) -> None:
        assert bed.link.respond(bed.request(1), b"", Blob(bytes(8 * 1024 * 1024))) is False
        assert bed.link.closed and bed.ends == [bed.link]
        assert bed.link.respond(bed.request(2), b"", None) is False

    run_end(test, blocking_writes=True)


def test_answers_from_several_threads_go_out_whole() -> None:
    """4 threads x 5 answers of 300 kB each, blocking_writes: every frame parses back
    whole with its own id, body and blob."""
    threads, per_thread, size = 4, 5, 300_000

    def content(id_: int) -> tuple[bytes, bytes]:
        return f"answer {id_}".encode(), bytes([id_]) * size

    async def test(bed: EndBed) -> None:
        reader, frames = reader_thread(bed.peer, threads * per_thread, slowly=False)
        start = threading.Barrier(threads)
        results: list[bool] = []

        def answer(first: int) -> None:
            start.wait(10)
            for id_ in range(first, first + per_thread):
                body, blob = content(id_)
                results.append(bed.link.respond(bed.request(id_), body, Blob(blob)))
        writers = [threading.Thread(target=answer, args=(1 + n * per_thread,)) for n in range(threads)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(10)
        assert not any(writer.is_alive() for writer in writers)
        assert results == [True] * (threads * per_thread)
        bed.link.close()
        reader.join(10)
        assert not reader.is_alive()
        ids = range(1, threads * per_thread + 1)
        assert sorted(frames) == [(id_, 0, *content(id_)) for id_ in ids]

    run_end(test, blocking_writes=True)


# ---------------------------------------------------------------------- respond_or_drop

class NoKernel:
    def send_response(self, *args: Any, **kw: Any) -> None:
        raise AssertionError("an answer to a request that came on a link went to the kernel")


class FakeVia:
    def __init__(self, result: bool) -> None:
        self.result = result
        self.calls: list[tuple[Message, bytes, Any]] = []

    def respond(self, request: Message, body: bytes, blob: Any) -> bool:
        self.calls.append((request, body, blob))
        return self.result


@pytest.mark.parametrize("result", [True, False])
def test_respond_or_drop_answers_a_request_that_came_on_a_link_on_that_link(result: bool) -> None:
    """Not through the kernel: via.respond(request, body as bytes, the blob as a Blob
    with its mime), and its result is respond_or_drop's."""
    via = FakeVia(result)
    request = Message(3, HTTP_SERVER, OUR, True, b"", expects_response=True, via=via)
    assert respond_or_drop(NoKernel(), request, "text body", b"blob", "text/plain", "meta") is result  # type: ignore[arg-type]
    assert via.calls == [(request, b"text body", Blob(b"blob", "text/plain"))]
    assert respond_or_drop(NoKernel(), request, b"raw", None, None, None) is result  # type: ignore[arg-type]
    assert via.calls[1] == (request, b"raw", None)


# ====================================================================== the gateway's choice

GW_NODE = "gw.os"


class FakeLinks:
    """Links as the gateway uses them: `up` says whether APP has a link."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.asked: list[tuple[str, http_pb2.HttpServerRequest, float, Blob | None]] = []
        self.futures: list[asyncio.Future[Message]] = []
        self.answered_apps: list[str] = []
        self.forgotten: list[int] = []

    def request_future(self, app: str, body: bytes, timeout: float,
                       blob: Blob | None) -> tuple[int, asyncio.Future[Message]] | None:
        self.asked.append((app, http_pb2.HttpServerRequest.FromString(body), timeout, blob))
        if not self.up:
            return None
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return 700 + len(self.futures), fut

    def answered(self, app: str) -> None:
        self.answered_apps.append(app)

    def forget(self, id_: int) -> None:
        self.forgotten.append(id_)


class KernelProc:
    """The gateway's stub: requests through the kernel become futures the test settles."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, asyncio.Future[Message]]] = []
        self.forgotten: list[int] = []

    def request_future(self, target: str, body: bytes, *, timeout: float, blob: Blob | None = None,
                       metadata: str | None = None) -> tuple[int, asyncio.Future[Message]]:
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.sent.append((target, fut))
        return len(self.sent), fut

    def forget(self, id_: int) -> None:
        self.forgotten.append(id_)


def http_answer(status: int, body: bytes) -> Message:
    return Message(1, APP, HTTP_SERVER, False, http_pb2.HttpResponse(status=status).SerializeToString(),
                   Blob(body))


@pytest.fixture
def gateway_bed() -> Iterator[tuple[Gateway, KernelProc, BindingTable]]:
    table = BindingTable()
    proc = KernelProc()
    executor = ThreadPoolExecutor(1)
    gateway = Gateway(HttpServerSettings(), GW_NODE, table, fake_auth(GW_NODE, password=False), proc,  # type: ignore[arg-type]
                      lambda _: None, executor)
    try:
        yield gateway, proc, table
    finally:
        executor.shutdown(wait=False)


def bind(table: BindingTable, path: str, direct: bool) -> None:
    action = http_pb2.HttpServerAction()
    action.bind.path = path
    action.bind.authenticated = False
    action.bind.direct = direct
    binding = actions.plan_binding(APP, "bind", action, None)
    assert isinstance(binding, HttpBinding)
    table.bind_http(binding)


GatewayBed = tuple[Gateway, KernelProc, BindingTable]


@pytest.mark.parametrize(("outcome", "status", "offered"), [
    pytest.param(http_answer(200, b"ok"), 200, [APP], id="answered"),
    pytest.param(Timeout(APP, 1, "late"), 504, [], id="timeout"),
    pytest.param(Offline(APP, 1, "not running"), 503, [], id="offline"),
    pytest.param(Offline(APP, 1, "died", delivered=True), 502, [], id="died"),
])
def test_a_direct_binding_without_a_link_goes_through_the_kernel_and_offers_one_only_after_an_answer(
        gateway_bed: GatewayBed, outcome: Message | Exception, status: int, offered: list[str]) -> None:
    gateway, proc, table = gateway_bed
    bind(table, "/api", direct=True)
    links = FakeLinks(up=False)
    gateway.links = links  # type: ignore[assignment]

    async def main() -> FakeExchange:
        ex = FakeExchange("POST", f"/{APP}/api", body=b"in", headers=[("Host", "localhost:8080")])
        gateway.dispatch(ex)  # type: ignore[arg-type]
        [(app, request, timeout, blob)] = links.asked
        assert (app, request.http.method, timeout, blob) == (APP, "POST", gateway.default_timeout, Blob(b"in"))
        [(target, fut)] = proc.sent
        assert target == APP and links.answered_apps == []
        if isinstance(outcome, Message):
            fut.set_result(outcome)
        else:
            fut.set_exception(outcome)
        await asyncio.sleep(0)
        return ex

    ex = run_gateway(main)
    assert ex.status == status and links.answered_apps == offered


def run_gateway(main: Callable[[], Awaitable[FakeExchange]]) -> FakeExchange:
    async def wrapped() -> FakeExchange:
        return await main()
    return asyncio.run(wrapped())


def test_an_ordinary_binding_never_asks_the_links(gateway_bed: GatewayBed) -> None:
    gateway, proc, table = gateway_bed
    bind(table, "/api", direct=False)
    links = FakeLinks(up=True)
    gateway.links = links  # type: ignore[assignment]

    async def main() -> FakeExchange:
        ex = FakeExchange("GET", f"/{APP}/api", headers=[("Host", "localhost:8080")])
        gateway.dispatch(ex)  # type: ignore[arg-type]
        proc.sent[0][1].set_result(http_answer(200, b"k"))
        await asyncio.sleep(0)
        return ex

    assert run_gateway(main).status == 200
    assert links.asked == [] and links.answered_apps == []


@pytest.mark.parametrize(("outcome", "status"), [
    pytest.param(http_answer(201, b"from the link"), 201, id="answered"),
    pytest.param(Timeout(APP, 701, "late"), 504, id="timeout"),
    pytest.param(Offline(APP, 701, "the link ended", delivered=True), 502, id="link-ended"),
])
def test_with_a_link_up_a_direct_request_goes_on_it_and_not_through_the_kernel(
        gateway_bed: GatewayBed, outcome: Message | Exception, status: int) -> None:
    gateway, proc, table = gateway_bed
    bind(table, "/api", direct=True)
    links = FakeLinks(up=True)
    gateway.links = links  # type: ignore[assignment]

    async def main() -> FakeExchange:
        ex = FakeExchange("GET", f"/{APP}/api", headers=[("Host", "localhost:8080")])
        gateway.dispatch(ex)  # type: ignore[arg-type]
        assert proc.sent == [] and len(links.futures) == 1
        if isinstance(outcome, Message):
            links.futures[0].set_result(outcome)
        else:
            links.futures[0].set_exception(outcome)
        await asyncio.sleep(0)
        return ex

    ex = run_gateway(main)
    assert ex.status == status and proc.sent == [] and links.answered_apps == []
    if status == 201:
        assert ex.answer is not None and ex.answer[2] == b"from the link"


def test_a_client_leaving_a_request_on_a_link_forgets_it_on_the_links(gateway_bed: GatewayBed) -> None:
    gateway, proc, table = gateway_bed
    bind(table, "/api", direct=True)
    links = FakeLinks(up=True)
    gateway.links = links  # type: ignore[assignment]

    async def main() -> FakeExchange:
        ex = FakeExchange("GET", f"/{APP}/api", headers=[("Host", "localhost:8080")])
        gateway.dispatch(ex)  # type: ignore[arg-type]
        assert ex.closed is not None and gateway.pending() == 1
        ex.done = True
        ex.closed()
        links.futures[0].cancel()
        await asyncio.sleep(0)
        return ex

    run_gateway(main)
    assert links.forgotten == [701] and proc.forgotten == [] and gateway.pending() == 0

