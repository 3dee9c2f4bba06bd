"""Large blobs as sealed memfds (porch.link.fds), in-process: real memfds, real Unix
socket pairs and SCM_RIGHTS; the end-to-end path through the kernel is in the
integration tests."""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from porch.link.codec import IOV_MAX, OutQueue
from porch.link.fds import (
    ANCILLARY_SIZE,
    BadBlobFd,
    BlobFile,
    MemfdWriter,
    check_blob_fd,
    close_all,
    memfd_blob,
    read_blob_fd,
    received_fds,
    write_out,
)

NEEDED = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        assert exc.errno == errno.EBADF
        return False
    return True


@contextmanager
def at_fd_zero(fd: int) -> Iterator[int]:
    """fd moved to descriptor 0 (a daemon whose stdin was closed gets 0 for its next
    file); stdin put back afterwards, whatever happened to 0 meanwhile."""
    saved = os.dup(0)
    os.dup2(fd, 0)
    os.close(fd)
    try:
        yield 0
    finally:
        os.dup2(saved, 0)
        os.close(saved)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield a, b
    a.close()
    b.close()


def receive(sock: socket.socket, size: int) -> tuple[bytes, list[int]]:
    data = b""
    fds: list[int] = []
    while len(data) < size:
        got, anc, flags, _ = sock.recvmsg(size - len(data), ANCILLARY_SIZE)
        data += got
        fds += received_fds(anc, flags)
    return data, fds


