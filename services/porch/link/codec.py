"""ZMTP 3.1 framing for one connection, either end: pure bytes in, messages out.

No sockets and no clock here (the I/O is `porch.link.server` for the kernel's end and
`porch.link.dealer` for a process's end), so every rule of the protocol can be
unit-tested with plain bytes. What this speaks, and nothing more
(https://rfc.zeromq.org/spec/37/):

- the 64-byte greeting: signature, version 3.x, mechanism NULL, as-server 0. A peer
  that is not ZMTP (first byte not 0xFF), speaks ZMTP 1.0/2.0, or asks for another
  mechanism (PLAIN, CURVE) is refused: `ProtocolError`, and the connection is closed;
- the NULL handshake: each side sends READY; the peer's Socket-Type must be one a
  ROUTER talks to (DEALER, REQ, ROUTER) — otherwise ERROR and close;
- frames: flags (MORE, LONG, COMMAND; reserved bits must be 0), 1- or 8-byte size,
  body; a frame larger than `max_frame` closes the connection before anything is
  allocated for it;
- commands after the handshake: PING (answered with PONG echoing its context), PONG
  (ignored), ERROR (the peer is leaving); anything else is a protocol error.

Messages come out as (frames, count): the first `KEEP_FRAMES` frames of each
multipart message and how many it had. The kernel only ever accepts [envelope] or
[envelope, blob], so the frames after the second are counted and dropped, not kept:
a peer streaming MORE frames cannot make the kernel hold them.

Large frame bodies are not assembled by concatenation: `read_buffer()` hands the I/O
layer the exact spot where the next bytes of the body belong, so a big blob is read
with recv_into straight into its own buffer and forwarded from there (no copy of it is
ever made when it is at most `CHUNK` bytes; larger ones are read in CHUNK pieces and
joined once).

A `Session` plays one `Role`: `ROUTER` (the kernel's end: it announces ROUTER and
accepts DEALER, REQ and ROUTER peers) or `DEALER` (a process's end: it announces DEALER
and accepts a peer a DEALER talks to). Only the handshake differs between them.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Greeting: signature %xFF 8*%x00 %x7F, version 3.1, mechanism (20 octets, NUL padded),
# as-server (1 octet), filler (31 octets).
GREETING_SIZE = 64
SIGNATURE_SIZE = 10
MECHANISM_NULL = b"NULL"
VERSION_MAJOR = 3
VERSION_MINOR = 1

MORE = 0x01
LONG = 0x02
COMMAND = 0x04
RESERVED = 0xF8

# Socket types a ROUTER may talk to (ZMTP 3.1 / 28 REQREP).
ROUTER_PEERS = frozenset({b"DEALER", b"REQ", b"ROUTER"})
# Socket types a DEALER may talk to (28 REQREP).
DEALER_PEERS = frozenset({b"ROUTER", b"DEALER", b"REP"})


@dataclass(frozen=True, slots=True)
class Role:
    """One end's socket type (what its READY announces) and the socket types whose
    READY it accepts."""

    socket_type: bytes
    peers: frozenset[bytes]


ROUTER = Role(b"ROUTER", ROUTER_PEERS)  # the kernel's end
DEALER = Role(b"DEALER", DEALER_PEERS)  # a process's end

# The kernel reads [envelope] or [envelope, blob]: keep that much of a message.
KEEP_FRAMES = 2
# A frame body bigger than this whose bytes are not all in hand is read into a buffer of
# its own instead of being joined from pieces.
BIG_FRAME = 64 * 1024
# Bodies are read into buffers of at most this size (a declared size alone never makes
# the kernel allocate more than this ahead of the bytes actually arriving).
CHUNK = 4 * 1024 * 1024
# PONG echoes at most this much of a PING's context (ZMTP 3.1).
MAX_PING_CONTEXT = 16

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")

Buffer = bytes | bytearray | memoryview


def socket_path(endpoint: str) -> str:
    """The filesystem path (or abstract name) of an ipc:// endpoint: what both ZMTP
    ends (the kernel's server, the stubs' client) open."""
    if not endpoint.startswith("ipc://"):
        raise ValueError(f"ZMTP is spoken on ipc:// endpoints only, not {endpoint!r}")
    path = endpoint.removeprefix("ipc://")
    return "\0" + path[1:] if path.startswith("@") else path


class ProtocolError(Exception):
    """The peer broke ZMTP; the connection is to be closed. The text says how."""


# --------------------------------------------------------------------------- encoding

# Frame headers for short bodies, precomputed: one index instead of a bytes() call.
_SHORT_LAST = [bytes((0, n)) for n in range(256)]
_SHORT_MORE = [bytes((MORE, n)) for n in range(256)]


def frame_header(size: int, more: bool) -> bytes:
    """The flags and size octets in front of a message frame of `size` bytes."""
    if size < 256:
        return _SHORT_MORE[size] if more else _SHORT_LAST[size]
    return bytes((LONG | MORE if more else LONG,)) + _U64.pack(size)


IOV_MAX = 1024  # buffers per sendmsg
# File descriptors one queue may hold (each is an open file of the process holding it).
MAX_QUEUED_FDS = 256
# Messages up to this size are joined into one buffer: cheaper than an iovec per part.
JOIN_BELOW = 16 * 1024


class OutQueue:
    """What one end has still to write: messages framed on the way in (a small one
    joined into one buffer, a large blob kept as its own), partial writes taken off on
    the way out; `buffers` is ready for sendmsg. Bounded like libzmq's high-water mark,
    in messages and in bytes. Shared by both ends (`porch.link.server`, `porch.link.dealer`)."""

    __slots__ = ("buffers", "ends", "fds", "high_water_mark", "max_bytes", "queued", "written")

    def __init__(self, high_water_mark: int, max_bytes: int) -> None:
        self.buffers: list[Any] = []
        self.queued = 0  # bytes ever queued
        self.written = 0  # bytes ever written
        self.ends: deque[int] = deque()  # cumulative end offset of each message still queued
        # File descriptors that travel with messages (a large blob in a memfd,
        # `porch.link.fds`): (offset where the message starts, fd), in order. The queue
        # owns them until they are sent; `clear` hands back the unsent ones to close.
        self.fds: deque[tuple[int, int]] = deque()
        self.high_water_mark = high_water_mark
        self.max_bytes = max_bytes

    @property
    def empty(self) -> bool:
        return self.queued == self.written

    def push(self, frame: Buffer, blob: Buffer | None, force: bool = False, fd: int = -1) -> bool:
        """Queue the message [frame] or [frame, blob]; False (nothing queued) when the
        queue is full. An empty queue always takes one message, however large; `force`
        takes it whatever the queue holds (the kernel's own small answers: the error
        that says a message could not be delivered must itself be delivered). `fd`
        (>= 0) travels with the message; the queue owns it once it returned True."""
        buffers = self.buffers
        flen = len(frame)
        if fd >= 0:
            if buffers and not force and len(self.fds) >= MAX_QUEUED_FDS:
                return False
            self.fds.append((self.queued, fd))
        if blob is None:
            size = flen + (2 if flen < 256 else 9)
            if buffers and not force and (len(self.ends) >= self.high_water_mark
                                          or self.queued - self.written + size > self.max_bytes):
                if fd >= 0:
                    self.fds.pop()
                return False
            if flen < 256:
                buffers.append(_SHORT_LAST[flen] + frame)
            elif flen < JOIN_BELOW:
                buffers.append(frame_header(flen, False) + frame)
            else:
                buffers.append(frame_header(flen, False))
                buffers.append(frame)
        else:
            blen = len(blob)
            size = flen + blen + (2 if flen < 256 else 9) + (2 if blen < 256 else 9)
            if buffers and not force and (len(self.ends) >= self.high_water_mark
                                          or self.queued - self.written + size > self.max_bytes):
                if fd >= 0:
                    self.fds.pop()
                return False
            head = (_SHORT_MORE[flen] if flen < 256 else frame_header(flen, True)) + frame
            if size < JOIN_BELOW:
                buffers.append(head + (_SHORT_LAST[blen] if blen < 256 else frame_header(blen, False))
                               + blob)
            else:
                buffers.append(head + frame_header(blen, False))
                buffers.append(blob)
        self.queued += size
        self.ends.append(self.queued)
        return True

    def push_raw(self, data: bytes) -> None:
        """Already-encoded protocol output (greeting, READY, PING, PONG): not bounded."""
        self.buffers.append(data)
        self.queued += len(data)
        self.ends.append(self.queued)

    def consume(self, n: int) -> bool:
        """n bytes were written; take them off. True when nothing is left."""
        written = self.written = self.written + n
        buffers = self.buffers
        if written == self.queued:
            buffers.clear()
            self.ends.clear()
            return True
        i = 0
        while n:
            k = len(buffers[i])
            if n < k:
                buffers[i] = memoryview(buffers[i])[n:]
                break
            n -= k
            i += 1
        del buffers[:i]
        ends = self.ends
        while ends and ends[0] <= written:
            ends.popleft()
        return False

    def fds_within(self, length: int) -> int:
        """How many queued fds belong to messages that start in the next `length`
        bytes to write (they go with that write: early is fine, late is not)."""
        limit = self.written + length
        k = 0
        for start, _ in self.fds:
            if start >= limit:
                break
            k += 1
        return k

    def take_fds(self, k: int) -> list[int]:
        """The first k queued fds, no longer the queue's (sent, or to be closed)."""
        return [self.fds.popleft()[1] for _ in range(k)]

    def clear(self) -> list[int]:
        """Drop everything; the fds that were never sent, for the caller to close."""
        self.buffers = []
        self.queued = self.written = 0
        self.ends.clear()
        return self.take_fds(len(self.fds))


