"""Large blobs out of band (porch.link.fds): a sealed memfd passed with SCM_RIGHTS
through a real kernel. They arrive intact, the kernel neither copies nor keeps them,
a libzmq peer still gets them as frames, and a hostile descriptor is refused."""

from __future__ import annotations

import array
import os
import socket
import time
from pathlib import Path

import pytest
import zmq

import porch
from porch.link import codec as z
from porch.link.fds import FD_BLOB_MIN, FD_PROPERTY, memfd_blob
from porch.wire import PROTOCOL_VERSION, kernel_pb2
from support.node import Node, wait_for

MiB = 1024 * 1024
ECHO = """
    import porch
    p = porch.Process()
    while True:
        m = p.await_message()
        p.respond(m, b"echo:" + m.body, blob=m.blob)
"""


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def echo(node: Node) -> Node:
    node.spawn("echo:demo:sys", ECHO)
    node.wait_registered("echo:demo:sys")
    return node


def test_blobs_around_the_threshold_arrive_intact(echo: Node) -> None:
    a = echo.process("a:demo:sys")
    for size in (FD_BLOB_MIN - 1, FD_BLOB_MIN, FD_BLOB_MIN + 1, 20 * MiB):
        payload = os.urandom(1024) * (size // 1024) + os.urandom(size % 1024)
        reply = a.send_and_await_response("echo:demo:sys", b"x", blob=payload, mime="app/x", timeout=30)
        assert reply.blob == porch.Blob(payload, "app/x"), size


def test_the_kernel_neither_copies_nor_keeps_large_blobs(echo: Node) -> None:
    """Issue 10 item 1: 4 x 50 MB answered at once. The kernel's memory does not grow
    with them and every descriptor it passed on is closed afterwards."""
    kernel = echo.procs["kernel"].pid
    a = echo.process("a:demo:sys")
    a.send_and_await_response("echo:demo:sys", b"warm", blob=bytes(2 * MiB), timeout=30)
    fds_before, rss_before = fd_count(kernel), rss(kernel)
    payload = bytes(50 * 1000 * 1000)
    ids = [a.send_request("echo:demo:sys", b"x", blob=payload, expects_response=60) for _ in range(4)]
    got = [a.await_message(timeout=60) for _ in ids]
    assert all(m.blob is not None and len(m.blob.bytes) == len(payload) for m in got)
    assert rss(kernel) - rss_before < 20 * MiB, "the kernel held blob bytes"
    wait_for(lambda: fd_count(kernel) <= fds_before, what="the kernel's descriptors closed")


def test_a_libzmq_peer_gets_large_blobs_as_frames(echo: Node) -> None:
    """A peer that did not announce descriptors (pyzmq) is sent the bytes inline."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 20000)
    sock.connect(echo.home.kernel_endpoint)
    try:
        env = kernel_pb2.Envelope(version=PROTOCOL_VERSION, target="kernel:distro:sys")
        env.control.register.process_id = "zmq:demo:sys"
        sock.send(env.SerializeToString())
        assert kernel_pb2.Envelope.FromString(sock.recv()).control.WhichOneof("kind") == "registered"
        payload = os.urandom(3 * MiB)
        req = kernel_pb2.Envelope(version=PROTOCOL_VERSION, id=7, target="echo:demo:sys")
        req.request.expects_response = True
        req.request.deadline_ms = int(time.time() * 1000) + 20000
        sock.send_multipart([req.SerializeToString(), payload])  # echo answers with a memfd
        frames = sock.recv_multipart()
        reply = kernel_pb2.Envelope.FromString(frames[0])
        assert reply.WhichOneof("message") == "response" and not reply.blob_fd
        assert len(frames) == 2 and frames[1] == payload
    finally:
        sock.close()


class RawPeer:
    """A porch-like dealer written by hand, to send descriptors the stub never would."""

    def __init__(self, node: Node, process_id: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(node.home.kernel_socket))
        self.session = z.Session(1 << 30, z.DEALER, {FD_PROPERTY: b"1"})
        self.sock.sendall(b"".join(self.session.out))
        env = kernel_pb2.Envelope(version=PROTOCOL_VERSION, target="kernel:distro:sys")
        env.control.register.process_id = process_id
        self.send(env)
        assert self.recv().control.WhichOneof("kind") == "registered"

    def send(self, env: kernel_pb2.Envelope, fds: list[int] | None = None) -> None:
        data = z.encode_message([env.SerializeToString()])
        if fds:
            self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            self.sock.sendall(data)

    def recv(self) -> kernel_pb2.Envelope:
        while True:
            msgs = self.session.feed(self.sock.recv(65536))
            if msgs:
                return kernel_pb2.Envelope.FromString(bytes(msgs[0][0][0]))


def unsealed_memfd(size: int) -> int:
    fd = os.memfd_create("x")
    os.write(fd, bytes(size))
    return fd


@pytest.mark.parametrize("case", ["no descriptor", "a pipe", "unsealed", "wrong size", "a frame too"])
def test_a_hostile_blob_descriptor_is_refused_and_never_passed_on(echo: Node, case: str) -> None:
    mallory = RawPeer(echo, "mallory:demo:sys")
    a = echo.process("a:demo:sys")
    kernel = echo.procs["kernel"].pid
    fds_before = fd_count(kernel)
    env = kernel_pb2.Envelope(version=PROTOCOL_VERSION, id=99, target="echo:demo:sys")
    env.request.body = b"hostile"
    env.blob_fd = True
    env.blob_size = 4096
    mine: list[int] = []
    if case == "a pipe":
        r, w = os.pipe()
        mine = [r, w]
        fds = [r]
    elif case == "unsealed":
        mine = fds = [unsealed_memfd(4096)]
    elif case == "wrong size":
        mine = fds = [memfd_blob(bytes(100))]
    elif case == "a frame too":
        mine = fds = [memfd_blob(bytes(4096))]
    else:
        fds = []
    if case == "a frame too":
        mallory.sock.sendmsg([z.encode_message([env.SerializeToString(), b"frame"])],
                             [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        mallory.send(env, fds)
    answer = mallory.recv()
    assert kernel_pb2.KernelError.Code.Name(answer.control.error.code) == "Malformed", answer
    for fd in mine:
        os.close(fd)
    # The echo process got nothing odd and still answers.
    assert a.send_and_await_response("echo:demo:sys", b"ok", timeout=5).body == b"echo:ok"
    assert "hostile" not in echo.log("echo:demo:sys")
    wait_for(lambda: fd_count(kernel) <= fds_before, what="the kernel closed the descriptor")
