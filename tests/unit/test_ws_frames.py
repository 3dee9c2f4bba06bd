"""porch's own WebSocket framing (porch.ws.frames, issue 12) held to a second
implementation: the `websockets` library's sans-I/O protocol, as the client that
writes the frames porch reads and as the client that reads the frames porch writes,
and as the server that judges the same malformed input."""

from __future__ import annotations

import random
import zlib

import pytest
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

from porch.ws.deflate import Inflater, negotiate
from porch.ws.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    ProtocolError,
    accept_key,
    close_payload,
    frame,
    parse_close,
    unmask,
    valid_key,
)


def client() -> Protocol:
    return Protocol(Side.CLIENT, state=State.OPEN, max_size=None)


def feed_in_pieces(reader: FrameReader, data: bytes, rng: random.Random) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        step = rng.choice((1, 2, 3, 7, 64, 1000, len(data)))
        out += reader.feed(data[pos:pos + step])
        pos += step
    return out


def test_accept_key_is_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert valid_key("dGhlIHNhbXBsZSBub25jZQ==")
    for bad in (None, "", "short", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ=!", "é" * 24,
                "dGhlIHNhbXBsZSBub25jZXg="):  # the last: 17 bytes
        assert not valid_key(bad), bad


def test_unmask_matches_a_byte_loop() -> None:
    rng = random.Random(1)
    for n in (0, 1, 3, 4, 5, 125, 126, 65535, 65536, 100_001):
        data = rng.randbytes(n)
        mask = rng.randbytes(4)
        assert unmask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("seed", range(20))
