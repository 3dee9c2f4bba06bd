"""Large blobs out of band: a sealed memfd handed over with SCM_RIGHTS.

A blob of FD_BLOB_MIN bytes or more does not travel as a frame through the kernel: the
sender writes it once into an anonymous memory file (memfd_create), seals it (no write,
no shrink, no grow), and passes the descriptor beside the message (SCM_RIGHTS on the
Unix socket); the kernel passes the descriptor on to the receiver without reading a
byte, and the receiver reads it once. Against a 50 MB frame, nothing is copied through
the kernel's queues (which are bounded, and were where large answers died), the
kernel's memory does not grow with the blob, and the sender can stream a body into the
file as it arrives instead of holding it whole.

Descriptors ride with the bytes of a message on the stream: a descriptor arrives with
the first bytes of the write that carried it, never after the message it belongs to,
so each end keeps the descriptors it received in order and the message whose envelope
says `blob_fd` takes the next one. Only peers whose READY announced FD_PROPERTY (porch's
own dealers) are sent descriptors; the kernel inlines a blob as a frame for any other
ZeroMQ peer.

A receiver trusts nothing about a descriptor: it must be a regular file of exactly the
announced size with the write, shrink and grow seals set (so it can be read without a
sender changing it meanwhile), read with pread (never mapped: no SIGBUS).
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
from collections.abc import Iterable

from porch.link.codec import IOV_MAX, OutQueue

FD_PROPERTY = b"X-Porch-Fds"  # READY metadata: "1" = this peer takes blobs as descriptors
FD_BLOB_MIN = 1024 * 1024  # blobs this large and larger travel as a memfd
MAX_FDS_PER_READ = 64
ANCILLARY_SIZE = socket.CMSG_SPACE(MAX_FDS_PER_READ * array.array("i").itemsize)
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
_NEEDED_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class BadBlobFd(Exception):
    """A descriptor that is not a sealed regular file of the announced size."""


class BlobFile:
    """A blob already in a sealed memfd (written with MemfdWriter): sent as it is,
    without ever being held whole in memory. Sending it hands the descriptor over."""

    __slots__ = ("fd", "mime", "size")

    def __init__(self, fd: int, size: int, mime: str | None = None) -> None:
        self.fd = fd
        self.size = size
        self.mime = mime

    def detach(self) -> int:
        fd, self.fd = self.fd, -1
        if fd < 0:
            raise ValueError("this BlobFile was sent already")
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --------------------------------------------------------------------------- writing


def write_out(sock: socket.socket, out: OutQueue) -> int:
    """One write of what `out` holds (scatter-gather, at most IOV_MAX buffers), with the
    descriptors of the messages that start in it. Returns the bytes written, for the
    caller to `consume`; raises OSError as send does (BlockingIOError: no room)."""
    buffers = out.buffers
    batch = buffers if len(buffers) <= IOV_MAX else buffers[:IOV_MAX]
    if not out.fds:
        n = sock.send(batch[0]) if len(batch) == 1 else sock.sendmsg(batch)
    else:
        k = out.fds_within(sum(len(b) for b in batch))
        if k:
            fds = [fd for _, fd in list(out.fds)[:k]]
            n = sock.sendmsg(batch, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            if n > 0:  # the descriptors went with these bytes: ours are closed
                close_all(out.take_fds(k))
        else:
            n = sock.send(batch[0]) if len(batch) == 1 else sock.sendmsg(batch)
    return n


def close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# --------------------------------------------------------------------------- reading


def received_fds(ancdata: list[tuple[int, int, bytes]], flags: int) -> list[int]:
    """The descriptors in a recvmsg's ancillary data. Raises BadBlobFd (after closing
    what did arrive) when some were cut off: the stream's order of descriptors is lost."""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(data[: len(data) - len(data) % got.itemsize])
            fds.extend(got)
    if flags & socket.MSG_CTRUNC:
        close_all(fds)
        raise BadBlobFd("descriptors were cut off (too many in one read)")
    return fds


# --------------------------------------------------------------------------- blobs


def memfd_blob(data: bytes | bytearray | memoryview, name: str = "porch-blob") -> int:
    """A sealed memfd holding data (the sender's side)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


class MemfdWriter:
    """Write a blob into a memfd piece by piece (a body as it arrives), then seal it."""

    def __init__(self, name: str = "porch-blob") -> None:
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.size += n

    def seal(self) -> int:
        """The sealed fd (the caller owns it now)."""
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, _SEALS)
        fd, self.fd = self.fd, -1
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def check_blob_fd(fd: int, size: int) -> None:
    """Refuse anything but a regular file of `size` bytes sealed against change."""
    st = os.fstat(fd)
    if not (st.st_mode & 0o170000 == 0o100000):
        raise BadBlobFd("the descriptor is not a regular file")
    if st.st_size != size:
        raise BadBlobFd(f"the blob holds {st.st_size} bytes, not the {size} announced")
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        raise BadBlobFd("the blob is not a sealed memfd") from None
    if seals & _NEEDED_SEALS != _NEEDED_SEALS:
        raise BadBlobFd("the blob is not sealed against writes")


def read_blob_fd(fd: int, size: int) -> bytes:
    """The blob's bytes (checked first). Does not close fd."""
    check_blob_fd(fd, size)
    data = os.pread(fd, size, 0)
    if len(data) == size:
        return data
    parts = [data]  # pread of a regular file returns less only past 2 GiB at once
    got = len(data)
    while got < size:
        chunk = os.pread(fd, size - got, got)
        if not chunk:
            raise BadBlobFd("the blob ended early")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
