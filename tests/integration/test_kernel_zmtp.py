"""The kernel's ZMTP server (`porch.link.server`), against real pyzmq (libzmq) peers and
raw Unix-socket clients: garbage connections, heartbeats, a peer that stops
reading, disconnects seen at once, large blobs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import porch
from porch.link import codec as z
from porch.wire import PROTOCOL_VERSION, kernel_pb2
from support.node import Node, alive, wait_for

CONFIG = 'node = "test.os"\n'
ECHO = """
    import porch
    p = porch.Process()
    while True:
        m = p.await_message()
        p.respond(m, b"echo:" + m.body, blob=m.blob)
"""
# What a libzmq DEALER says first: its greeting, then READY.
HELLO = z.greeting() + z.ready(b"DEALER", {b"Identity": b""})


def register_envelope(process_id: str) -> bytes:
    env = kernel_pb2.Envelope(version=PROTOCOL_VERSION, source=process_id, target="kernel:distro:sys")
    env.control.register.process_id = process_id
    return env.SerializeToString()


def request_envelope(source: str, target: str, id_: int, body: bytes) -> bytes:
    env = kernel_pb2.Envelope(version=PROTOCOL_VERSION, id=id_, source=source, target=target)
    env.request.body = body
    return env.SerializeToString()


def connect_raw(node: Node) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(node.home.kernel_socket))
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the kernel sends until it closes the connection (fails if it does not)."""
    sock.settimeout(timeout)
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # it closed with our bytes unread: closed all the same
            return bytes(data)
        except TimeoutError:
            raise AssertionError(f"the kernel kept the connection open; got {bytes(data)[:200]!r}") from None
        if not chunk:
            return bytes(data)
        data += chunk


def read_messages(sock: socket.socket, want: int) -> list[list[bytes]]:
    """Our side of a raw ZMTP connection: messages after the kernel's greeting and READY."""
    buf = b""
    msgs: list[list[bytes]] = []
    frames: list[bytes] = []
    greeted = False
    while len(msgs) < want:
        buf += sock.recv(65536)
        if not greeted:
            if len(buf) < 64:
                continue
            buf, greeted = buf[64:], True
        while len(buf) >= 2:
            flags = buf[0]
            size, start = (struct.unpack(">Q", buf[1:9])[0], 9) if flags & z.LONG else (buf[1], 2)
            if len(buf) < start + size:
                break
            body, buf = buf[start:start + size], buf[start + size:]
            if flags & z.COMMAND:
                continue  # READY, PING
            frames.append(body)
            if not flags & z.MORE:
                msgs.append(frames)
                frames = []
    return msgs


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Node, porch.Process]]:
    node = Node(CONFIG)
    node.start("kernel")
    node.spawn("echo:demo:sys", ECHO)
    node.wait_registered("echo:demo:sys")
    client = node.process("client:demo:sys")
    try:
        yield node, client
    finally:
        node.close()


@pytest.fixture
def znode() -> Iterator[Node]:
    n = Node(CONFIG)
    n.start("kernel")
    try:
        yield n
    finally:
        n.close()


def still_routes(client: porch.Process) -> None:
    assert client.send_and_await_response("echo:demo:sys", b"ping", timeout=5).body == b"echo:ping"


# --------------------------------------------------------------------------- garbage


def test_the_kernel_runs_on_zmtp(live: tuple[Node, porch.Process]) -> None:
    node, client = live
    assert "kernel transport: zmtp" in node.log("kernel")
    still_routes(client)


_last_refusal = [0.0]  # the kernel logs one refusal a second: each case waits its turn


@pytest.mark.parametrize("payload, why", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not ZMTP"),
    (b"\xff" + bytes(8) + b"\x00", "not ZMTP"),
    (z.greeting(major=2), "ZMTP 2.x is not supported"),
    (z.greeting(mechanism=b"PLAIN"), "mechanism PLAIN is not supported"),
    (z.greeting(mechanism=b"CURVE"), "mechanism CURVE is not supported"),
    (z.greeting() + z.ready(b"PUB"), "socket type PUB"),
    (z.greeting() + z.encode_message([b"no READY first"]), "before the READY"),
    (HELLO + b"\x02" + struct.pack(">Q", (1 << 30) + 1), "exceeds the maximum"),
    (HELLO + b"\x02" + struct.pack(">Q", 2**64 - 1), "exceeds the maximum"),
    (HELLO + b"\x80\x01x", "reserved frame flags"),
    (HELLO + z.command(b"SUBSCRIBE", b""), "unexpected command"),
], ids=["http", "signature", "zmtp2", "plain", "curve", "pub", "no-ready", "oversized", "2**64",
        "reserved-flags", "subscribe"])
