"""porch.process.held.HeldSockets in-process (docs/websockets.md, issue 12): the
stub's side of a direct WebSocket. A fake worker (a SOCK_SEQPACKET listener served by
hand in a thread, keeping its own descriptor of the client's socket as the real one
does) answers the claim; the client is a socket pair's other end; the sockets run on a
real asyncio loop, as in an AsyncProcess. The count reports HeldSockets schedules are
kept for the test to run (`Bed.reports`), so no figure depends on how long a test took.

Pinned: which opens are claimed and what a refused or unusable hand-over leaves; the
record's limits, leftover bytes and compression; client frames as the same
WebSocketPush messages the worker sends; the app's pushes and closes; the send-queue
limit; how a socket ends (what the app and the worker are told, in order); an unbind
the worker tells; and the counts for the node's figures. The real path (a node) is
tests/integration/test_ws_direct.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from porch.address import HTTP_SERVER
from porch.process import held as held_module
from porch.process.held import HeldSockets
from porch.process.message import Message
from porch.wire import http_pb2
from porch.ws.frames import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from support.peers import FrameClient, until

OUR = "app:pkg:pub.os"
CHANNEL = 4242
TOKEN = bytes(range(16))
WsType = http_pb2.WsMessageType
RSV1 = 0x40


# ---------------------------------------------------------------------- the client's side

def masked(opcode: int, payload: bytes = b"", mask: bytes = b"\x37\xfa\x21\x3d", rsv1: bool = False) -> bytes:
    """One whole client frame (masked, RFC 6455 5.3)."""
    n = len(payload)
    head = bytes((0x80 | (RSV1 if rsv1 else 0) | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    else:
        head += bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_body(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


class Client(FrameClient):
    """The client's end: what it sends, and the server's frames as it reads them
    (first byte, payload: the first byte keeps RSV1)."""

    async def frames_until(self, count: int, what: str) -> list[tuple[int, bytes]]:
        got: list[tuple[int, bytes]] = []

        def done() -> bool:
            got.extend(self.frames())
            return len(got) >= count
        await until(done, what)
        return got

    async def frame(self) -> tuple[int, bytes]:
        [got] = await self.frames_until(1, "a frame")
        return got


# ---------------------------------------------------------------------- the worker's side

class Worker:
    """The worker's hand-over socket, served by hand: each `serve` answers the next
    claim with `answer` and the descriptors `fds`, and keeps the token it got."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.tokens: list[bytes] = []

    def serve(self, answer: bytes, fds: list[int]) -> threading.Thread:
        def run() -> None:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(10)
                self.tokens.append(conn.recv(64))
                if fds:
                    socket.send_fds(conn, [answer], fds)
                else:
                    conn.send(answer)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def pending(self) -> bool:
        """Someone connected and was not served."""
        self.listener.settimeout(0)
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return False
        finally:
            self.listener.settimeout(None)
        conn.close()
        return True

    def close(self) -> None:
        self.listener.close()


class ScheduledReport:
    def __init__(self, delay: float, callback: Callable[..., object]) -> None:
        self.delay = delay
        self.callback = callback

    def cancel(self) -> None:
        raise AssertionError("HeldSockets never cancels a report")


