"""The kernel's router in-process, over a fake transport: the routing rules without
sockets or processes (the real transport is tested in integration/test_kernel*.py)."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest

from porch.kernel.policy import CapabilityPolicy
from porch.kernel.router import Kernel
from porch.kernel.transport import FULL, UNREACHABLE, SendFailed
from porch.link.fds import memfd_blob
from porch.wire import PROTOCOL_VERSION, kernel_pb2, now_ms

Envelope = kernel_pb2.Envelope
TOKEN = "the-service-token"


@dataclass(eq=False)
class Conn:
    name: str
    takes_fds: bool = True
    full: bool = False  # its queue takes nothing more (bounded sends fail)
    gone: bool = False
    sent: list[tuple[Envelope, Any, bool, int]] = field(default_factory=list)
    fds_in: deque[int] = field(default_factory=deque)

    def envelopes(self) -> list[Envelope]:
        return [env for env, *_ in self.sent]

    def take(self) -> Envelope:
        return self.sent.pop(0)[0]


class FakeTransport:
    name = "fake"
    endpoint = "fake://"

    def send(self, conn: Conn, frame: Any, blob: Any, bounded: bool = True, fd: int = -1) -> None:
        if conn.gone:
            raise SendFailed(UNREACHABLE)
        if conn.full and bounded:
            raise SendFailed(FULL)
        conn.sent.append((Envelope.FromString(bytes(frame)), blob, bounded, fd))

    def take_fd(self, conn: Conn) -> int:
        return conn.fds_in.popleft() if conn.fds_in else -1

    def takes_fds(self, conn: Conn) -> bool:
        return conn.takes_fds

    def peer_pid(self, conn: Conn) -> int:
        return 0  # no pidfd watching in-process

    def describe(self, conn: Conn) -> str:
        return conn.name

    def close(self) -> None:
        pass


class Bed:
    def __init__(self, grants: dict[str, list[str]] | None = None, private: tuple[str, ...] = ()) -> None:
        self.transport = FakeTransport()
        self.kernel = Kernel("fake://", "test.os", CapabilityPolicy(grants or {}, private),
                             transport=self.transport, service_token=TOKEN)  # type: ignore[arg-type]

    def connect(self, pid: str, token: str = "", **kw: Any) -> Conn:
        conn = Conn(pid, **kw)
        env = Envelope(version=PROTOCOL_VERSION, source=pid, target="kernel:distro:sys")
        env.control.register.process_id = pid
        env.control.register.service_token = token
        self.kernel.deliver(conn, env.SerializeToString(), None)
        reply = conn.take()
        assert reply.control.WhichOneof("kind") == "registered", reply
        return conn

    def request(self, conn: Conn, target: str, id_: int, *, expects: bool = True, rsvp: str = "",
                deadline_ms: int = 0, source: str = "", blob: Any = None, blob_fd: int | None = None,
                blob_size: int = 0) -> None:
        env = Envelope(version=PROTOCOL_VERSION, id=id_, source=source or conn.name, target=target,
                       rsvp=rsvp)
        env.request.body = b"q"
        if expects:
            env.request.expects_response = True
            env.request.deadline_ms = deadline_ms or now_ms() + 10_000
        if blob_fd is not None:  # -1: the flag without a descriptor
            env.blob_fd, env.blob_size = True, blob_size
            if blob_fd >= 0:
                conn.fds_in.append(blob_fd)
        self.kernel.deliver(conn, env.SerializeToString(), blob)

    def respond(self, conn: Conn, to: str, id_: int, body: bytes = b"a", blob: Any = None) -> None:
        env = Envelope(version=PROTOCOL_VERSION, id=id_, source=conn.name, target=to)
        env.response.body = body
        self.kernel.deliver(conn, env.SerializeToString(), blob)


def send_error(env: Envelope) -> tuple[str, bool]:
    assert env.WhichOneof("message") == "send_error", env
    return kernel_pb2.SendError.Kind.Name(env.send_error.kind), env.send_error.delivered


def kernel_error(env: Envelope) -> str:
    assert env.control.WhichOneof("kind") == "error", env
    return kernel_pb2.KernelError.Code.Name(env.control.error.code)


def test_a_request_reaches_its_target_stamped_with_the_real_source() -> None:
    bed = Bed()
    a, b = bed.connect("a:x:y"), bed.connect("b:x:y")
    bed.request(a, "b:x:y", 1, source="forged:x:y", blob=b"blob")
    env, blob, bounded, fd = b.sent[0]
    assert (env.source, env.id, blob, bounded, fd) == ("a:x:y", 1, b"blob", True, -1)
    assert bed.kernel.counters.spoofed == 1


def test_the_response_goes_back_once_and_only_from_the_target() -> None:
    bed = Bed()
    a, b, c = bed.connect("a:x:y"), bed.connect("b:x:y"), bed.connect("c:x:y")
    bed.request(a, "b:x:y", 7)
    bed.respond(c, "a:x:y", 7, b"forged")
    assert a.sent == []
    bed.respond(b, "a:x:y", 7, b"real")
    assert a.take().response.body == b"real"
    bed.respond(b, "a:x:y", 7, b"again")
    assert a.sent == [] and bed.kernel.counters.late == 2


def test_offline_at_once_for_a_target_that_is_not_running() -> None:
    bed = Bed()
    a = bed.connect("a:x:y")
    bed.request(a, "nobody:x:y", 1)
    assert send_error(a.take()) == ("Offline", False)
    bed.request(a, "nobody:x:y", 2, expects=False)
    assert a.sent == [], "fire and forget: nobody to tell"


def test_a_past_deadline_is_timeout_before_delivery() -> None:
    bed = Bed()
    a, b = bed.connect("a:x:y"), bed.connect("b:x:y")
    bed.request(a, "b:x:y", 1, deadline_ms=now_ms() - 1)
    assert send_error(a.take()) == ("Timeout", False)
    assert b.sent == []


def test_the_deadline_fires_timeout_once() -> None:
    bed = Bed()
    a, b = bed.connect("a:x:y"), bed.connect("b:x:y")
    deadline = now_ms() + 5000
    bed.request(a, "b:x:y", 1, deadline_ms=deadline)
    bed.kernel.expire(deadline - 1)
    assert a.sent == []
    bed.kernel.expire(deadline)
    env = a.take()
    assert send_error(env) == ("Timeout", False) and env.source == "b:x:y"
    assert a.sent[-1:] == [] and bed.kernel.counters.timeouts == 1
    bed.respond(b, "a:x:y", 1)
    assert a.sent == [], "a late answer is dropped"


def test_a_death_fails_what_was_pending_on_it_and_forgets_what_it_waited_for() -> None:
    bed = Bed()
    a, b = bed.connect("a:x:y"), bed.connect("b:x:y")
    bed.request(a, "b:x:y", 1)
    bed.request(b, "a:x:y", 2)
    assert a.take().id == 2  # b's own request reached a
    bed.kernel.disconnected(b)
    env = a.take()  # a's request, which b was to answer
    assert send_error(env) == ("Offline", True) and env.id == 1
    assert len(bed.kernel.pending) == 0, "b's request to a is forgotten with b"
    bed.respond(a, "b:x:y", 2)
    assert a.sent == [] and bed.kernel.counters.late == 1


def test_no_capability_for_a_private_target_without_a_grant() -> None:
    bed = Bed(grants={"granted:x:y": ["vault:x:y"]}, private=("vault:x:y",))
    a, ok, vault = bed.connect("a:x:y"), bed.connect("granted:x:y"), bed.connect("vault:x:y")
    bed.request(a, "vault:x:y", 1)
    assert send_error(a.take()) == ("NoCapability", False)
    bed.request(ok, "vault:x:y", 2)
    assert vault.take().id == 2


@pytest.mark.parametrize("service", ["http-server:distro:sys", "http-client:distro:sys"])
def test_system_services_may_message_private_processes(service: str) -> None:
    bed = Bed(private=("vault:x:y",))
    svc, vault = bed.connect(service, TOKEN), bed.connect("vault:x:y")
    bed.request(svc, "vault:x:y", 1)
    assert vault.take().source == service


def test_the_rpc_identity_is_an_ordinary_sender_and_never_public() -> None:
    bed = Bed(private=("vault:x:y",))
    rpc, vault = bed.connect("rpc:distro:sys", TOKEN), bed.connect("vault:x:y")
    a = bed.connect("a:x:y")
    bed.request(rpc, "vault:x:y", 1)
    assert send_error(rpc.take())[0] == "NoCapability" and vault.sent == []
    bed.request(a, "rpc:distro:sys", 2)
    assert send_error(a.take())[0] == "NoCapability"


def test_only_a_system_service_may_send_the_answer_elsewhere() -> None:
    bed = Bed()
    a, b, m = bed.connect("a:x:y"), bed.connect("b:x:y"), bed.connect("mallory:x:y")
    bed.request(m, "mallory:x:y", 5, rsvp="a:x:y")
    assert send_error(m.take())[0] == "NoCapability" and a.sent == [] and m.sent == []
    svc = bed.connect("http-client:distro:sys", TOKEN)
    bed.request(svc, "b:x:y", 6, rsvp="a:x:y")
    assert b.take().id == 6
    bed.respond(b, "a:x:y", 6, b"for a")
    assert a.take().response.body == b"for a" and svc.sent == []
    bed.request(svc, "b:x:y", 7, rsvp="nobody:x:y")
    assert send_error(svc.take()) == ("Offline", False)


def test_a_requester_cannot_replace_its_own_pending_request() -> None:
    bed = Bed()
    a, b, c = bed.connect("a:x:y"), bed.connect("b:x:y"), bed.connect("c:x:y")
    bed.request(a, "b:x:y", 1)
    bed.request(a, "c:x:y", 1)
    assert kernel_error(a.take()) == "Malformed" and c.sent == []
    bed.respond(b, "a:x:y", 1)
    assert a.take().WhichOneof("message") == "response"


def test_an_answer_the_requester_cannot_take_is_a_typed_error_at_once() -> None:
    """Issue 10 item 1: the requester's queue is full; it is told, past the bound."""
    bed = Bed()
    a, b = bed.connect("a:x:y"), bed.connect("b:x:y")
    bed.request(a, "b:x:y", 1)
    a.full = True
    bed.respond(b, "a:x:y", 1, b"big")
    env, _, bounded, _ = a.sent[-1]
    assert send_error(env) == ("Offline", True) and not bounded
    assert "could not be delivered" in env.send_error.detail
    assert bed.kernel.counters.undeliverable == 1


