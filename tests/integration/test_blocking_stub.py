"""The blocking stub (`porch.Process`, its own calls speaking ZMTP on the Unix socket)
against a real kernel, in the test process and in the user processes it starts:
requests, order, errors, restarts, the flush at exit, heartbeats, its output bound."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from test_async_stub import CONFIG, ECHO, MUTE

import porch
from porch.link import dealer
from support.node import Node, stopped, wait_for

# Short heartbeats for every process of these tests (kernel, spawned, in-process): a
# peer silent for 5 intervals (2 s) is dropped, so the idle and hung cases take seconds.
HEARTBEAT_IVL_S = "0.4"


@pytest.fixture(autouse=True)
def short_heartbeats(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("default_heartbeat") is None:
        monkeypatch.setenv("PORCH_HEARTBEAT_IVL_S", HEARTBEAT_IVL_S)


# Before answering a request, sends its requester a request of its own: the requester
# must see that request first, then the answer (one connection keeps its order).
RELAY = """
    import porch
    p = porch.Process()
    while True:
        m = p.await_message()
        p.send_request(m.source, b"req:" + m.body)
        p.respond(m, b"resp:" + m.body)
"""
MiB = 1024 * 1024


@dataclass
class Bed:
    node: Node

    def process(self, process_id: str, **kwargs: object) -> porch.Process:
        return self.node.process(process_id, **kwargs)

    def spawn(self, process_id: str, source: str) -> None:
        self.node.spawn(process_id, source)


@contextmanager
def running() -> Iterator[Node]:
    """A kernel, with an echo process and one that never answers."""
    n = Node(CONFIG)
    try:
        n.start("kernel")
        n.spawn("echo:demo:sys", ECHO)
        n.spawn("mute:demo:sys", MUTE)
        n.wait_registered("echo:demo:sys", "mute:demo:sys")
        yield n
    finally:
        n.close()


@pytest.fixture
def bed() -> Iterator[Bed]:
    with running() as n:
        yield Bed(n)


@pytest.fixture
def znode() -> Iterator[Node]:
    with running() as n:
        yield n


def flows(proc: porch.Process) -> bool:
    try:
        return proc.send_and_await_response("echo:demo:sys", b"ok", timeout=1).body == b"echo:ok"
    except porch.SendError:
        return False


# --------------------------------------------------------------------------- messages and failures


def test_requests_responses_and_blobs_of_several_mib(bed: Bed) -> None:
    a = bed.process("a:demo:sys")
    assert a.node == "test.os"
    reply = a.send_and_await_response("echo:demo:sys", b"hi", timeout=5)
    assert (reply.body, reply.source, reply.is_response, reply.blob) == (b"echo:hi", "echo:demo:sys",
                                                                          True, None)
    big = os.urandom(6 * MiB + 17)
    reply = a.send_and_await_response("echo:demo:sys", b"big", blob=big, mime="application/x-t",
                                      timeout=30)
    assert reply.blob == porch.Blob(big, "application/x-t")
    assert a.get_blob() == reply.blob
    # Every size class of blob, many requests in flight, answers in order.
    sizes = [0, 1, 255, 256, 70_000, 300_000, 3 * MiB]
    ids = [a.send_request("echo:demo:sys", str(i).encode(), blob=big[:sizes[i % 7]], expects_response=30)
           for i in range(70)]
    got = [a.await_message(timeout=30) for _ in ids]
    assert [m.id for m in got] == ids
    for i, m in enumerate(got):
        assert m.body == f"echo:{i}".encode()
        assert (m.blob.bytes if m.blob else b"") == big[:sizes[i % 7]]


def test_await_message_keeps_the_order_of_requests_and_responses(bed: Bed) -> None:
    """Requests to us and responses to our requests come out of await_message in the
    order they arrived, also when they arrived during a send_and_await_response."""
    bed.spawn("relay:demo:sys", RELAY)
    bed.node.wait_registered("relay:demo:sys")
    a = bed.process("a:demo:sys")
    ids = [a.send_request("relay:demo:sys", str(i).encode(), expects_response=10) for i in range(20)]
    # Its answer comes after the relay's request to us, and after all of the above.
    assert a.send_and_await_response("relay:demo:sys", b"sync", timeout=10).body == b"resp:sync"
    got = [a.await_message(timeout=10) for _ in range(41)]
    expected: list[tuple[bool, bytes]] = []
    for i in range(20):
        expected += [(True, f"req:{i}".encode()), (False, f"resp:{i}".encode())]
    expected.append((True, b"req:sync"))
    assert [(m.is_request, m.body) for m in got] == expected
    assert [m.id for m in got if not m.is_request] == ids
    # The relay's requests can be answered like any other (fire and forget: nothing comes).
    a.respond(body=b"thanks")  # the last request, by default
    with pytest.raises(porch.Timeout):
        a.await_message(timeout=0.3)


def test_offline_timeout_and_no_capability(bed: Bed) -> None:
    a = bed.process("a:demo:sys")
    with pytest.raises(porch.Offline) as off:
        a.send_and_await_response("nobody:demo:sys", b"x", timeout=30)
    assert (off.value.target, off.value.delivered) == ("nobody:demo:sys", False)
    with pytest.raises(porch.NoCapability):
        a.send_and_await_response("vault:demo:sys", b"x", timeout=30)
    with pytest.raises(porch.Timeout):
        a.send_and_await_response("echo:demo:sys", b"sleep 1.5", timeout=0.3)
    # The same three through await_message, for requests sent with expects_response.
    a.send_request("nobody:demo:sys", b"x", expects_response=30)
    with pytest.raises(porch.Offline):
        a.await_message(timeout=10)
    a.send_request("vault:demo:sys", b"x", expects_response=30)
    with pytest.raises(porch.NoCapability):
        a.await_message(timeout=10)
    wait_for(lambda: flows(a), 15, what="the echo process to be back from its sleep")
    a.send_request("echo:demo:sys", b"sleep 1.5", expects_response=0.3)
    with pytest.raises(porch.Timeout):
        a.await_message(timeout=10)
    # The late answer is dropped, never delivered.
    wait_for(lambda: flows(a), 15, what="the echo process to be back from its sleep")
    with pytest.raises(porch.Timeout):
        a.await_message(timeout=0.5)
    assert "a:demo:sys" in {e.process_id for e in a.registry().entries}


def test_kill_9_of_the_target_with_a_request_pending_is_offline_within_2_s(bed: Bed) -> None:
    bed.spawn("victim:demo:sys", ECHO)
    bed.node.wait_registered("victim:demo:sys")
    a = bed.process("a:demo:sys")
    a.send_request("victim:demo:sys", b"sleep 60", expects_response=30)
    bed.node.wait_log("victim:demo:sys", "got sleep 60")
    bed.node.kill("victim:demo:sys")
    started = time.monotonic()
    with pytest.raises(porch.Offline) as err:
        a.await_message(timeout=10)
    assert time.monotonic() - started < 2.0
    assert err.value.delivered


def test_kernel_restart_re_registers_and_messages_flow(bed: Bed) -> None:
    echo = bed.node.procs["echo:demo:sys"]
    a = bed.process("a:demo:sys")
    assert flows(a)
    a.send_request("mute:demo:sys", b"x", expects_response=60)
    time.sleep(0.2)
    bed.node.stop("kernel")
    with pytest.raises(porch.Offline):  # the pending one, at once
        a.await_message(timeout=10)
    with pytest.raises(porch.Offline):
        a.send_and_await_response("echo:demo:sys", b"during", timeout=1)
    with pytest.raises(porch.Offline):
        a.send_request("echo:demo:sys", b"during")
    bed.node.start("kernel")
    wait_for(lambda: flows(a), 15, interval=0.2, what="messages to flow after the kernel restart")
    assert echo.poll() is None, "the echo process must not have restarted"
    assert {"a:demo:sys", "echo:demo:sys", "mute:demo:sys"} <= {e.process_id for e in a.registry().entries}


def test_respond_while_the_kernel_is_away_drops_the_answer_and_does_not_raise(bed: Bed) -> None:
    """A process answering in a loop must ride out a kernel restart: respond returns
    False instead of raising (the requester was told Offline by its own side)."""
    a = bed.process("a:demo:sys")
    b = bed.process("b:demo:sys")
    a.send_request("b:demo:sys", b"q", expects_response=30)
    request = b.await_message(timeout=5)
    bed.node.stop("kernel")
    with pytest.raises(porch.Offline):
        a.await_message(timeout=10)
    assert b.respond(request, b"too late") is False
    bed.node.start("kernel")
    wait_for(lambda: flows(a), 15, interval=0.2, what="messages to flow after the kernel restart")

    def b_registered() -> bool:  # b reconnects inside its own calls, as in an await loop
        with pytest.raises(porch.Timeout):
            b.await_message(timeout=0.2)
        return "b:demo:sys" in {e.process_id for e in a.registry().entries}

    wait_for(b_registered, 15, interval=0, what="b to re-register")
    a.send_request("b:demo:sys", b"again", expects_response=10)
    assert b.respond(b.await_message(timeout=5), b"in time") is True
    assert a.await_message(timeout=5).body == b"in time"


def test_kernel_killed_during_send_and_await_response_is_offline_at_once(bed: Bed) -> None:
    a = bed.process("a:demo:sys")
    assert flows(a)
    killer = threading.Timer(0.5, bed.node.kill, ("kernel",))
    killer.start()
    started = time.monotonic()
    try:
        with pytest.raises(porch.Offline):
            a.send_and_await_response("mute:demo:sys", b"x", timeout=60)
    finally:
        killer.join()
    assert time.monotonic() - started < 10, "not at the deadline"


def test_a_response_sent_just_before_exit_is_delivered(bed: Bed) -> None:
    """The process answers (a blob larger than the socket buffers) and exits at once,
    without close(): what it sent still leaves."""
    bed.spawn("quitter:demo:sys", """
        import porch
        p = porch.Process()
        m = p.await_message()
        p.respond(m, b"bye", blob=bytes(range(256)) * (16 * 1024))   # 4 MiB
    """)
    bed.node.wait_registered("quitter:demo:sys")
    a = bed.process("a:demo:sys")
    reply = a.send_and_await_response("quitter:demo:sys", b"last words?", timeout=20)
    assert reply.body == b"bye"
    assert reply.blob is not None and reply.blob.bytes == bytes(range(256)) * (16 * 1024)
    assert bed.node.procs["quitter:demo:sys"].wait(10) == 0


def test_a_long_computation_keeps_the_registration(bed: Bed) -> None:
    """The process computes for 3 s without calling the stub (the kernel drops a peer
    silent for 2 s here), right after sending a response too large for the socket
    buffers (but under the size that goes as a memfd):
    that response is delivered during the computation, and a request that waited for it
    is answered after, by the same registration."""
    bed.spawn("thinker:demo:sys", """
        import time, porch
        p = porch.Process()
        m = p.await_message()
        p.respond(m, b"big", blob=bytes(range(256)) * 3500)   # 875 KiB, inline
        time.sleep(3)                                        # no stub calls
        m = p.await_message()
        p.respond(m, b"done:" + m.body)
        p.await_message()
    """)
    bed.node.wait_registered("thinker:demo:sys")
    a = bed.process("a:demo:sys")
    before = {e.process_id: e.os_pid for e in a.registry().entries}["thinker:demo:sys"]
    first = a.send_request("thinker:demo:sys", b"1", expects_response=30)
    second = a.send_request("thinker:demo:sys", b"2", expects_response=30)
    big = a.await_message(timeout=2.5)  # before the computation ends
    assert (big.id, big.body, big.blob.bytes if big.blob else None) == (
        first, b"big", bytes(range(256)) * 3500)
    done = a.await_message(timeout=20)
    assert (done.id, done.body) == (second, b"done:2")
    after = {e.process_id: e.os_pid for e in a.registry().entries}["thinker:demo:sys"]
    assert after == before
    log = bed.node.log("kernel")
    assert log.count(" registered thinker:demo:sys") == 1 and "unregistered thinker" not in log
    assert bed.node.procs["thinker:demo:sys"].poll() is None


def test_close_unregisters_at_once(bed: Bed) -> None:
    a = bed.process("a:demo:sys")
    closer = bed.process("closer:demo:sys")
    a.send_request("closer:demo:sys", b"x", expects_response=60)
    assert closer.await_message(timeout=5).body == b"x"
    closer.close()
    with pytest.raises(porch.Offline) as err:
        a.await_message(timeout=10)
    assert err.value.delivered
    assert "closer:demo:sys" not in {e.process_id for e in a.registry().entries}


def test_connect_errors(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(porch.KernelRefused) as err:
        bed.process("mute:demo:sys")  # held by another OS process
    assert err.value.code == "AlreadyRegistered"
    nowhere = f"ipc://{tmp_path_factory.mktemp('nokernel')}/kernel.sock"
    with pytest.raises(porch.KernelUnreachable,
                       match=f"no kernel answered at {nowhere} within 0.5 s .is the node running"):
        porch.Process("lonely:demo:sys", endpoint=nowhere, connect_timeout=0.5)


# --------------------------------------------------------------------------- heartbeats and bounds


def test_an_idle_process_answers_pings_and_keeps_its_registration(znode: Node) -> None:
    """Waiting in await_message for longer than the heartbeat timeout, and idle
    between calls for as long: nothing is dropped, the registration is the same."""
    a = znode.process("a:demo:sys")
    before = {e.process_id: e for e in a.registry().entries}["a:demo:sys"]
    with pytest.raises(porch.Timeout):
        a.await_message(timeout=3)
    time.sleep(3)
    assert flows(a)
    after = {e.process_id: e for e in a.registry().entries}["a:demo:sys"]
    assert after == before
    log = znode.log("kernel")
    assert "heartbeat" not in log and "unregistered a:demo:sys" not in log


def test_a_hung_kernel_is_dropped_and_found_again(znode: Node) -> None:
    """A kernel that stops answering (SIGSTOP) is dropped after the heartbeat timeout:
    the request waiting for it fails Offline; once it runs again, messages flow."""
    a = znode.process("a:demo:sys")
    a.send_request("mute:demo:sys", b"x", expects_response=60)
    time.sleep(0.3)
    with stopped(znode.procs["kernel"].pid):
        with pytest.raises(porch.Offline):
            a.await_message(timeout=20)
        with pytest.raises(porch.Offline):
            a.send_request("echo:demo:sys", b"while hung")
    wait_for(lambda: flows(a), 20, interval=0.2, what="messages to flow once the kernel runs again")


@pytest.mark.default_heartbeat  # filling the queue takes longer than a short timeout
def test_output_is_bounded_while_the_kernel_does_not_read(znode: Node) -> None:
    """Like libzmq's SNDHWM: with the kernel not reading, sends fail Offline once
    HIGH_WATER_MARK messages wait (nothing grows without bound); it recovers after."""
    a = znode.process("a:demo:sys")

    def queued() -> bool:
        try:
            a.send_request("nobody:demo:sys", b"x" * 200)
        except porch.Offline:
            return False
        return True

    limit = dealer.HIGH_WATER_MARK
    with stopped(znode.procs["kernel"].pid):
        refused = next((n for n in range(50 * limit) if not queued()), None)
    assert refused is not None and refused >= limit
    wait_for(lambda: flows(a), 20, interval=0.2, what="messages to flow once the kernel reads again")


def test_what_an_asyncio_loop_left_queued_leaves_while_it_does_not_run(znode: Node) -> None:
    """The keepalive thread is shared by both stubs: an asyncio process that queues a
    large message and then does not run its loop for longer than the heartbeat timeout
    has the message delivered meanwhile, and keeps its registration."""
    sink = znode.process("sink:demo:sys")
    payload = bytes(range(256)) * 3500  # 875 KiB: more than the socket buffers take, inline
    received: list[porch.Message] = []
    got = threading.Event()

    def receive() -> None:
        received.append(sink.await_message(timeout=30))
        got.set()

    reader = threading.Thread(target=receive)
    reader.start()
    try:
        with asyncio.Runner() as runner:  # the loop runs only inside runner.run
            proc = runner.run(porch.AsyncProcess.connect("async:demo:sys", home=znode.home.root))
            lost: list[str] = []
            proc.on_disconnect(lambda: lost.append("connection"))
            proc.send_request("sink:demo:sys", b"while away", blob=payload)
            assert got.wait(3), "delivered while the loop did not run"
            message = received[0]
            assert (message.source, message.body) == ("async:demo:sys", b"while away")
            assert message.blob is not None and message.blob.bytes == payload
            assert runner.run(proc.request("echo:demo:sys", b"ok", timeout=5)).body == b"echo:ok"
            assert lost == []
            proc.close()
    finally:
        reader.join()