def encode_message(frames: list[Buffer]) -> bytes:
    """A whole multipart message as one bytes object (tests and small messages)."""
    out = bytearray()
    last = len(frames) - 1
    for i, f in enumerate(frames):
        out += frame_header(len(f), i < last)
        out += f
    return bytes(out)


def greeting(mechanism: bytes = MECHANISM_NULL, as_server: bool = False,
             major: int = VERSION_MAJOR, minor: int = VERSION_MINOR) -> bytes:
    return (b"\xff" + bytes(8) + b"\x7f" + bytes((major, minor))
            + mechanism.ljust(20, b"\0") + bytes((int(as_server),)) + bytes(31))


def command(name: bytes, data: bytes = b"") -> bytes:
    """A command frame: flags COMMAND (| LONG), size, name as a short string, data."""
    body = bytes((len(name),)) + name + data
    if len(body) < 256:
        return bytes((COMMAND, len(body))) + body
    return bytes((COMMAND | LONG,)) + _U64.pack(len(body)) + body


def properties(props: Mapping[bytes, bytes]) -> bytes:
    return b"".join(bytes((len(k),)) + k + _U32.pack(len(v)) + v for k, v in props.items())


def ready(socket_type: bytes, extra: Mapping[bytes, bytes] | None = None) -> bytes:
    return command(b"READY", properties({b"Socket-Type": socket_type, **(extra or {})}))