def test_a_connection_breaking_the_protocol_is_closed_and_counted(
        live: tuple[Node, porch.Process], payload: bytes, why: str) -> None:
    node, client = live
    time.sleep(max(0.0, _last_refusal[0] + 1.1 - time.monotonic()))
    before = client.registry().malformed
    logged = len(node.log("kernel"))
    with connect_raw(node) as sock:
        sock.sendall(payload)
        got = read_until_closed(sock)
    assert got.startswith(z.greeting()), "the kernel greets every connection first"
    if b"PUB" in payload:
        assert z.error("invalid socket type PUB for a ROUTER") in got, "ERROR before closing"
    wait_for(lambda: client.registry().malformed > before, 5, what="the refusal to be counted")
    _last_refusal[0] = time.monotonic()
    still_routes(client)
    line = wait_for(lambda: next((x for x in node.log("kernel")[logged:].splitlines()
                                  if "closed connection" in x), None), 5, what="the refusal's log line")
    assert why in line, line


def test_truncated_frame_then_eof_delivers_nothing(live: tuple[Node, porch.Process]) -> None:
    node, client = live
    with connect_raw(node) as sock:
        message = z.encode_message([register_envelope("half:demo:sys")])
        sock.sendall(HELLO + message[:-3])
    still_routes(client)
    assert "half:demo:sys" not in {e.process_id for e in client.registry().entries}


def test_a_peer_that_never_finishes_the_handshake_does_not_block_others(
        live: tuple[Node, porch.Process]) -> None:
    node, client = live
    with connect_raw(node) as sock:
        sock.sendall(z.greeting()[:30])
        still_routes(client)
        other = connect_raw(node)
        other.sendall(HELLO + z.encode_message([register_envelope("late:demo:sys")]))
        assert len(read_messages(other, 1)) == 1  # Registered
        other.close()
    still_routes(client)


GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(lambda g, at, junk: g[:at] + junk, st.just(z.greeting()), st.integers(0, 64),
              st.binary(max_size=40)),
    st.builds(lambda m, tail: z.greeting(mechanism=m) + tail,
              st.sampled_from([b"PLAIN", b"CURVE", b"GSSAPI", b"", b"NULX"]), st.binary(max_size=40)),
    st.builds(lambda major, tail: z.greeting(major=major) + tail, st.integers(0, 2), st.binary(max_size=20)),
    st.builds(lambda t: z.greeting() + z.ready(t), st.sampled_from([b"PUB", b"SUB", b"PUSH", b"PAIR", b""])),
    st.builds(lambda body, cut: HELLO + z.encode_message([body])[:cut],
              st.binary(max_size=300), st.integers(0, 300)),
    st.builds(lambda size: HELLO + b"\x02" + struct.pack(">Q", size),
              st.integers((1 << 30) + 1, 2**64 - 1)),
    st.builds(lambda junk: HELLO + junk, st.binary(min_size=1, max_size=200)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=GARBAGE, wait=st.booleans(), check=st.integers(0, 9))
def test_garbage_connections_never_stop_the_kernel(
        live: tuple[Node, porch.Process], payload: bytes, wait: bool, check: int) -> None:
    node, client = live
    with connect_raw(node) as sock:
        try:
            sock.sendall(payload)
            if wait:  # let the kernel answer or hang up before we do
                sock.settimeout(0.05)
                while sock.recv(65536):
                    pass
        except OSError:
            pass  # it hung up on us first, or (timeout) it waits for more
    if check == 0:
        still_routes(client)
    assert node.procs["kernel"].poll() is None


def test_after_the_garbage_a_real_dealer_still_registers_and_routes(
        live: tuple[Node, porch.Process]) -> None:
    node, client = live
    still_routes(client)
    other = node.process("after:demo:sys")
    assert other.send_and_await_response("echo:demo:sys", b"x", timeout=5).body == b"echo:x"
    assert node.procs["kernel"].poll() is None


