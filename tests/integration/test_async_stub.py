"""The asyncio stub (`porch.AsyncProcess`, the loop speaking ZMTP on the Unix socket)
against a real kernel: requests, errors, restarts, heartbeats, its output bound."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

import porch
from porch.link import dealer
from support.node import Node

# Short heartbeats for every process of these tests (kernel, spawned, in-process): a
# peer silent for 5 intervals (2 s) is dropped, so the idle and hung cases take seconds.
HEARTBEAT_IVL_S = "0.4"


@pytest.fixture(autouse=True)
def short_heartbeats(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("default_heartbeat") is None:
        monkeypatch.setenv("PORCH_HEARTBEAT_IVL_S", HEARTBEAT_IVL_S)


T = TypeVar("T")

ECHO = """
    import time, porch
    p = porch.Process()
    while True:
        m = p.await_message()
        if m.body.startswith(b"sleep "):
            print("got", m.body.decode(), flush=True)  # tests wait for this, not a guess
            time.sleep(float(m.body[6:]))
        p.respond(m, b"echo:" + m.body, blob=m.blob)
"""
MUTE = """
    import porch
    p = porch.Process()
    while True:
        p.await_message()  # never answers
"""
CONFIG = ('node = "test.os"\n[[process]]\nid = "vault:demo:sys"\ncommand = "true"\n'
          'public = false\n')


@pytest.fixture
def knode() -> Iterator[Node]:
    """A running kernel with an echo process and one that never answers."""
    n = Node(CONFIG)
    n.start("kernel")
    n.spawn("echo:demo:sys", ECHO)
    n.spawn("mute:demo:sys", MUTE)
    try:
        n.wait_registered("echo:demo:sys", "mute:demo:sys")
        yield n
    finally:
        n.close()


def run(node: Node, main: Callable[[porch.AsyncProcess], Awaitable[T]], *,
        process_id: str = "async:demo:sys") -> T:
    """Connect an AsyncProcess to node's kernel, run main(proc) (bounded), close it."""
    async def outer() -> T:
        proc = await porch.AsyncProcess.connect(process_id, home=node.home.root,
                                                connect_timeout=10)
        try:
            return await asyncio.wait_for(main(proc), 60)
        finally:
            proc.close()
    return asyncio.run(outer())


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    async def loop() -> None:
        while not await predicate():
            await asyncio.sleep(0.1)
    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


async def flows(proc: porch.AsyncProcess) -> bool:
    try:
        return (await proc.request("echo:demo:sys", b"ok", timeout=1)).body == b"echo:ok"
    except porch.SendError:
        return False


# --------------------------------------------------------------------------- messages and failures


def test_requests_responses_blobs_and_errors(knode: Node) -> None:
    big = os.urandom(5 * 1024 * 1024 + 17)

    async def main(proc: porch.AsyncProcess) -> None:
        assert proc.node == "test.os"
        reply = await proc.request("echo:demo:sys", b"hi", timeout=5)
        assert (reply.body, reply.source, reply.is_response) == (b"echo:hi", "echo:demo:sys", True)
        reply = await proc.request("echo:demo:sys", b"big", blob=big, mime="application/x-t",
                                   timeout=20)
        assert reply.blob == porch.Blob(big, "application/x-t")
        assert type(reply.blob.bytes) is bytes
        # Many at once, some with blobs of every size class, all answered in kind.
        sizes = [0, 1, 255, 256, 70_000, 300_000]
        replies = await asyncio.gather(*(
            proc.request("echo:demo:sys", str(i).encode(), blob=big[:sizes[i % 6]], timeout=20)
            for i in range(1200)))
        for i, r in enumerate(replies):
            assert r.body == f"echo:{i}".encode()
            assert (r.blob.bytes if r.blob else b"") == big[:sizes[i % 6]]
        with pytest.raises(porch.Offline) as off:
            await proc.request("nobody:demo:sys", b"x", timeout=5)
        assert not off.value.delivered
        with pytest.raises(porch.NoCapability):
            await proc.request("vault:demo:sys", b"x", timeout=5)
        with pytest.raises(porch.Timeout):
            await proc.request("echo:demo:sys", b"sleep 1.5", timeout=0.3)
        await until(lambda: flows(proc), "the echo process to be back from its sleep")
        registry = await proc.registry()
        assert "async:demo:sys" in {e.process_id for e in registry.entries}

    run(knode, main)