def unsealed(data: bytes, seals: int = 0) -> int:
    fd = os.memfd_create("t", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


# --------------------------------------------------------------------------- making blobs


def test_a_blob_is_a_sealed_close_on_exec_memfd_named_for_porch() -> None:
    """Named so that a leaked one is recognisable in /proc/<pid>/fd and lsof."""
    fd = memfd_blob(b"payload")
    try:
        assert os.pread(fd, 100, 0) == b"payload"
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & NEEDED == NEEDED and seals & fcntl.F_SEAL_SEAL, "nobody may unseal it"
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:porch-blob ")
    finally:
        os.close(fd)


def _memfds() -> set[str]:
    """This process's memfds (other descriptors come and go with the test runner's threads)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:"):
                found.add(fd)
        except OSError:
            pass
    return found


def test_a_blob_that_cannot_be_made_leaves_no_descriptor() -> None:
    before = _memfds()
    with pytest.raises(TypeError):
        memfd_blob("text is not bytes")  # type: ignore[arg-type]
    assert _memfds() == before


def test_a_writer_takes_pieces_then_seals() -> None:
    w = MemfdWriter()
    assert w.size == 0
    assert os.readlink(f"/proc/self/fd/{w.fd}").startswith("/memfd:porch-blob ")
    w.write(b"abc")
    w.write(memoryview(b"defgh"))
    w.write(b"")
    assert w.size == 8
    fd = w.seal()
    assert w.fd < 0, "the writer holds no descriptor once sealed"
    w.close()  # nothing to close: the sealed fd is the caller's
    try:
        assert is_open(fd) and read_blob_fd(fd, 8) == b"abcdefgh"
    finally:
        os.close(fd)


def test_a_writer_closed_unsealed_closes_its_memfd_once() -> None:
    w = MemfdWriter()
    fd = w.fd
    w.close()
    assert not is_open(fd) and w.fd < 0
    w.close()  # again: nothing


def test_a_writer_or_blob_file_on_descriptor_zero_is_closed_like_any() -> None:
    w = MemfdWriter()
    with at_fd_zero(w.fd) as zero:
        w.fd = zero
        w.close()
        assert not is_open(0)
    blob = BlobFile(memfd_blob(b"x"), 1)
    with at_fd_zero(blob.fd) as zero:
        blob.fd = zero
        blob.close()
        assert not is_open(0)
    blob = BlobFile(memfd_blob(b"x"), 1)
    with at_fd_zero(blob.fd) as zero:
        blob.fd = zero
        assert blob.detach() == 0, "descriptor 0 is a descriptor"


def test_a_blob_file_is_sent_once_and_closed_once() -> None:
    blob = BlobFile(memfd_blob(b"data"), 4, "text/plain")
    assert (blob.size, blob.mime) == (4, "text/plain")
    fd = blob.detach()
    with pytest.raises(ValueError, match="sent already"):
        blob.detach()
    blob.close()  # detached: not ours to close
    assert is_open(fd)
    os.close(fd)
    kept = BlobFile(memfd_blob(b"data"), 4)
    fd = kept.fd
    kept.close()
    assert not is_open(fd) and kept.fd < 0
    kept.close()
    with pytest.raises(ValueError, match="sent already"):
        kept.detach()


def test_close_all_closes_each_and_ignores_the_closed() -> None:
    a, b = memfd_blob(b"a"), memfd_blob(b"b")
    os.close(a)
    close_all([a, b])
    assert not is_open(b)


# --------------------------------------------------------------------------- checking blobs


def test_only_a_sealed_regular_file_of_the_announced_size_is_read() -> None:
    fd = memfd_blob(b"12345")
    try:
        check_blob_fd(fd, 5)
        assert read_blob_fd(fd, 5) == b"12345"
        with pytest.raises(BadBlobFd, match="holds 5 bytes, not the 6 announced"):
            read_blob_fd(fd, 6)
    finally:
        os.close(fd)


def test_a_socket_or_pipe_is_not_a_blob(pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(BadBlobFd, match="not a regular file"):
        check_blob_fd(pair[0].fileno(), 0)
    r, w = os.pipe()
    try:
        with pytest.raises(BadBlobFd, match="not a regular file"):
            check_blob_fd(r, 0)
    finally:
        os.close(r)
        os.close(w)


def test_a_file_on_disk_is_not_a_sealed_memfd(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        with pytest.raises(BadBlobFd, match="not a sealed memfd"):
            check_blob_fd(fd, 3)
    finally:
        os.close(fd)


@pytest.mark.parametrize("seals", [0, fcntl.F_SEAL_WRITE, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW,
                                   fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW, fcntl.F_SEAL_SEAL])
def test_a_memfd_its_sender_could_still_change_is_refused(seals: int) -> None:
    fd = unsealed(b"abc", seals)
    try:
        with pytest.raises(BadBlobFd, match="not sealed against writes"):
            check_blob_fd(fd, 3)
    finally:
        os.close(fd)


def test_the_three_seals_suffice_without_sealing_the_seals() -> None:
    fd = unsealed(b"abc", NEEDED)
    try:
        assert read_blob_fd(fd, 3) == b"abc"
    finally:
        os.close(fd)


def test_a_short_read_is_continued_where_it_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """pread may return less than asked (a regular file: past 2 GiB at once): the
    rest is read from where it stopped."""
    data = bytes(range(256)) * 40
    fd = memfd_blob(data)
    real = os.pread
    calls: list[tuple[int, int]] = []

    def pread(f: int, n: int, offset: int) -> bytes:
        calls.append((n, offset))
        return real(f, min(n, 1000), offset)

    monkeypatch.setattr(os, "pread", pread)
    try:
        assert read_blob_fd(fd, len(data)) == data
    finally:
        os.close(fd)
    assert calls[:2] == [(len(data), 0), (len(data) - 1000, 1000)] and len(calls) == 11


def test_a_blob_that_ends_early_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fd = memfd_blob(b"x" * 3000)
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda f, n, offset: real(f, n, offset)[:1000] if offset == 0 else b"")
    try:
        with pytest.raises(BadBlobFd, match="ended early"):
            read_blob_fd(fd, 3000)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- descriptors on the stream


def test_descriptors_received_in_ancillary_data() -> None:
    ints = array.array("i", [7, 9])
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, ints.tobytes()),
           (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, array.array("i", [1, 2, 3]).tobytes()),
           (socket.SOL_IP, socket.SCM_RIGHTS, array.array("i", [4]).tobytes()),
           (socket.SOL_SOCKET, socket.SCM_RIGHTS, ints.tobytes()[:6])]  # a partial one: dropped
    assert received_fds(anc, 0) == [7, 9, 7]
    assert received_fds([], 0) == []


def test_descriptors_cut_off_are_closed_and_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    blobs = [memfd_blob(b"1"), memfd_blob(b"2"), memfd_blob(b"3")]
    a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", blobs))])
    close_all(blobs)
    before = _memfds()
    _, anc, flags, _ = b.recvmsg(1, socket.CMSG_SPACE(array.array("i").itemsize))
    assert flags & socket.MSG_CTRUNC
    with pytest.raises(BadBlobFd, match="cut off"):
        received_fds(anc, flags)
    assert _memfds() == before, "what did arrive is closed"


def test_a_queue_without_descriptors_is_written_in_one_scatter_gather_write(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    out = OutQueue(100, 1 << 20)
    out.push_raw(b"one")
    assert write_out(a, out) == 3
    out.consume(3)
    out.push_raw(b"two")
    out.push_raw(b"three")
    assert write_out(a, out) == 8
    assert receive(b, 11) == (b"onetwothree", [])


def test_one_write_takes_at_most_iov_max_buffers(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    out = OutQueue(10_000, 1 << 20)
    for _ in range(IOV_MAX + 76):
        out.push_raw(b"z")
    assert write_out(a, out) == IOV_MAX
    out.consume(IOV_MAX)
    assert write_out(a, out) == 76
    assert receive(b, IOV_MAX + 76) == (b"z" * (IOV_MAX + 76), [])


def test_a_descriptor_goes_with_the_write_of_its_message_and_is_ours_no_more(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    out = OutQueue(100, 1 << 20)
    fd = memfd_blob(b"blob")
    assert out.push(b"frame", None, fd=fd)
    n = write_out(a, out)
    assert n == 7 and not out.fds and not is_open(fd), "sent: the sender's copy is closed"
    data, fds = receive(b, 7)
    assert data == b"\x00\x05frame" and len(fds) == 1
    try:
        assert read_blob_fd(fds[0], 4) == b"blob"
    finally:
        close_all(fds)


def test_a_descriptor_waits_for_the_write_its_message_starts_in(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """Early is fine, late is not: a message beyond this write keeps its descriptor
    for the write that carries its first bytes."""
    a, b = pair
    out = OutQueue(10_000, 1 << 20)
    for _ in range(IOV_MAX):
        out.push_raw(b"z")
    fd = memfd_blob(b"later")
    assert out.push(b"m", None, fd=fd)
    assert write_out(a, out) == IOV_MAX
    assert is_open(fd) and len(out.fds) == 1
    data, fds = receive(b, IOV_MAX)
    assert fds == []
    out.consume(IOV_MAX)
    assert write_out(a, out) == 3 and not is_open(fd)
    data, fds = receive(b, 3)
    try:
        assert data == b"\x00\x01m" and len(fds) == 1 and read_blob_fd(fds[0], 5) == b"later"
    finally:
        close_all(fds)


class OneByteAtATime:
    """A socket with room for one byte (sendmsg writes what fits)."""

    def __init__(self) -> None:
        self.ancillary: list[object] = []

    def sendmsg(self, buffers: list[bytes], ancdata: list[object] = ()) -> int:  # type: ignore[assignment]
        self.ancillary.extend(ancdata)
        return 1


def test_descriptors_are_ours_no_more_once_a_single_byte_carried_them() -> None:
    out = OutQueue(100, 1 << 20)
    fd = memfd_blob(b"x")
    out.push(b"frame", None, fd=fd)
    out.push_raw(b"more")
    sock = OneByteAtATime()
    assert write_out(sock, out) == 1  # type: ignore[arg-type]
    assert len(sock.ancillary) == 1 and not out.fds and not is_open(fd)