# --------------------------------------------------------------------------- liveness


def test_heartbeats_keep_idle_dealers_and_drop_a_silent_peer(znode: Node) -> None:
    """Over ~7 s of idle (the kernel's heartbeat timeout is 5 s): a DEALER that PINGs
    fast, a plain DEALER that only answers the kernel's PINGs, and a stub all stay
    connected and registered; a raw peer that never answers is dropped, and a request
    pending on it fails Offline."""
    ctx = zmq.Context.instance()
    dealers = {}
    monitors = {}
    for name, opts in (("fast:demo:sys", {zmq.HEARTBEAT_IVL: 200, zmq.HEARTBEAT_TIMEOUT: 1000,
                                          zmq.HEARTBEAT_TTL: 1000}),
                       ("plain:demo:sys", {})):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        for opt, value in opts.items():
            sock.setsockopt(opt, value)
        monitors[name] = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        sock.connect(znode.home.kernel_endpoint)
        sock.send(register_envelope(name))
        assert sock.poll(5000), f"{name} got no answer to Register"
        ack = kernel_pb2.Envelope.FromString(sock.recv())
        assert ack.control.WhichOneof("kind") == "registered"
        dealers[name] = sock
    stub = znode.process("stub:demo:sys")
    silent = connect_raw(znode)
    silent.sendall(HELLO + z.encode_message([register_envelope("silent:demo:sys")]))
    assert len(read_messages(silent, 1)) == 1
    try:
        stub.send_request("silent:demo:sys", b"anyone?", expects_response=30)
        started = time.monotonic()
        with pytest.raises(porch.Offline) as err:
            stub.await_message(timeout=15)  # ~5-6 s; at the request's deadline (30 s) if never
        assert err.value.delivered
        time.sleep(max(0.0, 7.0 - (time.monotonic() - started)))
        for name, monitor in monitors.items():
            assert not monitor.poll(0), f"{name} was disconnected while idle"
        registered = {e.process_id for e in stub.registry().entries}
        assert {"fast:demo:sys", "plain:demo:sys", "stub:demo:sys"} <= registered
        assert "silent:demo:sys" not in registered
        for name in dealers:
            stub.send_request(name, b"still there?")
            assert dealers[name].poll(5000), f"{name} no longer receives"
        assert "heartbeat timeout" in znode.log("kernel")
    finally:
        silent.close()
        for name, sock in dealers.items():
            sock.disable_monitor()
            monitors[name].close(0)
            sock.close(0)


def test_a_closed_connection_fails_its_pending_requests_at_once(znode: Node) -> None:
    """The process lives on, but its connection closed without Unregister: Offline now,
    not at the deadline (the kernel sees the EOF itself)."""
    a = znode.process("a:demo:sys")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(znode.home.kernel_endpoint)
    sock.send(register_envelope("brief:demo:sys"))
    assert sock.poll(5000)
    sock.recv()
    a.send_request("brief:demo:sys", b"q", expects_response=30)
    assert sock.poll(5000), "the request arrives"
    sock.close(0)
    started = time.monotonic()
    with pytest.raises(porch.Offline) as err:
        a.await_message(timeout=10)
    assert time.monotonic() - started < 2.0
    assert err.value.delivered
    assert "connection closed" in znode.log("kernel")


def test_kill_9_gives_offline_even_when_a_forked_child_keeps_the_connection(znode: Node) -> None:
    """The child inherits the socket, so no EOF comes when the registered process dies:
    the pidfd watch still notices the death at once."""
    victim = znode.spawn("forker:demo:sys", """
        import os, sys, time, porch
        p = porch.Process()
        child = os.fork()
        if child == 0:
            time.sleep(60)
            os._exit(0)
        print("child", child, flush=True)
        p.await_message()
        print("working", flush=True)
        time.sleep(60)
    """)
    znode.wait_registered("forker:demo:sys")
    znode.wait_log("forker:demo:sys", "child ")
    child = int(znode.log("forker:demo:sys").split("child ")[1].split()[0])
    try:
        a = znode.process("a:demo:sys")
        a.send_request("forker:demo:sys", b"work", expects_response=30)
        znode.wait_log("forker:demo:sys", "working")
        victim.kill()
        started = time.monotonic()
        with pytest.raises(porch.Offline) as err:
            a.await_message(timeout=10)
        assert err.value.delivered, "it died with the request: the forked-child case itself"
        assert time.monotonic() - started < 2.0
        assert alive(child)
        znode.wait_log("kernel", f"unregistered forker:demo:sys (os pid {victim.pid}): process exited")
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


