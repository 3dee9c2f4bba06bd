"""A process's session over a link to a kernel on another machine (issue 15), with a
fake link: blobs go inline (no descriptors cross machines), deadlines are converted
between the kernel's clock and ours, a refused key is a refusal."""

from __future__ import annotations

import os
from typing import Any

import pytest

from porch.link.fds import FD_BLOB_MIN, BlobFile, MemfdWriter
from porch.process.message import Blob
from porch.process.session import Incoming, KernelSession, Refused
from porch.wire import PROTOCOL_VERSION, kernel_pb2, now_ms

Envelope = kernel_pb2.Envelope


class FakeLink:
    takes_fds = False
    remote = True
    connected = True
    closed = False

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes | None, int]] = []

    def send(self, frame: bytes, blob: bytes | None = None, fd: int = -1) -> bool:
        self.sent.append((frame, blob, fd))
        return True

    def take_fd(self) -> int:
        return -1

    def close(self, goodbye: bytes | None = None) -> None:
        pass


def session() -> tuple[KernelSession, FakeLink, list[Incoming]]:
    link = FakeLink()
    got: list[Incoming] = []
    s = KernelSession("w:g:s", "tcp://node:1", link)
    s.bind(got.append, lambda: None)
    return s, link, got


def registered(s: KernelSession, kernel_time_ms: int) -> None:
    env = Envelope(version=PROTOCOL_VERSION, source="kernel:distro:sys", target="w:g:s")
    ack = env.control.registered
    ack.process_id, ack.node, ack.kernel_boot_id, ack.kernel_time_ms = "w:g:s", "n.os", "b", kernel_time_ms
    s.on_message([env.SerializeToString()])


def test_large_blobs_and_blob_files_go_inline() -> None:
    s, link, _ = session()
    big = os.urandom(FD_BLOB_MIN + 10)
    s.send_envelope(s.new_request("a:b:c", b"x"), Blob(big))
    writer = MemfdWriter("t")
    writer.write(b"file blob")
    blob_file = BlobFile(writer.seal(), 9)
    fd = blob_file.fd
    s.send_envelope(s.new_request("a:b:c", b"y"), blob_file)
    (f1, b1, fd1), (f2, b2, fd2) = link.sent
    assert (b1, fd1, b2, fd2) == (big, -1, b"file blob", -1)
    for frame in (f1, f2):
        assert not Envelope.FromString(frame).blob_fd
    with pytest.raises(OSError):  # sending handed the descriptor over: it is closed
        os.fstat(fd)


def test_deadlines_follow_the_kernels_clock() -> None:
    s, _, got = session()
    skew = 3_600_000  # the kernel's clock is an hour ahead of ours
    registered(s, now_ms() + skew)
    env = s.new_request("a:b:c", b"x", timeout=5)
    assert abs(env.request.deadline_ms - (now_ms() + skew + 5000)) < 2000
    incoming = Envelope(version=PROTOCOL_VERSION, id=9, source="a:b:c", target="w:g:s")
    incoming.request.expects_response = True
    incoming.request.deadline_ms = now_ms() + skew + 5000
    s.on_message([incoming.SerializeToString()])
    msg: Any = got[-1]
    # Not dropped as expired, and on our clock.
    assert msg.id == 9 and abs(msg.deadline_ms - (now_ms() + 5000)) < 2000


def test_local_links_ignore_the_kernels_time() -> None:
    s, link, _ = session()
    link.remote = False
    registered(s, now_ms() + 3_600_000)
    assert s.clock_offset_ms == 0


def test_a_refused_key_is_delivered_as_a_refusal() -> None:
    s, _, got = session()
    s.on_refused("the kernel refused this process's key")
    assert isinstance(got[-1], Refused) and got[-1].code == "KeyRefused"
