"""porch.http_server.wsdirect.Offers in-process (docs/websockets.md, issue 12): the
worker's hand-over socket for direct WebSockets, on a real asyncio loop, claimed with
the stub's own blocking client (porch.process.held.claim, run in a thread: the Offers
answer on the loop). Pinned: a token claims its socket once; what is refused; an offer
nobody claims in time goes back to the worker, and a late claim is refused; withdraw;
a connection that never sends its token is dropped without holding up anyone else;
close serves what waited and removes the socket file; the file is 0600."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from porch.http_server.wsdirect import (
    ADOPT_BATCH,
    CLAIM_WAIT_S,
    TOKEN_BYTES,
    Offer,
    Offers,
    hand_held,
    successor_path,
)
from porch.process.held import ClaimFailed, claim
from support.peers import until

REFUSED = "no such socket on offer (the server serves it)"
RECORD: dict[str, Any] = {"channel_id": 7, "max_message": 1000, "send_queue_bytes": 2000,
                          "ping_interval_s": 0.0, "leftover": "\x81\xff", "extensions": []}


class Bed:
    def __init__(self, path: Path, wait_s: float) -> None:
        self.path = path
        self.claimed: list[Offer] = []
        self.unclaimed: list[Offer] = []
        self.offers = Offers(path, self.claimed.append, self.unclaimed.append, wait_s=wait_s)
        self.socks: list[socket.socket] = []

    def offer(self, record: dict[str, Any] | None = None) -> tuple[bytes, socket.socket]:
        """A socket pair's first end on offer: its token, and the other end."""
        ours, theirs = socket.socketpair()
        self.socks += [ours, theirs]
        return self.offers.offer(ours, RECORD if record is None else record), theirs

    async def claim(self, token: bytes) -> tuple[socket.socket, dict[str, object]]:
        """As the owner's stub claims (porch.process.held.claim), off the loop."""
        got = await asyncio.get_running_loop().run_in_executor(None, claim, str(self.path), token)
        self.socks.append(got[0])
        return got

    async def refused(self, token: bytes) -> str:
        try:
            await self.claim(token)
        except ClaimFailed as exc:
            return str(exc)
        raise AssertionError("the claim was not refused")

    def close(self) -> None:
        if self.offers.sock.fileno() != -1:
            self.offers.close()
        for sock in self.socks:
            sock.close()


def run(tmp_path: Path, test: Callable[[Bed], Awaitable[None]], wait_s: float = 60.0) -> None:
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        bed = Bed(tmp_path / "claim.sock", wait_s)
        try:
            await test(bed)
        finally:
            bed.close()
    asyncio.run(main())
    assert errors == []


# ---------------------------------------------------------------------- claims

def test_a_token_claims_its_socket_once(tmp_path: Path) -> None:
    """The claimant gets the record as offered and a descriptor of the very socket;
    on_claimed is told; the same token again is refused."""
    async def test(bed: Bed) -> None:
        token, client = bed.offer()
        assert len(token) == TOKEN_BYTES == 16
        [offer] = bed.offers.waiting.values()
        sock, record = await bed.claim(token)
        assert record == RECORD
        assert bed.claimed == [offer] and bed.unclaimed == [] and bed.offers.waiting == {}
        assert offer.token == token and offer.record is RECORD
        assert offer.timer is not None and offer.timer.cancelled()
        sock.send(b"through the claimed descriptor")
        assert client.recv(100) == b"through the claimed descriptor"
        assert await bed.refused(token) == REFUSED
        assert bed.claimed == [offer]

    run(tmp_path, test)