def test_a_request_the_target_cannot_take_is_offline_to_the_requester() -> None:
    bed = Bed()
    a, b = bed.connect("a:x:y"), bed.connect("b:x:y")
    b.full = True
    bed.request(a, "b:x:y", 1)
    assert send_error(a.take()) == ("Offline", False)
    assert len(bed.kernel.pending) == 0


@pytest.mark.parametrize("pid", ["http-server:distro:sys", "rpc:distro:sys", "x:distro:sys"])
def test_reserved_ids_take_the_service_token(pid: str) -> None:
    bed = Bed()
    for token in ("", "wrong"):
        conn = Conn("rogue")
        env = Envelope(version=PROTOCOL_VERSION, target="kernel:distro:sys")
        env.control.register.process_id = pid
        env.control.register.service_token = token
        bed.kernel.deliver(conn, env.SerializeToString(), None)
        assert kernel_error(conn.take()) == "ReservedProcessId"
    bed.connect(pid, TOKEN)


def test_a_kernel_without_a_token_lets_no_one_take_a_reserved_id() -> None:
    bed = Bed()
    bed.kernel.service_token = ""
    conn = Conn("x")
    env = Envelope(version=PROTOCOL_VERSION, target="kernel:distro:sys")
    env.control.register.process_id = "http-server:distro:sys"
    bed.kernel.deliver(conn, env.SerializeToString(), None)
    assert kernel_error(conn.take()) == "ReservedProcessId"