# --------------------------------------------------------------------------- flow


def test_a_peer_that_stops_reading_gets_offline_while_others_flow(znode: Node) -> None:
    """Its queue in the kernel is bounded: once full, requests to it fail Offline at
    once, and everyone else's messages keep moving."""
    znode.spawn("echo:demo:sys", ECHO)
    znode.wait_registered("echo:demo:sys")
    stuck = zmq.Context.instance().socket(zmq.DEALER)
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 64 * 1024)
    stuck.connect(znode.home.kernel_endpoint)
    try:
        stuck.send(register_envelope("stuck:demo:sys"))
        assert stuck.poll(5000)
        stuck.recv()  # Registered; from here on it never reads
        a = znode.process("a:demo:sys")
        blob = bytes(1 << 20)
        offline = None
        for i in range(400):  # 400 MiB: far past the kernel's bound for one peer
            a.send_request("stuck:demo:sys", b"%d" % i, blob=blob, expects_response=60)
            try:
                a.await_message(timeout=0)
            except porch.Offline as exc:
                offline = exc
                break
            except porch.Timeout:
                pass  # nothing yet (a local wait of 0 s)
            if i % 20 == 0:
                assert a.send_and_await_response("echo:demo:sys", b"%d" % i, timeout=5).body \
                    == b"echo:%d" % i
        assert offline is not None, "the kernel never refused a request to a peer that stopped reading"
        assert "not accepting messages" in str(offline)
        assert not offline.delivered
        assert a.send_and_await_response("echo:demo:sys", b"after", timeout=5).body == b"echo:after"
        assert "stuck:demo:sys" in {e.process_id for e in a.registry().entries}
    finally:
        stuck.close(0)


def test_blobs_larger_than_the_read_chunk_travel_intact(znode: Node) -> None:
    znode.spawn("echo:demo:sys", ECHO)
    znode.wait_registered("echo:demo:sys")
    a = znode.process("a:demo:sys")
    payload = bytes(range(256)) * (40 * 4096 + 3)  # ~40 MiB, not a multiple of anything
    reply = a.send_and_await_response("echo:demo:sys", b"big", blob=payload, timeout=30)
    assert reply.body == b"echo:big"
    assert reply.blob is not None and reply.blob.bytes == payload


def test_many_processes_at_once(znode: Node) -> None:
    """Interleaved traffic from several connections, each with its own partial reads."""
    for i in range(4):
        znode.spawn(f"echo{i}:demo:sys", ECHO)
    znode.wait_registered(*(f"echo{i}:demo:sys" for i in range(4)))

    async def main() -> list[bytes]:
        proc = await porch.AsyncProcess.connect("many:demo:sys", home=znode.home.root)
        try:
            replies = await asyncio.gather(*(
                proc.request(f"echo{i % 4}:demo:sys", b"%d" % i, blob=bytes(i * 997), timeout=10)
                for i in range(400)))
            return [r.body for r in replies]
        finally:
            proc.close()

    assert asyncio.run(main()) == [b"echo:%d" % i for i in range(400)]


# --------------------------------------------------------------------------- other languages


def readme_example(marker: str) -> str:
    """The code block that follows `<!-- readme-example: marker -->` in README.md."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    after = readme.split(f"<!-- readme-example: {marker} -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readmes_pyzmq_process_registers_and_answers(znode: Node) -> None:
    """A plain libzmq DEALER (pyzmq) with the README's 20 lines is a process like any
    other: it registers, is found by name, answers requests, and its death is seen."""
    proc = znode.spawn("reverse:demo:sys", readme_example("pyzmq-process"))
    znode.wait_registered("reverse:demo:sys")
    client = znode.process("client:demo:sys")
    assert client.send_and_await_response("reverse:demo:sys", b"porch", timeout=5).body == b"hcrop"
    proc.kill()
    proc.wait(5)
    with pytest.raises(porch.Offline):
        client.send_and_await_response("reverse:demo:sys", b"again", timeout=5)