class Loop:
    """The asyncio loop for the sockets, but HeldSockets' count reports are kept
    (`reports`) for the test to run."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reports: list[ScheduledReport] = []

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self.loop.add_reader(fd, callback, *args)

    def remove_reader(self, fd: int) -> bool:
        return self.loop.remove_reader(fd)

    def add_writer(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self.loop.add_writer(fd, callback, *args)

    def remove_writer(self, fd: int) -> bool:
        return self.loop.remove_writer(fd)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        return self.loop.call_soon(callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object],
                   *args: Any) -> asyncio.TimerHandle | ScheduledReport:
        if isinstance(getattr(callback, "__self__", None), HeldSockets):
            assert getattr(callback, "__name__", "") == "report" and args == ()
            report = ScheduledReport(delay, callback)
            self.reports.append(report)
            return report
        return self.loop.call_later(delay, callback, *args)


def record(channel_id: int = CHANNEL, **changes: Any) -> dict[str, Any]:
    """A hand-over record as the worker sends it (porch.http_server.websocket.WsHub.open)."""
    out: dict[str, Any] = {"channel_id": channel_id, "max_message": 1 << 20, "send_queue_bytes": 1 << 20,
                           "ping_interval_s": 0.0, "leftover": "", "extensions": []}
    out.update(changes)
    return out


def open_message(channel_id: int = CHANNEL, handoff: str = "", token: bytes = TOKEN) -> Message:
    request = http_pb2.HttpServerRequest()
    request.web_socket_open.path = "/ws"
    request.web_socket_open.channel_id = channel_id
    if handoff:
        request.web_socket_open.handoff_socket = handoff
        request.web_socket_open.handoff_token = token
    return Message(0, HTTP_SERVER, OUR, True, request.SerializeToString())


def close_message(channel_id: int) -> Message:
    request = http_pb2.HttpServerRequest()
    request.web_socket_close.channel_id = channel_id
    return Message(0, HTTP_SERVER, OUR, True, request.SerializeToString())


class Bed:
    def __init__(self, tmp_path: Path) -> None:
        self.loop = Loop(asyncio.get_running_loop())
        self.delivered: list[Message] = []
        self.told_worker: list[bytes] = []
        self.held = HeldSockets(OUR, self.loop, self.delivered.append, self.told_worker.append)
        self.worker = Worker(tmp_path / "claim.sock")
        self.clients: list[Client] = []
        self.servers: list[socket.socket] = []  # the worker's own descriptors

    @property
    def reports(self) -> list[ScheduledReport]:
        return self.loop.reports

    def offer(self, answer: dict[str, Any] | bytes | None = None, channel_id: int = CHANNEL, *,
              keep: bool = True, fds: int = 1) -> Client:
        """A socket offered to the stub: the worker answers the claim with `answer`
        (a record, or raw bytes) and the server end's descriptor (`fds` copies of
        it). `keep`: the worker keeps its own (as the real one does)."""
        server, theirs = socket.socketpair()
        client = Client(theirs)
        self.clients.append(client)
        data = answer if isinstance(answer, bytes) else json.dumps(
            record(channel_id) if answer is None else answer).encode()
        thread = self.worker.serve(data, [server.fileno()] * fds)
        self.held.offered(open_message(channel_id, str(self.worker.path)))
        thread.join(10)
        assert not thread.is_alive()
        if keep:
            self.servers.append(server)
        else:
            server.close()
        return client

    def close(self) -> None:
        for channel in list(self.held.channels.values()):
            if channel.conn is not None:
                channel.conn.abort()
        for sock in [c.sock for c in self.clients] + self.servers:
            sock.close()
        self.worker.close()

    # -- what was told, readably

    def app_got(self) -> list[tuple[str, int, int, bytes | None]]:
        """(variant, channel id, push type or 0, blob) of each message delivered; each
        is checked to be as the worker would have sent it."""
        out = []
        for msg in self.delivered:
            assert (msg.id, msg.source, msg.target, msg.is_request) == (0, HTTP_SERVER, OUR, True)
            request = http_pb2.HttpServerRequest.FromString(msg.body)
            which = request.WhichOneof("request")
            inner = getattr(request, which)
            kind = inner.message_type if which == "web_socket_push" else 0
            out.append((which, inner.channel_id, kind, None if msg.blob is None else msg.blob.bytes))
        return out

    def worker_got(self) -> list[Any]:
        """Each action told to the worker: ("close", id), or ("counts", [(id, in, out,
        bytes in, bytes out, closed), ...])."""
        out: list[Any] = []
        for body in self.told_worker:
            action = http_pb2.HttpServerAction.FromString(body)
            which = action.WhichOneof("action")
            if which == "web_socket_close":
                out.append(("close", action.web_socket_close.channel_id))
            else:
                assert which == "web_socket_counts", which
                out.append(("counts", [(e.channel_id, e.messages_in, e.messages_out, e.bytes_in, e.bytes_out,
                                        e.closed) for e in action.web_socket_counts.channels]))
        return out


def run(tmp_path: Path, test: Callable[[Bed], Awaitable[None]]) -> None:
    """Run `test` on a loop of its own; an exception raised in any of the loop's
    callbacks fails it too."""
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        bed = Bed(tmp_path)
        try:
            await test(bed)
        finally:
            bed.close()
    asyncio.run(main())
    assert errors == []


# ---------------------------------------------------------------------- which opens are claimed

def test_an_open_without_a_handoff_is_left_to_the_worker(tmp_path: Path) -> None:
    """A WebSocketOpen of a plain binding (no handoff_socket), or one that does not
    parse, claims nothing: no connection to anyone, nothing held or told."""
    async def test(bed: Bed) -> None:
        bed.held.offered(open_message(CHANNEL))
        bed.held.offered(Message(0, HTTP_SERVER, OUR, True, b"\x12\xff\xff"))
        assert not bed.worker.pending()
        assert bed.held.channels == {} and not bed.held.holds(CHANNEL)
        assert bed.delivered == [] and bed.told_worker == []

    run(tmp_path, test)


@pytest.mark.parametrize("answer", [
    pytest.param({"refused": "no such socket on offer (the server serves it)"}, id="refused"),
    pytest.param(record(), id="a-record-without-its-socket"),
])
def test_a_claim_the_worker_refuses_holds_nothing(tmp_path: Path, answer: dict[str, Any]) -> None:
    """The stub sent its token; the worker answers without a socket (it serves it
    itself): nothing is held, so the app's pushes and closes go to the worker."""
    async def test(bed: Bed) -> None:
        thread = bed.worker.serve(json.dumps(answer).encode(), [])
        bed.held.offered(open_message(CHANNEL, str(bed.worker.path)))
        thread.join(10)
        assert bed.worker.tokens == [TOKEN]
        assert bed.held.channels == {} and not bed.held.holds(CHANNEL)
        assert bed.held.push(CHANNEL, WsType.Text, b"x") is False
        assert bed.held.close(CHANNEL) is False
        assert bed.delivered == [] and bed.told_worker == []

    run(tmp_path, test)