def error(reason: str) -> bytes:
    text = reason.encode("utf-8", "replace")[:255]
    return command(b"ERROR", bytes((len(text),)) + text)


def ping(ttl_ds: int, context: bytes = b"") -> bytes:
    """PING: TTL in tenths of a second (the peer may drop us after it without traffic)."""
    return command(b"PING", _U16.pack(ttl_ds) + context)


def pong(context: bytes) -> bytes:
    return command(b"PONG", context)


# --------------------------------------------------------------------------- decoding


def check_greeting(data: Buffer) -> None:
    """Refuse a (possibly partial) greeting as early as its bytes allow."""
    n = len(data)
    if n >= 1 and data[0] != 0xFF:
        raise ProtocolError("not ZMTP: bad greeting signature")
    if n >= SIGNATURE_SIZE and not data[9] & 1:
        raise ProtocolError("not ZMTP: bad greeting signature")
    if n >= 11 and data[10] < VERSION_MAJOR:
        raise ProtocolError(f"ZMTP {data[10]}.x is not supported (3.x only)")
    if n >= 32:
        mech = bytes(data[12:32])
        name = mech.rstrip(b"\0")
        if name != MECHANISM_NULL or b"\0" in name:
            shown = name.decode("ascii", "replace") or "(empty)"
            raise ProtocolError(f"security mechanism {shown} is not supported (NULL only)")