def test_an_asyncio_server_answers_blocking_and_asyncio_clients(knode: Node) -> None:
    big = os.urandom(3 * 1024 * 1024)

    async def main(server: porch.AsyncProcess) -> None:
        server.on_request(lambda m: server.respond(m, b"re:" + m.body, blob=m.blob))
        client = await porch.AsyncProcess.connect("aclient:demo:sys", home=knode.home.root)
        try:
            reply = await client.request("async:demo:sys", b"q", blob=big, timeout=20)
            assert (reply.body, reply.blob) == (b"re:q", porch.Blob(big))
            # Fire and forget, delivered in order to a recv() loop.
            server.on_request(None)
            for i in range(50):
                client.send_request("async:demo:sys", str(i).encode())
            got = [(await server.recv()).body for _ in range(50)]
            assert got == [str(i).encode() for i in range(50)]
        finally:
            client.close()
        server.on_request(lambda m: server.respond(m, b"re:" + m.body))
        blocking = await asyncio.to_thread(knode.process, "blocking:demo:sys")
        reply = await asyncio.to_thread(blocking.send_and_await_response, "async:demo:sys", b"b")
        assert reply.body == b"re:b"

    run(knode, main)


def test_kernel_restart_re_registers_and_keeps_watches(knode: Node) -> None:
    """The process lives through a kernel restart: pending requests fail Offline at
    once, callbacks tell it, it registers again, its watch is sent again, messages flow."""
    async def main(proc: porch.AsyncProcess) -> None:
        events: list[str] = []
        proc.on_disconnect(lambda: events.append("down"))
        proc.on_reconnect(lambda: events.append("up"))
        exited: asyncio.Queue[str] = asyncio.Queue()
        proc.watch("echo:demo:sys", exited.put_nowait)
        assert await flows(proc)
        pending = asyncio.ensure_future(proc.request("mute:demo:sys", b"x", timeout=60))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(knode.stop, "kernel")
        with pytest.raises(porch.Offline):
            await asyncio.wait_for(pending, 10)  # at once, not at the deadline
        with pytest.raises(porch.Offline):
            proc.send_request("echo:demo:sys", b"while away")
        await asyncio.to_thread(knode.start, "kernel")
        await until(lambda: flows(proc), "messages to flow after the kernel restart")
        assert events[:2] == ["down", "up"]
        # The new kernel got our watch again: the echo process's end is reported.
        knode.procs["echo:demo:sys"].kill()
        assert await asyncio.wait_for(exited.get(), 15) == "echo:demo:sys"

    run(knode, main)


def test_kill_9_of_the_kernel_fails_pending_requests_at_once(knode: Node) -> None:
    async def main(proc: porch.AsyncProcess) -> None:
        pending = [asyncio.ensure_future(proc.request("mute:demo:sys", b"x", timeout=60))
                   for _ in range(3)]
        await asyncio.sleep(0.3)
        knode.kill("kernel")
        for fut in pending:
            with pytest.raises(porch.Offline):
                await asyncio.wait_for(fut, 10)

    run(knode, main)


def test_close_unregisters_at_once(knode: Node) -> None:
    async def main(proc: porch.AsyncProcess) -> None:
        other = await porch.AsyncProcess.connect("closer:demo:sys", home=knode.home.root)
        got = asyncio.Event()
        other.on_request(lambda m: got.set())  # never answers
        pending = asyncio.ensure_future(proc.request("closer:demo:sys", b"x", timeout=60))
        await asyncio.wait_for(got.wait(), 10)  # delivered, then the close
        other.close()
        with pytest.raises(porch.Offline) as err:
            await asyncio.wait_for(pending, 10)
        assert err.value.delivered
        names = {e.process_id for e in (await proc.registry()).entries}
        assert "closer:demo:sys" not in names

    run(knode, main)