def test_what_a_websockets_client_sends_is_read_message_for_message(seed: int) -> None:
    """Random texts and binaries, fragmented or not, with pings and pongs between the
    fragments, cut into random pieces: porch reads the messages the client sent."""
    rng = random.Random(seed)
    c = client()
    expected: list[tuple[int, bytes]] = []
    for _ in range(rng.randint(1, 30)):
        binary = rng.random() < 0.5
        size = rng.choice((0, 1, 125, 126, 127, 65535, 65536, 70_000, rng.randint(0, 300)))
        payload = rng.randbytes(size) if binary else ("é€x" * size)[:size].encode()
        parts = rng.randint(1, 4)
        cuts = sorted(rng.sample(range(len(payload) + 1), min(parts - 1, len(payload) + 1)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, piece in enumerate(pieces):
            fin = i == len(pieces) - 1
            if i == 0:
                (c.send_binary if binary else c.send_text)(piece, fin=fin)
            else:
                c.send_continuation(piece, fin=fin)
            if not fin and rng.random() < 0.3:
                c.send_ping(b"p%d" % i)
                expected.append((OP_PING, b"p%d" % i))
        expected.append((OP_BINARY if binary else OP_TEXT, payload))
        if rng.random() < 0.2:
            c.send_pong(b"q")
            expected.append((OP_PONG, b"q"))
    c.send_close(1000, "bye")
    expected.append((OP_CLOSE, close_payload(1000, "bye")))
    # pings sent mid-message arrive before the message they interrupt
    got = feed_in_pieces(FrameReader(1 << 20), b"".join(c.data_to_send()), rng)
    assert sorted(got) == sorted(expected)
    messages = (OP_TEXT, OP_BINARY)
    assert [m for m in got if m[0] in messages] == [m for m in expected if m[0] in messages]


def test_what_porch_sends_is_read_by_a_websockets_client() -> None:
    c = client()
    rng = random.Random(7)
    sent = [(OP_TEXT, "héllo".encode()), (OP_BINARY, rng.randbytes(126)), (OP_BINARY, rng.randbytes(70_000)),
            (OP_PING, b"x"), (OP_PONG, b""), (OP_TEXT, b""), (OP_CLOSE, close_payload(1012, "restart"))]
    c.receive_data(b"".join(frame(op, data) for op, data in sent))
    events = c.events_received()
    assert [(int(e.opcode), e.data, e.fin) for e in events] == [(op, data, True) for op, data in sent]


def test_a_close_reason_is_cut_on_a_character_boundary() -> None:
    payload = close_payload(1000, "é" * 100)
    assert len(payload) <= 125
    assert parse_close(payload) == (1000, "é" * 61)


# ---------------------------------------------------------------------------- malformed

MASK = b"\x01\x02\x03\x04"


def masked(b0: int, payload: bytes, length: bytes | None = None) -> bytes:
    if length is None:
        n = len(payload)
        length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return bytes([b0]) + length + MASK + unmask(payload, MASK)


MALFORMED = {
    "unmasked": (bytes([0x81, 5]) + b"hello", 1002),
    "rsv1 without an extension": (masked(0xC1, b"hi"), 1002),
    "rsv3": (masked(0x91, b"hi"), 1002),
    "unknown data opcode": (masked(0x83, b"hi"), 1002),
    "unknown control opcode": (masked(0x8B, b"hi"), 1002),
    "fragmented ping": (masked(0x09, b"hi"), 1002),
    "ping over 125 bytes": (masked(0x89, b"x" * 126), 1002),
    "continuation first": (masked(0x80, b"hi"), 1002),
    "text inside a fragmented text": (masked(0x01, b"a") + masked(0x81, b"b"), 1002),
    "invalid UTF-8 text": (masked(0x81, b"\xff\xfe"), 1007),
    "invalid UTF-8 across fragments": (masked(0x01, b"\xe2\x82") + masked(0x80, b"\x28"), 1007),
    "close with 1 byte": (masked(0x88, b"\x03"), 1002),
    "close code 1005": (masked(0x88, (1005).to_bytes(2, "big")), 1002),
    "close code 999": (masked(0x88, (999).to_bytes(2, "big")), 1002),
    "close code 5000": (masked(0x88, (5000).to_bytes(2, "big")), 1002),
    "close reason not UTF-8": (masked(0x88, (1000).to_bytes(2, "big") + b"\xff"), 1007),
    "64-bit length with the top bit": (bytes([0x82, 0x80 | 127]) + (1 << 63).to_bytes(8, "big") + MASK, 1002),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_frames_close_with_the_code_websockets_also_gives(name: str) -> None:
    data, code = MALFORMED[name]
    with pytest.raises(ProtocolError) as caught:
        FrameReader(1 << 20).feed(data)
    assert caught.value.code == code
    server = Protocol(Side.SERVER, state=State.OPEN, max_size=None)
    server.receive_data(data)
    if server.close_sent is not None:  # it judged it too (a 2**63 length it does not check)
        assert server.close_sent.code == code, name


def test_a_message_over_the_limit_is_refused_at_its_header() -> None:
    reader = FrameReader(1000)
    assert reader.feed(masked(0x81, b"x" * 1000)) == [(OP_TEXT, b"x" * 1000)]
    header_only = bytes([0x82, 0x80 | 127]) + (1 << 40).to_bytes(8, "big") + MASK
    with pytest.raises(ProtocolError) as caught:
        FrameReader(1000).feed(header_only)  # a terabyte announced: refused before any payload
    assert caught.value.code == 1009
    fragments = FrameReader(1000)
    fragments.feed(masked(0x01, b"x" * 600))
    with pytest.raises(ProtocolError) as caught:
        fragments.feed(masked(0x80, b"x" * 401)[:8])
    assert caught.value.code == 1009


def test_control_frames_between_fragments_and_a_split_header() -> None:
    reader = FrameReader(1 << 20)
    data = masked(0x01, b"ab") + masked(0x89, b"p") + masked(0x80, b"cd")
    out = []
    for i in range(len(data)):
        out += reader.feed(data[i:i + 1])
    assert out == [(OP_PING, b"p"), (OP_TEXT, b"abcd")]
    assert Opcode.PING == OP_PING


# ---------------------------------------------------------------------------- rules pinned one by one

def deflate_reader(max_message: int) -> FrameReader:
    agreement = negotiate(["permessage-deflate"])
    assert agreement is not None
    return FrameReader(max_message, Inflater(agreement, max_message))


# The reason each refusal carries (it travels in the close frame, and goes to the log).
REASONS = {
    "unmasked": "client frames must be masked",
    "rsv1 without an extension": "reserved bits set",
    "rsv3": "reserved bits set",
    "unknown data opcode": "unknown opcode 0x3",
    "unknown control opcode": "unknown opcode 0xb",
    "fragmented ping": "fragmented control frame",
    "ping over 125 bytes": "control frame over 125 bytes",
    "continuation first": "continuation without a message",
    "text inside a fragmented text": "new message inside a fragmented one",
    "invalid UTF-8 text": "text message is not UTF-8",
    "invalid UTF-8 across fragments": "text message is not UTF-8",
    "close with 1 byte": "close frame with a 1-byte payload",
    "close code 1005": "invalid close code 1005",
    "close code 999": "invalid close code 999",
    "close code 5000": "invalid close code 5000",
    "close reason not UTF-8": "close reason is not UTF-8",
    "64-bit length with the top bit": "frame length has its top bit set",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_every_refusal_says_which_rule_was_broken(name: str) -> None:
    data, code = MALFORMED[name]
    with pytest.raises(ProtocolError) as caught:
        FrameReader(1 << 20).feed(data)
    assert REASONS[name] in caught.value.reason
    assert str(caught.value) == f"{code} {caught.value.reason}"


def test_rsv1_misuse_and_too_big_say_which_rule_was_broken() -> None:
    cases = [
        (deflate_reader(1 << 20), masked(0xC9, b"p"), 1002, "RSV1 on a control frame"),
        (deflate_reader(1 << 20), masked(0x41, b"a") + masked(0xC0, b"b"), 1002,
         "RSV1 on a continuation frame"),
        (deflate_reader(1 << 20), masked(0xE1, b"a"), 1002, "reserved bits set"),
        (FrameReader(10), masked(0x82, b"x" * 11), 1009, "message too big"),
    ]
    for reader, data, code, reason in cases:
        with pytest.raises(ProtocolError) as caught:
            reader.feed(data)
        assert caught.value.code == code
        assert reason in caught.value.reason
        assert str(caught.value) == f"{code} {caught.value.reason}"


def test_a_close_payload_is_the_code_then_the_reason_cut_to_125_bytes() -> None:
    assert close_payload(None) == b""
    assert close_payload(None, "ignored without a code") == b""
    assert close_payload(1000) == b"\x03\xe8"
    assert close_payload(1001, "") == b"\x03\xe9"
    assert close_payload(4000, "a" * 123) == b"\x0f\xa0" + b"a" * 123  # 125 bytes: whole
    assert close_payload(4000, "a" * 124) == b"\x0f\xa0" + b"a" * 123
    assert close_payload(4000, "a" * 500) == b"\x0f\xa0" + b"a" * 123


def test_a_frame_uses_the_shortest_length_form() -> None:
    assert frame(OP_PONG) == b"\x8a\x00"
    assert frame(OP_TEXT, b"x" * 125) == b"\x81\x7d" + b"x" * 125
    assert frame(OP_BINARY, b"x" * 126) == b"\x82\x7e\x00\x7e" + b"x" * 126
    assert frame(OP_BINARY, b"x" * 65535) == b"\x82\x7e\xff\xff" + b"x" * 65535
    assert frame(OP_BINARY, b"x" * 65536) == b"\x82\x7f" + (65536).to_bytes(8, "big") + b"x" * 65536


def test_close_codes_a_peer_may_send() -> None:
    """RFC 6455 7.4: the defined codes but the reserved 1004-1006 and 1015, and
    3000-4999 for libraries and applications; a code alone is an empty reason."""
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999):
        assert parse_close(code.to_bytes(2, "big")) == (code, "")
        assert parse_close(code.to_bytes(2, "big") + "é".encode()) == (code, "é")
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
        with pytest.raises(ProtocolError) as caught:
            parse_close(code.to_bytes(2, "big"))
        assert caught.value.code == 1002
    assert parse_close(b"") == (None, None)


def test_a_header_is_judged_as_soon_as_its_bytes_are_in() -> None:
    """A peer that sends a bad header and waits is refused without sending more: its
    two first bytes decide mask and reserved bits, its whole length the size."""
    with pytest.raises(ProtocolError) as caught:
        FrameReader(1 << 20).feed(bytes([0x81, 0x05]))  # unmasked, no payload yet
    assert caught.value.code == 1002
    with pytest.raises(ProtocolError) as caught:  # a 16-bit length, no mask yet
        FrameReader(100).feed(bytes([0x82, 0x80 | 126]) + (101).to_bytes(2, "big"))
    assert caught.value.code == 1009
    with pytest.raises(ProtocolError) as caught:  # a 64-bit length, no mask yet
        FrameReader(100).feed(bytes([0x82, 0x80 | 127]) + (101).to_bytes(8, "big"))
    assert caught.value.code == 1009
    # ... and until they are, it waits (after a whole frame as well as alone)
    for ext in (bytes([0x80 | 126]) + (200).to_bytes(2, "big"), bytes([0x80 | 127]) + (200).to_bytes(8, "big")):
        data = masked(0x82, b"ok") + bytes([0x82]) + ext + MASK + unmask(b"y" * 200, MASK)
        for cut in range(9, 8 + len(ext) + 1):
            reader = FrameReader(1 << 20)
            assert reader.feed(data[:cut]) == [(OP_BINARY, b"ok")]
            assert reader.feed(data[cut:]) == [(OP_BINARY, b"y" * 200)]


def test_a_control_frame_may_carry_125_bytes() -> None:
    assert FrameReader(1 << 20).feed(masked(0x89, b"p" * 125)) == [(OP_PING, b"p" * 125)]


def test_every_fragment_counts_toward_the_message_limit() -> None:
    reader = FrameReader(1000)
    three = masked(0x02, b"a" * 400) + masked(0x00, b"b" * 400) + masked(0x80, b"c" * 200)
    # twice: the count starts from nothing for each message
    assert reader.feed(three + three) == [(OP_BINARY, b"a" * 400 + b"b" * 400 + b"c" * 200)] * 2
    assert reader.feed(masked(0x82, b"d" * 1000)) == [(OP_BINARY, b"d" * 1000)]
    with pytest.raises(ProtocolError) as caught:
        FrameReader(1000).feed(masked(0x02, b"a" * 400) + masked(0x00, b"b" * 400) + masked(0x80, b"c" * 201))
    assert caught.value.code == 1009


def test_compressed_bytes_may_exceed_the_limit_by_a_32nd_and_1024() -> None:
    """Judged at the header: a compressed message of up to max + max/32 + 1024 bytes
    on the wire waits for its payload (its inflated size decides), one byte more is
    1009; a message not compressed is held to the limit itself."""
    limit = 32 * 1024
    wire_max = limit + limit // 32 + 1024
    for b0 in (0xC2, 0xC1):
        assert deflate_reader(limit).feed(bytes([b0, 0x80 | 127]) + wire_max.to_bytes(8, "big") + MASK) == []
        with pytest.raises(ProtocolError) as caught:
            deflate_reader(limit).feed(bytes([b0, 0x80 | 127]) + (wire_max + 1).to_bytes(8, "big") + MASK)
        assert caught.value.code == 1009
    with pytest.raises(ProtocolError) as caught:
        deflate_reader(limit).feed(bytes([0x82, 0x80 | 127]) + (limit + 1).to_bytes(8, "big") + MASK)
    assert caught.value.code == 1009


def test_a_fragmented_compressed_message_is_judged_by_its_inflated_size() -> None:
    """Its continuations carry no RSV1: the first frame's decides for the whole message."""
    limit = 4096
    data = random.Random(5).randbytes(limit)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    packed = (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert limit < len(packed) < limit + limit // 32 + 1024
    wire = masked(0x42, packed[:100]) + masked(0x00, packed[100:200]) + masked(0x80, packed[200:])
    assert deflate_reader(limit).feed(wire) == [(OP_BINARY, data)]
    with pytest.raises(ProtocolError) as caught:  # the same bytes, not compressed: too big
        FrameReader(limit).feed(masked(0x02, packed[:100]) + masked(0x80, packed[100:]))
    assert caught.value.code == 1009


def test_empty_fragments_do_not_pile_up() -> None:
    """A message of 100 000 empty continuation frames counts nothing toward the limit,
    and must not keep an entry per frame either (the reader's memory would grow with
    what the client sends); the message still ends as it should."""
    reader = FrameReader(1000)
    assert reader.feed(masked(0x01, b"x") + masked(0x00, b"") * 100_000) == []
    assert len(reader._fragments) <= 1
    assert reader.feed(masked(0x80, b"y")) == [(OP_TEXT, b"xy")]