@pytest.mark.parametrize("pid", ["kernel:distro:sys", "A:b:c", "a:b", "a" * 65 + ":b:c", ""])
def test_invalid_ids_are_refused(pid: str) -> None:
    bed = Bed()
    conn = Conn("x")
    env = Envelope(version=PROTOCOL_VERSION, target="kernel:distro:sys")
    env.control.register.process_id = pid
    env.control.register.service_token = TOKEN
    bed.kernel.deliver(conn, env.SerializeToString(), None)
    assert kernel_error(conn.take()) == "InvalidProcessId"


def test_one_id_one_live_connection() -> None:
    bed = Bed()
    bed.connect("a:x:y")
    conn = Conn("a:x:y")
    env = Envelope(version=PROTOCOL_VERSION, target="kernel:distro:sys")
    env.control.register.process_id = "a:x:y"
    bed.kernel.deliver(conn, env.SerializeToString(), None)
    assert kernel_error(conn.take()) == "AlreadyRegistered"


def test_garbage_and_unregistered_senders_are_answered_not_routed() -> None:
    bed = Bed()
    b = bed.connect("b:x:y")
    stranger = Conn("stranger")
    bed.kernel.deliver(stranger, b"\xff\xff garbage", None)
    assert kernel_error(stranger.take()) == "Malformed"
    bed.request(stranger, "b:x:y", 1)
    assert kernel_error(stranger.take()) == "NotRegistered" and b.sent == []
    old = Envelope(version=PROTOCOL_VERSION + 1, id=3, target="b:x:y")
    bed.kernel.deliver(stranger, old.SerializeToString(), None)
    assert kernel_error(stranger.take()) == "VersionMismatch"