def test_a_worker_that_is_not_there_leaves_the_socket_to_it(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        bed.held.offered(open_message(CHANNEL, str(tmp_path / "no-such.sock")))
        assert bed.held.channels == {} and bed.delivered == [] and bed.told_worker == []

    run(tmp_path, test)


# ---------------------------------------------------------------------- a claimed socket

def test_a_claimed_socket_is_held_and_the_bytes_after_the_handshake_come_first(tmp_path: Path) -> None:
    """The record's leftover (latin-1 text of the bytes the worker read past the
    handshake) is read before anything from the socket."""
    async def test(bed: Bed) -> None:
        leftover = masked(OP_TEXT, b"early") + masked(OP_BINARY, b"\xff\x00")
        client = bed.offer(record(leftover=leftover.decode("latin-1")))
        assert bed.worker.tokens == [TOKEN]
        assert bed.held.holds(CHANNEL) and list(bed.held.channels) == [CHANNEL]
        client.send(masked(OP_TEXT, b"later"))
        await until(lambda: len(bed.delivered) == 3, "three messages")
        assert bed.app_got() == [
            ("web_socket_push", CHANNEL, WsType.Text, b"early"),
            ("web_socket_push", CHANNEL, WsType.Binary, b"\xff\x00"),
            ("web_socket_push", CHANNEL, WsType.Text, b"later"),
        ]
        assert client.quiet() and bed.told_worker == []

    run(tmp_path, test)


def test_the_records_largest_message_holds(tmp_path: Path) -> None:
    """One byte over max_message closes 1009, as the worker would; the socket's last
    report names the reason the figures count (too_big)."""
    async def test(bed: Bed) -> None:
        client = bed.offer(record(max_message=10))
        client.send(masked(OP_BINARY, b"0123456789"))
        await until(lambda: len(bed.delivered) == 1, "the message at the limit")
        client.send(masked(OP_BINARY, b"0123456789A"))
        opcode, payload = await client.frame()
        assert opcode == OP_CLOSE and payload[:2] == (1009).to_bytes(2, "big")
        client.sock.shutdown(socket.SHUT_WR)  # after a protocol error the stub reads to the EOF
        await until(lambda: not bed.held.channels, "the socket to close")
        assert bed.worker_got() == [("counts", [(CHANNEL, 1, 0, 10, 0, "too_big")]), ("close", CHANNEL)]
        assert bed.app_got()[1:] == [("web_socket_close", CHANNEL, 0, None)]

    run(tmp_path, test)


def test_the_records_ping_interval_pings_the_client(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        client = bed.offer(record(ping_interval_s=0.05))
        got = await client.frames_until(1, "a ping")
        assert got[0] == (OP_PING, b"")

    run(tmp_path, test)


def inflate(payload: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


def deflate(payload: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def test_the_compression_the_101_agreed_holds_on_the_held_socket(tmp_path: Path) -> None:
    """The record's extensions are the offers the worker's 101 agreed to: the stub
    agrees the same, so a compressed client message is inflated and a long push goes
    compressed (RSV1)."""
    async def test(bed: Bed) -> None:
        client = bed.offer(record(extensions=["permessage-deflate; client_max_window_bits"]))
        text = b"compress me " * 20
        client.send(masked(OP_TEXT, deflate(text), rsv1=True))
        await until(lambda: bed.delivered, "the message")
        assert bed.app_got() == [("web_socket_push", CHANNEL, WsType.Text, text)]
        assert bed.held.push(CHANNEL, WsType.Binary, text)
        [(b0, payload)] = await until_raw(client)
        assert b0 == 0x80 | RSV1 | OP_BINARY and inflate(payload) == text

    run(tmp_path, test)


def test_without_extensions_in_the_record_nothing_is_compressed(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        client = bed.offer(record(extensions=[]))
        text = b"compress me " * 20
        assert bed.held.push(CHANNEL, WsType.Binary, text)
        assert await until_raw(client) == [(0x80 | OP_BINARY, text)]

    run(tmp_path, test)


async def until_raw(client: Client) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []

    def done() -> bool:
        got.extend(client.raw_frames())
        return bool(got)
    await until(done, "a frame")
    return got


@pytest.mark.parametrize("answer", [
    pytest.param(record(channel_id=CHANNEL + 1), id="another-channel"),
    pytest.param({k: v for k, v in record().items() if k != "max_message"}, id="no-max-message"),
    pytest.param(record(send_queue_bytes="lots"), id="send-queue-not-a-number"),
    pytest.param({**record(), "channel_id": "x"}, id="channel-id-not-a-number"),
    pytest.param(record(extensions="permessage-deflate"), id="extensions-not-a-list"),
    pytest.param(record(leftover="\u0100"), id="leftover-not-latin-1"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"[1, 2]", id="not-an-object"),
])
def test_a_hand_over_the_stub_cannot_use_is_closed_and_holds_nothing(
        tmp_path: Path, answer: dict[str, Any] | bytes) -> None:
    """The stub ends the socket it got (the worker counts it as taken): the client
    sees the end, the worker is told it closed, and so is the app (after the open it
    is about to be given)."""
    async def test(bed: Bed) -> None:
        client = bed.offer(answer, keep=False)
        assert bed.held.channels == {} and not bed.held.holds(CHANNEL)
        assert bed.held.push(CHANNEL, WsType.Text, b"x") is False
        await until(client.ended, "the stub to close its descriptor")
        await until(lambda: bool(bed.delivered), "the app told")
        assert client.data == b""
        assert bed.app_got() == [("web_socket_close", CHANNEL, 0, None)]
        assert bed.worker_got() == [("close", CHANNEL)]

    run(tmp_path, test)


def test_two_descriptors_in_an_answer_are_both_closed(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        client = bed.offer(record(), fds=2, keep=False)
        assert bed.held.channels == {}
        await until(client.ended, "the stub to close both descriptors")

    run(tmp_path, test)


def test_a_hand_over_the_stub_cannot_use_ends_the_clients_connection(tmp_path: Path) -> None:
    """The worker keeps its own descriptor of every socket it handed over (to write
    1001 should the owner die): closing the stub's copy alone ends nothing."""
    async def test(bed: Bed) -> None:
        client = bed.offer(record(channel_id=CHANNEL + 1), keep=True)
        assert bed.held.channels == {}
        for _ in range(50):  # a few loop rounds: anything the stub does is done by then
            await asyncio.sleep(0.001)
        assert not client.quiet(), "the client was left connected to a socket nobody serves"

    run(tmp_path, test)


# ---------------------------------------------------------------------- from the client

def test_client_frames_become_the_workers_push_messages(tmp_path: Path) -> None:
    """Text, Binary, Ping (answered with a pong) and a Pong with a payload reach the
    app as WebSocketPush from the http-server with the payload as the blob; a Pong
    without one does not."""
    async def test(bed: Bed) -> None:
        client = bed.offer()
        client.send(masked(OP_TEXT, "héllo".encode()) + masked(OP_BINARY, b"\x00\xff")
                    + masked(OP_PING, b"are you there") + masked(OP_PONG, b"")
                    + masked(OP_PONG, b"late") + masked(OP_TEXT, b""))
        await until(lambda: len(bed.delivered) == 5, "five messages")
        assert bed.app_got() == [
            ("web_socket_push", CHANNEL, WsType.Text, "héllo".encode()),
            ("web_socket_push", CHANNEL, WsType.Binary, b"\x00\xff"),
            ("web_socket_push", CHANNEL, WsType.Ping, b"are you there"),
            ("web_socket_push", CHANNEL, WsType.Pong, b"late"),
            ("web_socket_push", CHANNEL, WsType.Text, b""),
        ]
        assert await client.frame() == (OP_PONG, b"are you there")
        assert bed.told_worker == []

    run(tmp_path, test)


# ---------------------------------------------------------------------- from the app

def test_the_apps_pushes_reach_the_client(tmp_path: Path) -> None:
    """Text (invalid UTF-8 repaired, as the worker does), Binary, Ping and Pong are
    written at once; each push says the socket is held here."""
    async def test(bed: Bed) -> None:
        client = bed.offer()
        held = bed.held
        assert held.push(CHANNEL, WsType.Text, "tëxt".encode())
        assert held.push(CHANNEL, WsType.Text, b"bad \xff utf-8")
        assert held.push(CHANNEL, WsType.Binary, b"\x00\x01")
        assert held.push(CHANNEL, WsType.Ping, b"p")
        assert held.push(CHANNEL, WsType.Pong, b"q")
        assert client.frames() == [(OP_TEXT, "tëxt".encode()), (OP_TEXT, "bad \ufffd utf-8".encode()),
                                   (OP_BINARY, b"\x00\x01"), (OP_PING, b"p"), (OP_PONG, b"q")]
        assert held.push(CHANNEL + 1, WsType.Text, b"not held here") is False
        assert client.quiet() and bed.delivered == [] and bed.told_worker == []

    run(tmp_path, test)


def test_a_ping_or_pong_push_over_125_bytes_is_not_sent(tmp_path: Path) -> None:
    """RFC 6455 5.5: a control frame carries at most 125 bytes; a longer one is not
    sent, as the worker answers such a push WsPingPongTooLong and sends nothing
    (test_ws_hub's test_pushes_from_the_owner_reach_the_client); 125 bytes go."""
    async def test(bed: Bed) -> None:
        client = bed.offer()
        assert bed.held.push(CHANNEL, WsType.Ping, bytes(range(126)))
        assert bed.held.push(CHANNEL, WsType.Pong, bytes(range(200)))
        assert bed.held.push(CHANNEL, WsType.Ping, bytes(range(125)))
        assert client.frames() == [(OP_PING, bytes(range(125)))]

    run(tmp_path, test)


def test_a_pushed_close_closes_1000_with_its_reason_and_nothing_goes_after_it(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        client = bed.offer()
        assert bed.held.push(CHANNEL, WsType.Close, b"done here")
        assert bed.held.push(CHANNEL, WsType.Text, b"too late"), "still held until the client answers"
        assert await client.frame() == (OP_CLOSE, close_body(1000, "done here"))
        assert client.quiet()

    run(tmp_path, test)


def test_close_closes_1000_without_a_reason(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        client = bed.offer()
        assert bed.held.close(CHANNEL) is True
        assert await client.frame() == (OP_CLOSE, close_body(1000))
        assert bed.held.close(CHANNEL + 1) is False

    run(tmp_path, test)


def test_a_client_that_does_not_take_what_is_pushed_is_closed_1008(tmp_path: Path) -> None:
    """The record's send_queue_bytes bounds what the client has not taken; the push
    past it closes the socket (1008) and is not sent, and the socket's last report
    says slow_reader with what did go."""
    async def test(bed: Bed) -> None:
        client = bed.offer(record(send_queue_bytes=65536))
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        channel = bed.held.channels[CHANNEL]
        assert channel.conn is not None
        payload = b"z" * 16384
        pushed = 0
        while not channel.conn.closing:
            assert pushed < 1000, "never counted as too slow"
            assert bed.held.push(CHANNEL, WsType.Binary, payload)
            pushed += 1
        assert channel.conn.unsent_bytes() <= 65536
        got = await client.frames_until(pushed, "every frame and the close frame")
        assert got[:-1] == [(OP_BINARY, payload)] * (pushed - 1)
        assert got[-1] == (OP_CLOSE, close_body(1008, "too slow: send queue full"))
        with contextlib.suppress(OSError):  # (a client slower than 1 s finds it closed already)
            client.send(masked(OP_CLOSE, close_body(1008)))
        await until(lambda: not bed.held.channels, "the socket to close")
        assert bed.worker_got() == [
            ("counts", [(CHANNEL, 0, pushed - 1, 0, 16384 * (pushed - 1), "slow_reader")]),
            ("close", CHANNEL),
        ]

    run(tmp_path, test)


# ---------------------------------------------------------------------- ends

def test_a_client_close_tells_the_app_then_the_worker(tmp_path: Path) -> None:
    """As the worker would: the Close push with the client's reason, then
    WebSocketClose, to the app; the worker gets the socket's last counts (closed:
    client), then a WebSocketClose action to let go of its descriptor."""
    async def test(bed: Bed) -> None:
        client = bed.offer()
        client.send(masked(OP_TEXT, b"hi") + masked(OP_CLOSE, close_body(1000, "bye")))
        assert await client.frame() == (OP_CLOSE, close_body(1000))
        await until(client.ended, "the socket to close")
        assert bed.app_got() == [
            ("web_socket_push", CHANNEL, WsType.Text, b"hi"),
            ("web_socket_push", CHANNEL, WsType.Close, b"bye"),
            ("web_socket_close", CHANNEL, 0, None),
        ]
        assert bed.worker_got() == [("counts", [(CHANNEL, 1, 0, 2, 0, "client")]), ("close", CHANNEL)]
        assert bed.held.channels == {} and bed.held.push(CHANNEL, WsType.Text, b"x") is False

    run(tmp_path, test)


def test_a_client_that_just_goes_away_is_websocket_close_only(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        client = bed.offer()
        client.sock.shutdown(socket.SHUT_WR)
        await until(lambda: not bed.held.channels, "the socket to close")
        assert bed.app_got() == [("web_socket_close", CHANNEL, 0, None)]
        assert bed.worker_got() == [("counts", [(CHANNEL, 0, 0, 0, 0, "client")]), ("close", CHANNEL)]

    run(tmp_path, test)


@pytest.mark.parametrize(("how", "closed"), [
    ("close", "app"),
    ("push_close", "app"),
    ("protocol_error", "protocol"),
    ("too_big", "too_big"),
])
def test_the_last_report_names_who_closed(tmp_path: Path, how: str, closed: str) -> None:
    """The reasons are the worker's own for the figures (HELD_CLOSE_REASONS)."""
    async def test(bed: Bed) -> None:
        client = bed.offer(record(max_message=4))
        if how == "close":
            bed.held.close(CHANNEL)
        elif how == "push_close":
            bed.held.push(CHANNEL, WsType.Close, b"why")
        elif how == "protocol_error":
            client.send(b"\x81\x02hi")  # not masked
        else:
            client.send(masked(OP_BINARY, b"12345"))
        opcode, _ = await client.frame()
        assert opcode == OP_CLOSE
        client.send(masked(OP_CLOSE, close_body(1000)))
        client.sock.shutdown(socket.SHUT_WR)
        await until(lambda: not bed.held.channels, "the socket to close")
        assert bed.worker_got() == [("counts", [(CHANNEL, 0, 0, 0, 0, closed)]), ("close", CHANNEL)]

    run(tmp_path, test)


def test_after_the_apps_own_close_the_app_hears_websocketclose_only(tmp_path: Path) -> None:
    """The app closes, 1000: once the client answered, the app hears WebSocketClose
    only, as through the worker (test_ws_hub.test_the_owner_closing_its_socket): the
    client's close frame answers the app's, it is not news."""
    async def test(bed: Bed) -> None:
        client = bed.offer()
        bed.held.close(CHANNEL)
        assert await client.frame() == (OP_CLOSE, close_body(1000))
        assert bed.delivered == [], "nothing until the client answers"
        client.send(masked(OP_CLOSE, close_body(1000, "ok")))
        await until(lambda: not bed.held.channels, "the socket to close")
        assert bed.app_got() == [("web_socket_close", CHANNEL, 0, None)]

    run(tmp_path, test)


def test_a_websocket_close_from_the_worker_closes_1001_and_the_app_is_not_told_twice(tmp_path: Path) -> None:
    """The path was unbound: the worker's WebSocketClose reaches the app as it is (the
    stub files it), and closes the held socket 1001; when it has closed, the app is
    told nothing more, and the worker gets the last counts and the WebSocketClose."""
    async def test(bed: Bed) -> None:
        client = bed.offer()
        other = bed.offer(channel_id=CHANNEL + 1)
        bed.held.told(close_message(CHANNEL + 7))  # not held here
        bed.held.told(Message(0, HTTP_SERVER, OUR, True, b"\x22\xff"))  # does not parse
        push = http_pb2.HttpServerRequest()
        push.web_socket_push.channel_id = CHANNEL
        bed.held.told(Message(0, HTTP_SERVER, OUR, True, push.SerializeToString()))  # not a close
        assert client.quiet() and other.quiet()
        bed.held.told(close_message(CHANNEL))
        assert await client.frame() == (OP_CLOSE, close_body(1001, "unbound"))
        client.send(masked(OP_CLOSE, close_body(1001, "fine")))
        await until(lambda: CHANNEL not in bed.held.channels, "the socket to close")
        assert bed.delivered == []
        # ("client": the worker forgot the socket at the unbind, and ignores these counts)
        assert bed.worker_got() == [("counts", [(CHANNEL, 0, 0, 0, 0, "client")]), ("close", CHANNEL)]
        assert other.quiet() and bed.held.holds(CHANNEL + 1)

    run(tmp_path, test)


# ---------------------------------------------------------------------- counts

def test_counts_are_reported_once_per_interval_only_for_what_moved(tmp_path: Path) -> None:
    """The first message either way schedules one report REPORT_S later; it carries
    the messages and payload bytes since the last one, for the sockets that moved
    (pings and pongs do not count); then nothing is scheduled until something moves
    again."""
    async def test(bed: Bed) -> None:
        client = bed.offer()
        quiet = bed.offer(channel_id=CHANNEL + 1)
        assert bed.reports == []
        client.send(masked(OP_TEXT, b"12345") + masked(OP_PING, b"p"))
        await until(lambda: len(bed.delivered) == 2, "the message and the ping")
        assert [r.delay for r in bed.reports] == [held_module.REPORT_S] == [1.0]
        client.send(masked(OP_BINARY, b"678"))
        await until(lambda: len(bed.delivered) == 3, "the second message")
        assert bed.held.push(CHANNEL, WsType.Text, b"abcd")
        assert bed.held.push(CHANNEL, WsType.Ping, b"p")
        assert bed.held.push(CHANNEL + 1, WsType.Pong, b"q")
        assert len(bed.reports) == 1, "one report while one is due"
        bed.reports[0].callback()
        assert bed.worker_got() == [("counts", [(CHANNEL, 2, 1, 8, 4, "")])]
        bed.held.report()  # nothing moved since
        assert len(bed.told_worker) == 1 and len(bed.reports) == 1
        assert bed.held.push(CHANNEL + 1, WsType.Binary, b"xy")
        assert len(bed.reports) == 2
        bed.reports[1].callback()
        assert bed.worker_got()[1:] == [("counts", [(CHANNEL + 1, 0, 1, 0, 2, "")])]
        assert quiet.frames() == [(OP_PONG, b"q"), (OP_BINARY, b"xy")]

    run(tmp_path, test)


def test_the_last_report_carries_what_moved_since_the_previous_one(tmp_path: Path) -> None:
    async def test(bed: Bed) -> None:
        client = bed.offer()
        client.send(masked(OP_TEXT, b"one"))
        await until(lambda: bed.delivered, "the message")
        bed.reports[0].callback()
        bed.held.push(CHANNEL, WsType.Binary, b"xyz")
        client.send(masked(OP_CLOSE, close_body(1000)))
        await until(lambda: not bed.held.channels, "the socket to close")
        assert bed.worker_got() == [("counts", [(CHANNEL, 1, 0, 3, 0, "")]),
                                    ("counts", [(CHANNEL, 0, 1, 0, 3, "client")]),
                                    ("close", CHANNEL)]
        bed.reports[1].callback()  # scheduled by the push: the socket is gone, nothing to say
        assert len(bed.told_worker) == 3

    run(tmp_path, test)


def test_a_worker_that_cannot_be_told_loses_the_figures_only(tmp_path: Path) -> None:
    """tell_worker raising (the kernel is away) neither stops the close nor reaches
    the loop (run() fails on any exception in a callback)."""
    async def test(bed: Bed) -> None:
        def away(body: bytes) -> None:
            raise OSError("kernel away")
        bed.held.tell_worker = away
        client = bed.offer()
        client.send(masked(OP_CLOSE, close_body(1000, "bye")))
        await until(client.ended, "the socket to close")
        assert bed.app_got() == [("web_socket_push", CHANNEL, WsType.Close, b"bye"),
                                 ("web_socket_close", CHANNEL, 0, None)]

    run(tmp_path, test)