def parse_properties(data: Buffer) -> dict[str, bytes]:
    """READY metadata: names are case-insensitive (returned lower-cased)."""
    props: dict[str, bytes] = {}
    i, n = 0, len(data)
    while i < n:
        klen = data[i]
        i += 1
        if klen == 0 or i + klen + 4 > n:
            raise ProtocolError("malformed READY metadata")
        key = bytes(data[i:i + klen]).decode("ascii", "replace").lower()
        i += klen
        (vlen,) = _U32.unpack_from(data, i)
        i += 4
        if i + vlen > n:
            raise ProtocolError("malformed READY metadata")
        props[key] = bytes(data[i:i + vlen])
        i += vlen
    return props


def parse_command(body: Buffer) -> tuple[bytes, bytes]:
    """(name, data) of a command frame's body."""
    if not body or len(body) < 1 + body[0]:
        raise ProtocolError("malformed command")
    n = body[0]
    return bytes(body[1:1 + n]), bytes(body[1 + n:])


Message = tuple[list[Buffer], int]


class Session:
    """One end of one ZMTP connection (`role`: ROUTER or DEALER), as a state machine.

    `feed(data)` takes the bytes read and returns the complete messages in them; the
    bytes to send back (our greeting and READY at first, PONGs, an ERROR) accumulate
    in `out` for the I/O layer to send and clear. When the peer breaks the protocol,
    the messages before the offence are still returned and `error` says what it did:
    the connection is then to be closed (the session accepts nothing more).
    """

    __slots__ = ("_big", "_big_flags", "_big_got", "_big_pieces", "_big_size", "_count",
                 "_frames", "_greeting", "_rest", "error", "max_frame", "out",
                 "peer_identity", "peer_properties", "peer_socket_type", "ready", "role")

    def __init__(self, max_frame: int, role: Role, properties: Mapping[bytes, bytes] | None = None) -> None:
        self.max_frame = max_frame
        self.role = role
        # Greeting and READY (with our metadata `properties`) go out at once, without
        # waiting for the peer's greeting: a ZMTP 3 peer reads them in order after its
        # own signature exchange.
        self.out: list[bytes] = [greeting(), ready(role.socket_type, properties)]
        self.peer_properties: dict[str, bytes] = {}  # the peer's READY metadata, names lower-cased
        self.ready = False  # the peer's READY was received and accepted
        self.error: str | None = None
        self.peer_socket_type = b""
        self.peer_identity = b""
        self._greeting: bytearray | None = bytearray()
        self._rest = b""  # the start of an incomplete frame
        self._frames: list[Buffer] = []  # of the message being assembled
        self._count = 0  # its frames so far (kept or not)
        # A large body being read in place: its buffer, bytes in it, flags, total size,
        # and the complete CHUNK-sized pieces before it.
        self._big: bytearray | None = None
        self._big_got = 0
        self._big_flags = 0
        self._big_size = 0
        self._big_pieces: list[bytearray] = []

    # ------------------------------------------------------------------ input

    def read_buffer(self) -> memoryview | None:
        """Where the next bytes must go when a large frame body is being read (None:
        read into a fresh buffer and call feed)."""
        big = self._big
        if big is None:
            return None
        return memoryview(big)[self._big_got:]

    def filled(self, n: int) -> list[Message]:
        """`n` bytes were written at read_buffer(); the messages this completes."""
        msgs: list[Message] = []
        try:
            self._filled(n, msgs)
        except ProtocolError as exc:
            self._fail(exc)
        return msgs

    def _fail(self, exc: ProtocolError) -> None:
        self.error = str(exc)
        self._big = None
        self._rest = b""
        self._frames = []

    def _filled(self, n: int, msgs: list[Message]) -> None:
        self._big_got += n
        big = self._big
        assert big is not None
        if self._big_got < len(big):
            return
        done = sum(len(p) for p in self._big_pieces) + len(big)
        if done < self._big_size:
            self._big_pieces.append(big)
            self._big = bytearray(min(CHUNK, self._big_size - done))
            self._big_got = 0
            return
        body: Buffer
        if self._big_pieces:
            body = b"".join([*self._big_pieces, big])
            self._big_pieces = []
        else:
            body = big
        self._big = None
        self._big_got = 0
        self._frame(self._big_flags, body, msgs)

    def feed(self, data: bytes) -> list[Message]:
        """The messages completed by `data` (bytes read from the peer)."""
        msgs: list[Message] = []
        if self.error is not None:
            return msgs
        rest: bytes | memoryview = data
        try:
            while rest:
                if self._big is not None:
                    # read_buffer() is the fast way; bytes fed here are copied in place.
                    buf = memoryview(self._big)[self._big_got:]
                    k = min(len(buf), len(rest))
                    buf[:k] = rest[:k]
                    rest = rest[k:]
                    self._filled(k, msgs)
                elif self._greeting is not None:
                    rest = self._take_greeting(bytes(rest))
                else:
                    rest = self._parse(rest if type(rest) is bytes else bytes(rest), msgs)
        except ProtocolError as exc:
            self._fail(exc)
        return msgs

    def _parse(self, data: bytes, msgs: list[Message]) -> memoryview | bytes:
        """Frames in data; returns the bytes left over once a large body begins."""
        if self._rest:
            data = self._rest + data
            self._rest = b""
        pos = 0
        n = len(data)
        max_frame = self.max_frame
        while n - pos >= 2:
            flags = data[pos]
            if flags & LONG:
                if n - pos < 9:
                    break
                (size,) = _U64.unpack_from(data, pos + 1)
                start = pos + 9
            else:
                size = data[pos + 1]
                start = pos + 2
            if flags & RESERVED:
                raise ProtocolError(f"reserved frame flags set (0x{flags:02x})")
            if size > max_frame:
                raise ProtocolError(f"frame of {size} bytes exceeds the maximum of {max_frame}")
            end = start + size
            if end > n:
                if size > BIG_FRAME:
                    # Read the rest of this body in place (see read_buffer).
                    self._big_flags = flags
                    self._big_size = size
                    self._big = bytearray(min(CHUNK, size))
                    self._big_got = 0
                    return memoryview(data)[start:]
                break
            self._frame(flags, data[start:end], msgs)
            pos = end
        if pos < n:
            self._rest = data[pos:]
        return b""

    def _take_greeting(self, data: bytes) -> bytes:
        """Consume greeting bytes; return what follows it."""
        g = self._greeting
        assert g is not None
        need = GREETING_SIZE - len(g)
        g += data[:need]
        check_greeting(g)
        if len(g) < GREETING_SIZE:
            return b""
        self._greeting = None
        return data[need:]

    def _frame(self, flags: int, body: Buffer, msgs: list[Message]) -> None:
        if flags & COMMAND:
            if flags & MORE:
                raise ProtocolError("a command frame with MORE set")
            if self._count:
                raise ProtocolError("a command inside a multipart message")
            self._command(body)
            return
        if not self.ready:
            raise ProtocolError("a message before the READY handshake")
        count = self._count + 1
        if count <= KEEP_FRAMES:
            self._frames.append(body)
        if flags & MORE:
            self._count = count
            return
        msgs.append((self._frames, count))
        self._frames = []
        self._count = 0

    def _command(self, body: Buffer) -> None:
        name, data = parse_command(body)
        if name == b"PING" and self.ready:
            if len(data) < 2:
                raise ProtocolError("malformed PING")
            self.out.append(pong(data[2:2 + MAX_PING_CONTEXT]))
        elif name == b"PONG" and self.ready:
            pass
        elif name == b"READY" and not self.ready:
            props = parse_properties(data)
            stype = props.get("socket-type", b"")
            if stype not in self.role.peers:
                shown = stype.decode("ascii", "replace") or "(none)"
                ours = self.role.socket_type.decode()
                self.out.append(error(f"invalid socket type {shown} for a {ours}"))
                raise ProtocolError(f"socket type {shown} cannot talk to a {ours}")
            self.peer_socket_type = stype
            self.peer_identity = props.get("identity", b"")
            self.peer_properties = props
            self.ready = True
        elif name == b"ERROR":
            reason = data[1:1 + data[0]].decode("utf-8", "replace") if data else ""
            raise ProtocolError(f"the peer sent ERROR {reason!r}")
        else:
            shown = name.decode("ascii", "replace")
            when = "after" if self.ready else "before"
            raise ProtocolError(f"unexpected command {shown!r} {when} the handshake")