def test_a_blob_descriptor_is_handed_over_or_inlined_for_a_peer_that_takes_none() -> None:
    bed = Bed()
    a = bed.connect("a:x:y")
    b = bed.connect("b:x:y", takes_fds=True)
    c = bed.connect("c:x:y", takes_fds=False)
    data = os.urandom(4096)
    fd = memfd_blob(data)
    bed.request(a, "b:x:y", 1, blob_fd=fd, blob_size=len(data))
    env, blob, _, passed = b.sent[0]
    assert env.blob_fd and passed == fd and blob is None, "handed over as is"
    os.close(passed)
    fd2 = memfd_blob(data)
    bed.request(a, "c:x:y", 2, blob_fd=fd2, blob_size=len(data))
    env, blob, _, passed = c.sent[0]
    assert not env.blob_fd and passed == -1 and blob == data, "inlined as a frame"
    with pytest.raises(OSError):
        os.fstat(fd2)  # the kernel closed its copy


@pytest.mark.parametrize("case", ["none", "wrong size", "unsealed", "with a frame"])
def test_a_bad_blob_descriptor_is_malformed_and_closed(case: str) -> None:
    bed = Bed()
    a, b = bed.connect("a:x:y"), bed.connect("b:x:y")
    fd = -1
    if case == "wrong size":
        fd = memfd_blob(bytes(10))
    elif case == "unsealed":
        fd = os.memfd_create("x")
        os.write(fd, bytes(100))
    elif case == "with a frame":
        fd = memfd_blob(bytes(100))
    bed.request(a, "b:x:y", 1, blob_fd=fd, blob_size=100,
                blob=b"frame" if case == "with a frame" else None)
    assert kernel_error(a.take()) == "Malformed" and b.sent == []
    if fd >= 0:
        with pytest.raises(OSError):
            os.fstat(fd)
