"""RFC 6455 framing for the server side, pure: bytes in, messages out; frames out.

porch speaks WebSocket frames itself on the socket it accepted (`porch.ws.conn`)
instead of through Tornado's WebSocket layer, which cost a future per frame read, an
epoll re-registration of the stream twice per message, and five of its private names
(issue 12, issue 11 item 6). What this module checks, per RFC 6455 section 5:

- a client frame must be masked (5.1), its reserved bits clear (5.2) but RSV1 on the
  first frame of a message when permessage-deflate was agreed (RFC 7692 6: RSV1 on a
  control or continuation frame, or without the extension, is 1002), its opcode one
  of the six defined (5.2);
- a control frame is not fragmented and carries at most 125 bytes (5.5); a close
  frame's payload is empty or a valid code and UTF-8 reason (5.5.1, 7.4);
- continuations follow a started message, and a new message does not start inside
  one (5.4);
- a message (all its fragments) is at most `max_message` bytes: past it, 1009 at the
  first header that announces too much, before its payload is read; a compressed
  one at most `max_message` bytes once inflated (porch.ws.deflate.Inflater:
  1009 without inflating further), and its compressed bytes at most a 32nd more
  (deflate's own overhead on incompressible data is far less);
- a text message is valid UTF-8 (8.1), once inflated: 1007.

Any violation raises `ProtocolError(code, reason)`; the connection answers with that
close code. Lengths need not use their shortest encoding (senders may, receivers
gain nothing by refusing). Server frames are never masked (5.1).
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from porch.ws.deflate import Inflater

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
RSV1 = 0x40  # on a message's first frame: compressed (RFC 7692 6)

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Close codes a peer may send (RFC 6455 7.4.1 and IANA's registry; 3000-4999 are for
# libraries and applications). 1004-1006 and 1015 are reserved: never on the wire.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class ProtocolError(Exception):
    """The peer broke the protocol: close the connection with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def valid_key(key: str | None) -> bool:
    """A Sec-WebSocket-Key is the base64 of 16 bytes (RFC 6455 4.1)."""
    if key is None or len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR payload with the 4-byte mask repeated: as big integers, so the work is a few
    passes in C whatever the length (a byte loop in Python costs ~50 ns a byte)."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * ((n + 3) >> 2))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """One whole (FIN) unmasked frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def close_payload(code: int | None, reason: str | None = None) -> bytes:
    """A close frame's payload: the code and the reason (cut to fit 125 bytes, on a
    character boundary); empty without a code."""
    if code is None:
        return b""
    data = (reason or "").encode("utf-8")
    if len(data) > 123:
        data = data[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + data


def parse_close(payload: bytes) -> tuple[int | None, str | None]:
    """(code, reason) of a client's close frame; (None, None) without a code."""
    if not payload:
        return None, None
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if code not in _SENDABLE and not 3000 <= code <= 4999:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


class FrameReader:
    """Client frames in (`feed`), whole messages and control frames out, in order, as
    (opcode, payload): OP_TEXT (checked UTF-8, still bytes) or OP_BINARY for a message
    (its fragments joined), OP_PING, OP_PONG, OP_CLOSE (payload checked with
    `parse_close`). Raises ProtocolError; after that it must not be fed again.
    `inflater`: permessage-deflate was agreed (None: RSV1 is a protocol error); a
    compressed message comes out inflated."""

    __slots__ = ("_buf", "_compressed", "_fragments", "_fragments_size", "_inflater", "_message_op",
                 "_wire_max", "max_message")

    def __init__(self, max_message: int, inflater: Inflater | None = None) -> None:
        self.max_message = max_message
        self._buf = bytearray()  # an incomplete frame (only then is anything copied)
        self._message_op = 0  # the opcode of a fragmented message in progress
        self._compressed = 0  # ... and whether it is compressed (RSV1)
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._inflater = inflater
        self._wire_max = max_message + (max_message >> 5) + 1024 if inflater is not None else max_message

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                self._check_reserved(b0)
            if not b1 & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            length = b1 & 0x7F
            head = pos + 6  # past the mask
            if length == 126:
                if end - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = pos + 8
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                if length >> 63:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "frame length has its top bit set")
                head = pos + 14
            if opcode & 0x8:
                if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
                if not fin:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
                if length > 125:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes")
            else:
                if opcode > OP_BINARY:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
                if opcode == OP_CONTINUATION:
                    if not self._message_op:
                        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation without a message")
                    size = self._fragments_size + length
                elif self._message_op:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
                else:
                    size = length
                if size > self.max_message and (
                        not (b0 & RSV1 if opcode else self._compressed) or size > self._wire_max):
                    raise ProtocolError(CLOSE_TOO_BIG, "message too big")
            stop = head + length
            if stop > end:
                break
            mask = buf[head - 4:head]
            payload = unmask(bytes(buf[head:stop]), bytes(mask))
            pos = stop
            if opcode & 0x8:
                if opcode == OP_CLOSE:
                    parse_close(payload)
                out.append((opcode, payload))
                continue
            if not fin:
                if opcode:
                    self._message_op = opcode
                    self._compressed = b0 & RSV1
                if payload:  # (empty fragments add nothing: a stream of them must not grow the list)
                    self._fragments.append(payload)
                self._fragments_size += length
                continue
            compressed = b0 & RSV1
            if opcode == OP_CONTINUATION:
                self._fragments.append(payload)
                payload = b"".join(self._fragments)
                opcode = self._message_op
                compressed = self._compressed
                self._fragments = []
                self._fragments_size = 0
                self._message_op = 0
                self._compressed = 0
            if compressed:
                assert self._inflater is not None  # (RSV1 was refused without one)
                payload = self._inflater.inflate(payload)
            if opcode == OP_TEXT:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError(CLOSE_INVALID_DATA, "text message is not UTF-8") from None
            out.append((opcode, payload))
        if pos == end:
            if self._buf:
                self._buf = bytearray()
        elif buf is self._buf:
            del self._buf[:pos]
        else:
            self._buf = bytearray(buf[pos:])
        return out

    def _check_reserved(self, b0: int) -> None:
        """A frame with a reserved bit set: RSV1 alone, on the first frame of a data
        message, with permessage-deflate agreed; anything else is a protocol error."""
        if b0 & 0x70 != RSV1 or self._inflater is None:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension uses them)")
        opcode = b0 & 0x0F
        if opcode & 0x8:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "RSV1 on a control frame")
        if opcode == OP_CONTINUATION:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "RSV1 on a continuation frame")
