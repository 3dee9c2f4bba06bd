"""The kernel with real processes on a real ipc socket: routing, failure semantics,
capabilities, source stamping, registration."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import zmq

import porch
from porch.wire import PROTOCOL_VERSION, kernel_pb2
from support.node import Node, wait_for

ECHO = """
    import porch
    p = porch.Process()
    while True:
        m = p.await_message()
        if m.body == b"sleep":
            import time; time.sleep(60)
        p.respond(m, b"echo:" + m.body, blob=m.blob)
"""


def test_two_processes_exchange_requests_and_responses(node: Node) -> None:
    node.spawn("echo:demo:sys", ECHO)
    node.wait_registered("echo:demo:sys")
    a = node.process("a:demo:sys")
    reply = a.send_and_await_response("echo:demo:sys", b"hi", timeout=5)
    assert reply.body == b"echo:hi"
    assert reply.source == "echo:demo:sys"
    assert reply.is_response


def test_blob_and_mime_travel_beside_the_body(node: Node) -> None:
    node.spawn("echo:demo:sys", ECHO)
    node.wait_registered("echo:demo:sys")
    a = node.process("a:demo:sys")
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    reply = a.send_and_await_response("echo:demo:sys", b"x", blob=payload, mime="application/x-test")
    assert a.get_blob() == porch.Blob(payload, "application/x-test")
    assert reply.blob == porch.Blob(payload, "application/x-test")


def test_request_to_never_registered_id_is_offline_at_once(node: Node) -> None:
    a = node.process("a:demo:sys")
    started = time.monotonic()
    with pytest.raises(porch.Offline) as err:
        a.send_and_await_response("nobody:demo:sys", b"x", timeout=30)
    assert time.monotonic() - started < 1.0, "Offline must not wait for the deadline"
    assert err.value.target == "nobody:demo:sys"
    assert not err.value.delivered


def test_kill_9_with_request_pending_gives_offline_within_2s(node: Node) -> None:
    victim = node.spawn("victim:demo:sys", ECHO)
    node.wait_registered("victim:demo:sys")
    a = node.process("a:demo:sys")
    a.send_request("victim:demo:sys", b"sleep", expects_response=30)
    time.sleep(0.3)  # the request is now being "worked on"
    victim.send_signal(signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(porch.Offline) as err:
        a.await_message(timeout=10)
    assert time.monotonic() - started < 2.0
    assert err.value.delivered, "it died with the request: not the same as never running"


def test_no_answer_before_deadline_is_timeout_and_late_answer_is_dropped(node: Node) -> None:
    slow = """
        import time, porch
        p = porch.Process()
        while True:
            m = p.await_message()
            time.sleep(float(m.body))
            p.respond(m, b"late " + m.body)
    """
    node.spawn("slow:demo:sys", slow)
    node.wait_registered("slow:demo:sys")
    a = node.process("a:demo:sys")
    started = time.monotonic()
    with pytest.raises(porch.Timeout):
        a.send_and_await_response("slow:demo:sys", b"1.0", timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.5
    # The late answer (sent at ~1.0 s) must never surface as a message.
    reply = a.send_and_await_response("slow:demo:sys", b"0", timeout=5)
    assert reply.body == b"late 0"
    time.sleep(1.0)
    with pytest.raises(porch.Timeout):
        a.await_message(timeout=0.3)


def test_capability_needed_for_http_server(node: Node) -> None:
    """http-server:distro:sys is not public: without a grant the request never arrives."""
    # Something registered as http-server so that only the capability can stop delivery.
    fake_server = node.service_process("http-server:distro:sys")
    a = node.process("a:demo:sys")
    with pytest.raises(porch.NoCapability):
        a.send_and_await_response("http-server:distro:sys", b"bind please", timeout=2)
    a.send_request("http-server:distro:sys", b"fire and forget")
    with pytest.raises(porch.Timeout):
        fake_server.await_message(timeout=0.5)


def test_granted_capability_lets_the_message_through() -> None:
    n = Node('node = "test.os"\n[[process]]\nid = "b:demo:sys"\ncommand = "true"\n'
             'capabilities = ["http-server:distro:sys"]\n')
    try:
        n.start("kernel")
        server = n.service_process("http-server:distro:sys")
        b = n.process("b:demo:sys")
        b.send_request("http-server:distro:sys", b"hello")
        msg = server.await_message(timeout=5)
        assert (msg.source, msg.body) == ("b:demo:sys", b"hello")
    finally:
        n.close()


def test_private_process_needs_a_grant() -> None:
    n = Node('node = "test.os"\n[[process]]\nid = "vault:demo:sys"\ncommand = "true"\n'
             'public = false\n')
    try:
        n.start("kernel")
        n.process("vault:demo:sys")
        a = n.process("a:demo:sys")
        with pytest.raises(porch.NoCapability):
            a.send_and_await_response("vault:demo:sys", b"open", timeout=2)
    finally:
        n.close()


def test_spoofed_source_is_stamped_with_the_real_one(node: Node) -> None:
    """A raw client that registers as mallory but writes alice into source."""
    bob = node.process("bob:demo:sys")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(node.home.kernel_endpoint)
    try:
        reg = kernel_pb2.Envelope(version=PROTOCOL_VERSION, source="mallory:demo:sys",
                                  target="kernel:distro:sys")
        reg.control.register.process_id = "mallory:demo:sys"
        sock.send(reg.SerializeToString())
        assert sock.poll(5000)
        ack = kernel_pb2.Envelope.FromString(sock.recv())
        assert ack.control.WhichOneof("kind") == "registered"
        forged = kernel_pb2.Envelope(version=PROTOCOL_VERSION, id=7, source="alice:demo:sys",
                                     target="bob:demo:sys")
        forged.request.body = b"trust me, I am alice"
        sock.send(forged.SerializeToString())
        msg = bob.await_message(timeout=5)
        assert msg.source == "mallory:demo:sys"
        assert msg.body == b"trust me, I am alice"
    finally:
        sock.close(0)


def test_forged_response_from_a_third_process_is_dropped(node: Node) -> None:
    node.spawn("slow:demo:sys", """
        import time, porch
        p = porch.Process()
        while True:
            m = p.await_message(); time.sleep(0.5); p.respond(m, b"real")
    """)
    node.wait_registered("slow:demo:sys")
    a = node.process("a:demo:sys")
    mallory = node.process("mallory:demo:sys")
    id_ = a.send_request("slow:demo:sys", b"q", expects_response=5)
    fake = porch.Message(id_, "a:demo:sys", "mallory:demo:sys", True, b"")
    mallory.respond(fake, b"forged")
    reply = a.await_message(timeout=5)
    assert reply.body == b"real"


def test_second_live_registration_is_refused_with_a_clear_error(node: Node) -> None:
    node.process("one:demo:sys")
    node.spawn("one:demo:sys", "import porch\nporch.Process()\n")
    proc = node.procs["one:demo:sys"]
    assert proc.wait(15) != 0
    assert "AlreadyRegistered" in node.log("one:demo:sys")
    assert "already registered by a live process" in node.log("one:demo:sys")


def test_invalid_process_id_is_refused(node: Node) -> None:
    with pytest.raises(porch.InvalidProcessId):
        node.process("My_App:pkg:pub.os")
    # A raw client bypassing the stub's own check gets the kernel's refusal.
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(node.home.kernel_endpoint)
    try:
        reg = kernel_pb2.Envelope(version=PROTOCOL_VERSION)
        reg.control.register.process_id = "My_App:pkg:pub.os"
        sock.send(reg.SerializeToString())
        assert sock.poll(5000)
        err = kernel_pb2.Envelope.FromString(sock.recv()).control.error
        assert kernel_pb2.KernelError.Code.Name(err.code) == "InvalidProcessId"
    finally:
        sock.close(0)


def test_restarted_process_can_register_its_id_again(node: Node) -> None:
    first = node.spawn("phoenix:demo:sys", ECHO)
    node.wait_registered("phoenix:demo:sys")
    first.kill()
    first.wait()
    node.spawn("phoenix:demo:sys", ECHO)
    node.wait_registered("phoenix:demo:sys")
    a = node.process("a:demo:sys")
    assert a.send_and_await_response("phoenix:demo:sys", b"1").body == b"echo:1"


def test_wrong_protocol_version_gets_a_clear_error(node: Node) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(node.home.kernel_endpoint)
    try:
        env = kernel_pb2.Envelope(version=PROTOCOL_VERSION + 1, id=5)
        env.control.register.process_id = "future:demo:sys"
        sock.send(env.SerializeToString())
        assert sock.poll(5000)
        err = kernel_pb2.Envelope.FromString(sock.recv()).control.error
        assert kernel_pb2.KernelError.Code.Name(err.code) == "VersionMismatch"
        assert f"v{PROTOCOL_VERSION}" in err.detail
    finally:
        sock.close(0)


def test_unregistered_sender_is_told_to_register(node: Node) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(node.home.kernel_endpoint)
    try:
        env = kernel_pb2.Envelope(version=PROTOCOL_VERSION, id=9, target="a:demo:sys")
        env.request.body = b"x"
        sock.send(env.SerializeToString())
        assert sock.poll(5000)
        err = kernel_pb2.Envelope.FromString(sock.recv()).control.error
        assert kernel_pb2.KernelError.Code.Name(err.code) == "NotRegistered"
        assert err.id == 9
    finally:
        sock.close(0)


def test_expired_request_is_never_worked_on(node: Node) -> None:
    """The deadline travels in the message: a target busy past it drops the request."""
    node.spawn("busy:demo:sys", """
        import time, porch
        p = porch.Process()
        first = p.await_message()
        time.sleep(1.0)                      # meanwhile, a second request expires
        p.respond(first, b"first")
        second = p.await_message()           # must not be the expired one
        p.respond(second, b"got " + second.body)
    """)
    node.wait_registered("busy:demo:sys")
    a = node.process("a:demo:sys")
    a.send_request("busy:demo:sys", b"one", expects_response=5)
    with pytest.raises(porch.Timeout):
        a.send_and_await_response("busy:demo:sys", b"expired", timeout=0.3)
    assert a.await_message(timeout=5).body == b"first"
    assert a.send_and_await_response("busy:demo:sys", b"fresh", timeout=5).body == b"got fresh"


def test_asyncio_api_runs_many_requests_at_once(node: Node) -> None:
    node.spawn("echo:demo:sys", ECHO)
    node.wait_registered("echo:demo:sys")

    async def main() -> list[bytes]:
        proc = await porch.AsyncProcess.connect("async:demo:sys", home=node.home.root)
        try:
            replies = await asyncio.gather(
                *(proc.request("echo:demo:sys", str(i).encode(), timeout=5) for i in range(200))
            )
            with pytest.raises(porch.Offline):
                await proc.request("nobody:demo:sys", b"x", timeout=5)
            return [r.body for r in replies]
        finally:
            proc.close()

    bodies = asyncio.run(main())
    assert bodies == [f"echo:{i}".encode() for i in range(200)]


def test_asyncio_process_answers_requests(node: Node) -> None:
    async def serve(ready: asyncio.Event) -> None:
        proc = await porch.AsyncProcess.connect("aserver:demo:sys", home=node.home.root)
        proc.on_request(lambda m: proc.respond(m, b"async:" + m.body))
        ready.set()
        await asyncio.sleep(3)
        proc.close()

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve(ready))
        await ready.wait()
        client = await porch.AsyncProcess.connect("aclient:demo:sys", home=node.home.root)
        reply = await client.request("aserver:demo:sys", b"q", timeout=5)
        assert reply.body == b"async:q"
        client.close()
        task.cancel()

    asyncio.run(main())


def test_kernel_restart_processes_reregister_without_restarting(node: Node) -> None:
    echo = node.spawn("echo:demo:sys", ECHO)
    node.wait_registered("echo:demo:sys")
    a = node.process("a:demo:sys")
    assert a.send_and_await_response("echo:demo:sys", b"before").body == b"echo:before"
    node.stop("kernel")
    with pytest.raises(porch.Offline):
        a.send_and_await_response("echo:demo:sys", b"during", timeout=1)
    node.start("kernel")

    def flows() -> bool:
        try:
            return a.send_and_await_response("echo:demo:sys", b"after", timeout=1).body == b"echo:after"
        except porch.SendError:
            return False

    wait_for(flows, 15, interval=0.2, what="messages to flow after the kernel restart")
    assert echo.poll() is None, "the echo process must not have restarted"


def test_kernel_death_fails_pending_requests_at_once(node: Node) -> None:
    node.spawn("slow:demo:sys", "import time, porch\np = porch.Process()\np.await_message()\ntime.sleep(60)\n")
    node.wait_registered("slow:demo:sys")
    a = node.process("a:demo:sys")
    a.send_request("slow:demo:sys", b"x", expects_response=30)
    time.sleep(0.2)
    node.kill("kernel")
    started = time.monotonic()
    with pytest.raises(porch.Offline):
        a.await_message(timeout=10)
    assert time.monotonic() - started < 3.0


def test_second_kernel_for_the_same_home_refuses_to_start(node: Node) -> None:
    second = node.start("kernel2", module="porch.kernel", wait=False)
    assert second.wait(15) == 1
    assert "another kernel is already running" in node.log("kernel2")
    a = node.process("a:demo:sys")  # the first kernel still serves
    assert a.registry().node == "test.os"


def test_registry_lists_processes_with_pids(node: Node) -> None:
    proc = node.spawn("echo:demo:sys", ECHO)
    node.wait_registered("echo:demo:sys")
    a = node.process("a:demo:sys")
    reg = a.registry()
    entries = {e.process_id: e.os_pid for e in reg.entries}
    assert entries["echo:demo:sys"] == proc.pid
    assert entries["a:demo:sys"] == os.getpid()


def test_watch_reports_a_killed_process_once(node: Node) -> None:
    victim = node.spawn("victim:demo:sys", ECHO)
    node.wait_registered("victim:demo:sys")

    async def main() -> tuple[list[str], float, list[str]]:
        proc = await porch.AsyncProcess.connect("watcher:demo:sys", home=node.home.root)
        exited: asyncio.Queue[str] = asyncio.Queue()
        proc.watch("victim:demo:sys", exited.put_nowait)
        await asyncio.sleep(0.2)
        victim.kill()
        started = time.monotonic()
        first = await asyncio.wait_for(exited.get(), 5)
        took = time.monotonic() - started
        # A process that never registered: reported (after the kernel's start-up grace).
        proc.watch("never:demo:sys", exited.put_nowait)
        second = await asyncio.wait_for(exited.get(), 10)
        proc.close()
        return [first], took, [second]

    first, took, second = asyncio.run(main())
    assert first == ["victim:demo:sys"]
    assert took < 2.0
    assert second == ["never:demo:sys"]
