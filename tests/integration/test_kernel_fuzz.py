"""Random bytes and malformed multipart messages thrown at a live kernel: it must keep
routing for everyone else, and tell the sender what was wrong where it can."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import porch
from porch.wire import PROTOCOL_VERSION, kernel_pb2
from support.node import Node

ECHO = """
    import porch
    p = porch.Process()
    while True:
        m = p.await_message()
        p.respond(m, m.body)
"""


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Node, porch.Process, zmq.Socket[bytes]]]:
    node = Node()
    node.start("kernel")
    node.spawn("echo:demo:sys", ECHO)
    node.wait_registered("echo:demo:sys")
    client = node.process("client:demo:sys")
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(node.home.kernel_endpoint)
    try:
        yield node, client, raw
    finally:
        raw.close(0)
        node.close()


def _valid_envelope(data: st.DataObject) -> bytes:
    env = kernel_pb2.Envelope(
        version=data.draw(st.sampled_from([PROTOCOL_VERSION, 0, 2, 2**32 - 1])),
        id=data.draw(st.integers(0, 2**64 - 1)),
        source=data.draw(st.text(max_size=30)),
        target=data.draw(st.sampled_from(["echo:demo:sys", "kernel:distro:sys", "", "x",
                                          "http-server:distro:sys", "client:demo:sys"])),
    )
    kind = data.draw(st.sampled_from(["request", "response", "send_error", "control", None]))
    if kind == "request":
        env.request.body = data.draw(st.binary(max_size=64))
        env.request.expects_response = data.draw(st.booleans())
        env.request.deadline_ms = data.draw(st.integers(0, 2**64 - 1))
    elif kind == "response":
        env.response.body = data.draw(st.binary(max_size=64))
    elif kind == "send_error":
        env.send_error.kind = data.draw(st.integers(0, 3))  # type: ignore[assignment]
    elif kind == "control":
        which = data.draw(st.sampled_from(["register", "registered", "error", "registry",
                                           "unregister", "registry_query"]))
        if which == "register":
            env.control.register.process_id = data.draw(st.text(max_size=40))
        else:
            getattr(env.control, which).SetInParent()
    raw = env.SerializeToString()
    if data.draw(st.booleans()):  # truncate or corrupt
        cut = data.draw(st.integers(0, len(raw)))
        raw = raw[:cut] + data.draw(st.binary(max_size=8))
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_garbage_never_stops_the_kernel(live: tuple[Node, porch.Process, zmq.Socket[bytes]],
                                        data: st.DataObject) -> None:
    node, client, raw = live
    frames = data.draw(st.lists(
        st.one_of(st.binary(max_size=200), st.builds(lambda d: d, st.just(b""))),
        min_size=1, max_size=5,
    ))
    if data.draw(st.booleans()):
        frames[0] = _valid_envelope(data)
    raw.send_multipart(frames)
    while raw.poll(0):  # drain whatever the kernel told us
        raw.recv_multipart()
    if data.draw(st.integers(0, 9)) == 0:
        # Every so often: the kernel must still route for everyone else.
        assert client.send_and_await_response("echo:demo:sys", b"ping", timeout=5).body == b"ping"
    assert node.procs["kernel"].poll() is None


def test_kernel_still_routes_and_counted_the_garbage(
        live: tuple[Node, porch.Process, zmq.Socket[bytes]]) -> None:
    node, client, raw = live
    while raw.poll(300):  # late answers to the fuzz examples are not ours
        raw.recv_multipart()
    raw.send_multipart([b"\xff\xff\xff garbage"])
    assert raw.poll(5000), "the sender of garbage is told"
    err = kernel_pb2.Envelope.FromString(raw.recv()).control.error
    assert kernel_pb2.KernelError.Code.Name(err.code) == "Malformed"
    assert client.send_and_await_response("echo:demo:sys", b"still here").body == b"still here"
    assert client.registry().malformed >= 1
    assert "malformed message from" in node.log("kernel")