def test_connect_errors(knode: Node, tmp_path_factory: pytest.TempPathFactory) -> None:
    async def duplicate() -> None:
        # Held by another OS process (the same one would take its registration over).
        with pytest.raises(porch.KernelRefused) as err:
            await porch.AsyncProcess.connect("mute:demo:sys", home=knode.home.root, connect_timeout=10)
        assert err.value.code == "AlreadyRegistered"

    asyncio.run(duplicate())
    nowhere = f"ipc://{tmp_path_factory.mktemp('nokernel')}/kernel.sock"
    with pytest.raises(porch.KernelUnreachable, match=f"no kernel answered at {nowhere} within 0.5 s"):
        asyncio.run(porch.AsyncProcess.connect("lonely:demo:sys", endpoint=nowhere,
                                               connect_timeout=0.5))


# --------------------------------------------------------------------------- heartbeats and bounds


def test_kernel_pings_are_answered_across_a_long_idle(knode: Node) -> None:
    """Both sides PING every interval and drop a peer silent for 5: idle for longer,
    nothing is dropped (no disconnect, the same registration)."""
    async def main(proc: porch.AsyncProcess) -> None:
        events: list[str] = []
        proc.on_disconnect(lambda: events.append("down"))
        proc.on_reconnect(lambda: events.append("up"))
        before = {e.process_id: e for e in (await proc.registry()).entries}["async:demo:sys"]
        await asyncio.sleep(3)
        assert await flows(proc)
        after = {e.process_id: e for e in (await proc.registry()).entries}["async:demo:sys"]
        assert events == []
        assert after == before

    run(knode, main)


def test_a_loop_that_does_not_run_keeps_its_registration(knode: Node) -> None:
    """The loop stops (here between run_until_complete calls; a long blocking call is
    the same) for longer than the kernel's heartbeat timeout: the keepalive thread
    PINGs for it, as libzmq's I/O thread did, so nothing is dropped."""
    loop = asyncio.new_event_loop()
    try:
        proc = loop.run_until_complete(porch.AsyncProcess.connect(
            "async:demo:sys", home=knode.home.root, connect_timeout=10))
        events: list[str] = []
        proc.on_disconnect(lambda: events.append("down"))
        proc.on_reconnect(lambda: events.append("up"))
        assert loop.run_until_complete(flows(proc))
        time.sleep(3)
        assert loop.run_until_complete(flows(proc))
        assert events == []
        proc.close()
    finally:
        loop.close()


def test_a_hung_kernel_is_dropped_and_found_again(knode: Node) -> None:
    """A kernel that stops answering (SIGSTOP) is dropped after the heartbeat timeout:
    pending requests fail Offline; once it runs again the process registers again."""
    kernel = knode.procs["kernel"]

    async def main(proc: porch.AsyncProcess) -> None:
        events: list[str] = []
        proc.on_disconnect(lambda: events.append("down"))
        proc.on_reconnect(lambda: events.append("up"))
        pending = asyncio.ensure_future(proc.request("mute:demo:sys", b"x", timeout=60))
        await asyncio.sleep(0.3)
        kernel.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(porch.Offline):
                await asyncio.wait_for(pending, 20)
            assert events == ["down"]
        finally:
            kernel.send_signal(signal.SIGCONT)
        await until(lambda: flows(proc), "messages to flow once the kernel runs again")
        assert events[:2] == ["down", "up"]

    run(knode, main)


@pytest.mark.default_heartbeat  # filling the queue takes longer than a short timeout
def test_output_is_bounded_while_the_kernel_does_not_read(knode: Node) -> None:
    """Like libzmq's SNDHWM: with the kernel not reading, sends fail Offline once
    HIGH_WATER_MARK messages wait (nothing grows without bound); it recovers after."""
    kernel = knode.procs["kernel"]

    async def main(proc: porch.AsyncProcess) -> None:
        body = b"x" * 200
        kernel.send_signal(signal.SIGSTOP)
        try:
            sent = 0
            with pytest.raises(porch.Offline):
                while sent < 50 * dealer.HIGH_WATER_MARK:
                    proc.send_request("nobody:demo:sys", body)
                    sent += 1
                    if sent % 1000 == 0:
                        await asyncio.sleep(0)  # let the loop write what the socket takes
            assert sent >= dealer.HIGH_WATER_MARK
        finally:
            kernel.send_signal(signal.SIGCONT)
        await until(lambda: flows(proc), "messages to flow once the kernel reads again")

    run(knode, main)