def test_every_offer_has_a_token_of_its_own(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        first, _ = bed.offer({"channel_id": 1})
        second, _ = bed.offer({"channel_id": 2})
        assert first != second
        assert (await bed.claim(second))[1] == {"channel_id": 2}
        assert (await bed.claim(first))[1] == {"channel_id": 1}

    run(tmp_path, test)


@pytest.mark.parametrize("wrong", [
    pytest.param(lambda token: secrets.token_bytes(16), id="unknown"),
    pytest.param(lambda token: token[:15], id="short"),
    pytest.param(lambda token: token + b"x", id="long"),
    pytest.param(lambda token: token[:15] + bytes([token[15] ^ 1]), id="one-bit-off"),
])
def test_a_wrong_token_is_refused_and_the_offer_still_waits(
        tmp_path: Path, wrong: Callable[[bytes], bytes]) -> None:
    async def test(bed: Bed) -> None:
        token, _ = bed.offer()
        assert await bed.refused(wrong(token)) == REFUSED
        assert bed.claimed == [] and bed.unclaimed == [] and list(bed.offers.waiting) == [token]
        assert (await bed.claim(token))[1] == RECORD

    run(tmp_path, test)


def test_an_offer_nobody_claims_in_time_goes_back_to_the_worker(tmp_path: Path) -> None:
    """After wait_s on_unclaimed is told (the worker serves the socket); a late claim
    is refused, so the stub leaves the socket to the worker."""
    async def test(bed: Bed) -> None:
        token, _ = bed.offer()
        [offer] = bed.offers.waiting.values()
        await until(lambda: bed.unclaimed, "the offer to expire")
        assert bed.unclaimed == [offer] and bed.claimed == [] and bed.offers.waiting == {}
        assert await bed.refused(token) == REFUSED
        assert bed.unclaimed == [offer] and bed.claimed == []

    run(tmp_path, test, wait_s=0.02)


def test_the_wait_is_claim_wait_s_by_default(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        offers = Offers(tmp_path / "default.sock", bed.claimed.append, bed.unclaimed.append)
        offers.close()
        assert offers.wait_s == CLAIM_WAIT_S == 5.0

    run(tmp_path, test)


def test_a_withdrawn_offer_is_neither_claimed_nor_expired(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        token, _ = bed.offer()
        [offer] = bed.offers.waiting.values()
        assert bed.offers.withdraw(token) is offer
        assert offer.timer is not None and offer.timer.cancelled()
        assert bed.offers.withdraw(token) is None and bed.offers.withdraw(b"\x00" * 16) is None
        await asyncio.sleep(0.1)  # well past wait_s: a timer still set would have run
        assert bed.unclaimed == [] and bed.claimed == []
        assert await bed.refused(token) == REFUSED

    run(tmp_path, test, wait_s=0.02)


def test_a_claimant_that_goes_away_before_the_answer_leaves_the_socket_to_the_worker(tmp_path: Path) -> None:
    """The token was read, but the descriptor could not go: as if nobody had come."""
    async def test(bed: Bed) -> None:
        token, _ = bed.offer()
        [offer] = bed.offers.waiting.values()
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as gone:
            gone.connect(str(bed.path))
            gone.send(token)
        await until(lambda: bed.unclaimed, "the failed answer")
        assert bed.unclaimed == [offer] and bed.claimed == [] and bed.offers.waiting == {}

    run(tmp_path, test)


# ---------------------------------------------------------------------- a silent connection

class DropRecorder:
    """The Offers' loop, but the drop of a silent connection is kept for the test to
    run (`drops`: delay, callback, args)."""

    class Pending:
        def __init__(self) -> None:
            self.cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.drops: list[tuple[float, Callable[..., object], tuple[Any, ...], DropRecorder.Pending]] = []

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Any:
        if getattr(callback, "__name__", "") == "_drop":
            pending = DropRecorder.Pending()
            self.drops.append((delay, callback, args, pending))
            return pending
        return self.loop.call_later(delay, callback, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)


def test_a_connection_that_never_sends_its_token_is_dropped_after_1_s_and_holds_up_nobody(
        tmp_path: Path) -> None:
    """Its wait is a timer on the loop (1 s), not a blocking read: a claim that comes
    meanwhile is served, and the silent connection is closed when the timer runs."""
    async def test(bed: Bed) -> None:
        recorder = DropRecorder(asyncio.get_running_loop())
        bed.offers.loop = recorder  # type: ignore[assignment]
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        bed.socks.append(silent)
        silent.connect(str(bed.path))
        silent.setblocking(False)
        await until(lambda: recorder.drops, "the silent connection to be accepted")
        token, _ = bed.offer()
        assert (await bed.claim(token))[1] == RECORD
        [(delay, drop, args, pending)] = recorder.drops[:1]
        assert delay == 1.0 and not pending.cancelled
        assert len(recorder.drops) == 2 and recorder.drops[1][3].cancelled, "the claim's timer is cancelled"
        with pytest.raises(BlockingIOError):
            silent.recv(100)  # still connected, not answered
        drop(*args)
        assert silent.recv(100) == b"", "dropped: the server closed it"

    run(tmp_path, test)


def test_a_silent_connection_is_really_dropped(tmp_path: Path) -> None:
    """The same on the real loop's clock: the server ends it (a generous bound)."""
    async def test(bed: Bed) -> None:
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        bed.socks.append(silent)
        silent.connect(str(bed.path))
        silent.setblocking(False)

        def ended() -> bool:
            try:
                return silent.recv(100) == b""
            except BlockingIOError:
                return False
        await until(ended, "the silent connection to be dropped")

    run(tmp_path, test)


# ---------------------------------------------------------------------- close, the file

def test_close_serves_what_waited_and_removes_the_socket_file(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        first, _ = bed.offer({"channel_id": 1})
        bed.offer({"channel_id": 2})
        offers = list(bed.offers.waiting.values())
        assert bed.path.exists()
        bed.offers.close()
        assert bed.unclaimed == offers and bed.claimed == [] and bed.offers.waiting == {}
        assert not bed.path.exists()
        with pytest.raises(OSError):
            await bed.claim(first)
        await asyncio.sleep(0.05)  # past wait_s: the offers' own timers find nothing to do
        assert bed.unclaimed == offers

    run(tmp_path, test, wait_s=0.02)


def test_the_socket_file_is_for_its_user_only_and_replaces_a_stale_one(tmp_path: Path) -> None:
    """Nothing for group or others whatever the umask (it is bound under umask 077,
    and the umask is given back); a file left at the path is replaced."""
    stale = tmp_path / "stale.sock"
    stale.write_bytes(b"left by a worker that crashed")
    old = os.umask(0o002)
    try:
        async def test(bed: Bed) -> None:
            for path in (bed.path, stale):
                offers = bed.offers if path == bed.path else Offers(path, bed.claimed.append,
                                                                    bed.unclaimed.append)
                mode = os.stat(path).st_mode
                assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) & 0o077 == 0, oct(mode)
                assert stat.S_IMODE(mode) & 0o600 == 0o600, "its user connects"
                assert stat.S_IMODE(mode) == 0o600, "as the docs say"
                if offers is not bed.offers:
                    offers.close()

        run(tmp_path, test)
        assert os.umask(0o002) == 0o002, "the umask is given back"
    finally:
        os.umask(old)


# ---------------------------------------------------------------------- a successor adopts

def adopting(bed: Bed, may: bool) -> list[tuple[list[Any], list[socket.socket]]]:
    """Make the bed's Offers take adoptions (from any peer if `may`, else from none)."""
    got: list[tuple[list[Any], list[socket.socket]]] = []

    def on_adopt(entries: list[Any], socks: list[socket.socket]) -> int:
        got.append((entries, socks))
        bed.socks.extend(socks)
        return len(socks)

    bed.offers.on_adopt = on_adopt
    bed.offers.may_adopt = lambda pid: may and pid == os.getpid()
    return got


def test_a_worker_adopts_the_held_sockets_of_the_one_it_replaces(tmp_path: Path) -> None:
    """hand_held sends entries and descriptors (in batches); the Offers give them to
    on_adopt, whose count comes back; the descriptors are the same sockets."""
    async def test(bed: Bed) -> None:
        got = adopting(bed, True)
        pairs = [socket.socketpair() for _ in range(ADOPT_BATCH + 3)]
        for a, b in pairs:
            bed.socks += [a, b]
        entries = [{"id": i, "app": "a:b:c", "path": "/a:b:c/ws"} for i in range(len(pairs))]
        taken = await asyncio.get_running_loop().run_in_executor(
            None, hand_held, bed.path, entries, [a for a, _ in pairs])
        assert taken == len(pairs)
        assert [len(e) for e, _ in got] == [ADOPT_BATCH, 3]
        assert [e for batch, _ in got for e in batch] == entries
        adopted = [s for _, socks in got for s in socks]
        adopted[5].send(b"through the adopted descriptor")
        assert pairs[5][1].recv(100) == b"through the adopted descriptor"

    run(tmp_path, test)


def test_only_a_worker_may_hand_sockets_over(tmp_path: Path) -> None:
    """A peer that is not a worker (SO_PEERCRED) is refused: nothing adopted, the
    descriptors it sent closed."""
    async def test(bed: Bed) -> None:
        got = adopting(bed, False)
        a, b = socket.socketpair()
        bed.socks += [a, b]
        taken = await asyncio.get_running_loop().run_in_executor(
            None, hand_held, bed.path, [{"id": 1, "app": "a:b:c", "path": "/x"}], [a])
        assert taken == 0 and got == []
        a.close()  # ours; the copy the Offers got is closed too: the peer sees the end
        b.settimeout(5)
        assert b.recv(10) == b""

    run(tmp_path, test)


def test_the_successor_is_another_live_worker(tmp_path: Path) -> None:
    for pid in (11, 22, 33):
        (tmp_path / f"http-ws-claim-{pid}.sock").touch()
    (tmp_path / "http-ws-claim-x.sock").touch()
    assert successor_path(tmp_path, 11, lambda pid: pid in (11, 33)) == tmp_path / "http-ws-claim-33.sock"
    assert successor_path(tmp_path, 11, lambda pid: pid == 11) is None


def test_a_token_is_a_token_whatever_its_first_byte(tmp_path: Path) -> None:
    """Only descriptors make a message a hand-over: a token that begins with "{" (one
    in 256 do) still claims its socket (a full run once took one for a hand-over)."""
    async def test(bed: Bed) -> None:
        ours, theirs = socket.socketpair()
        bed.socks += [ours, theirs]
        token = b"{" + secrets.token_bytes(TOKEN_BYTES - 1)
        offer = Offer(ours, token, RECORD)
        bed.offers.waiting[token] = offer
        _, record = await bed.claim(token)
        assert record == RECORD and bed.claimed == [offer]

    run(tmp_path, test)
