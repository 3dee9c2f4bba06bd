"""permessage-deflate (issue 12 item 1): porch's negotiation (porch.ws.deflate)
and its compressed frames (porch.ws.frames with an Inflater) held to a second
implementation, the `websockets` library: its client extension factory must accept
every answer porch gives, its compressed frames must read back as the messages sent,
and what porch compresses must read back in it. Plus what no library sends: RSV1
misuse, data that is not deflate, and bombs."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from websockets.headers import build_extension, parse_extension
from websockets.protocol import Protocol, Side, State

from porch.http_server.settings import load_settings
from porch.http_server.upgrade import extension_offers
from porch.node.config import ConfigError
from porch.ws.deflate import (
    MAX_OFFERS,
    MIN_COMPRESS,
    Agreement,
    Deflater,
    Inflater,
    negotiate,
    parse_extensions,
)
from porch.ws.frames import (
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    RSV1,
    FrameReader,
    ProtocolError,
    frame,
    unmask,
)

# ---------------------------------------------------------------------------- the setting


def test_the_setting_is_off_by_default_and_a_boolean() -> None:
    assert load_settings({}).ws_compression is False
    assert load_settings({"ws_compression": True}).ws_compression is True
    for bad in ("yes", 1, "true"):
        with pytest.raises(ConfigError, match="ws_compression"):
            load_settings({"ws_compression": bad})


# ---------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("header", [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate;client_max_window_bits=10;server_no_context_takeover, permessage-deflate",
    'permessage-deflate; server_max_window_bits="10", x-webkit-deflate-frame',
    "foo; a=1; b, bar",
    "permessage-deflate ;  client_no_context_takeover\t,  ",
])
def test_the_header_parses_as_websockets_parses_it(header: str) -> None:
    assert parse_extensions(header) == [(name, list(params)) for name, params in parse_extension(header)]


def test_lists_allow_empty_elements_and_quoted_escapes() -> None:
    assert parse_extensions(' , a; p="1\\0", ,b') == [("a", [("p", "10")]), ("b", [])]
    assert parse_extensions("\t a ,") == [("a", [])]
    assert parse_extensions("") == []


@pytest.mark.parametrize("header", [
    "permessage-deflate; =10", "permessage-deflate client_max_window_bits", "a; b=", 'a; b="1 0"',
    'a; b="10', "a; b=1 0", "a;;b", "a, ;b", "pérmessage-deflate", 'a; b="\\"x"',
])
def test_a_header_that_does_not_parse_is_an_error(header: str) -> None:
    with pytest.raises(ValueError):
        parse_extensions(header)


# ---------------------------------------------------------------------------- negotiation


def answer_params(agreement: Agreement) -> list[tuple[str, str | None]]:
    ((name, params),) = parse_extension(agreement.header)
    assert name == "permessage-deflate"
    return list(params)


@pytest.mark.parametrize("header", [
    None, "", "x-webkit-deflate-frame", "permessage-deflate; unknown", "permessage-deflate; nonsense=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; server_no_context_takeover=1", "permessage-deflate; client_no_context_takeover=x",
    "permessage-deflate; server_max_window_bits", "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16", "permessage-deflate; server_max_window_bits=08",
    "permessage-deflate; server_max_window_bits=8", "permessage-deflate; client_max_window_bits=0",
    "permessage-deflate; client_max_window_bits=15; client_max_window_bits=15",
    'permessage-deflate; client_max_window_bits="x"', "permessage-deflate; ;",
], ids=repr)
def test_no_acceptable_offer_is_answered_without_the_extension(header: str | None) -> None:
    """An unacceptable offer (RFC 7692 7.1: unknown, repeated or invalid parameters; a
    256-byte window zlib cannot write) or a header that does not parse: declined."""
    assert negotiate([] if header is None else [header]) is None


def test_offers_too_long_to_be_real_are_declined_unread() -> None:
    padding = "x-unknown; a=1, " * 300
    assert len(padding) > 4096
    assert negotiate([padding + "permessage-deflate"]) is None
    assert negotiate(["x-unknown; a=1, " * 10 + "permessage-deflate"]) is not None


def test_offers_too_long_are_not_carried_to_the_primary() -> None:
    short = [("Host", "x"), ("Sec-WebSocket-Extensions", "a"),
             ("sec-websocket-extensions", "permessage-deflate")]
    assert extension_offers(short) == ["a", "permessage-deflate"]
    assert extension_offers([("Sec-WebSocket-Extensions", "x" * 5000)]) == []


def test_the_first_acceptable_offer_is_taken() -> None:
    agreement = negotiate(["permessage-deflate; server_max_window_bits=8, "
                           "permessage-deflate; client_no_context_takeover, permessage-deflate"])
    assert agreement is not None
    assert agreement.header == "permessage-deflate; client_no_context_takeover"
    assert agreement.client_no_context and not agreement.server_no_context
    # offers over several header lines, in order; names in any case
    agreement = negotiate(["foo", "PerMessage-Deflate; Server_No_Context_Takeover"])
    assert agreement is not None and agreement.header == "permessage-deflate; server_no_context_takeover"


def test_window_bits_are_answered_within_what_was_offered() -> None:
    agreement = negotiate(['permessage-deflate; server_max_window_bits="10"; client_max_window_bits'])
    assert agreement is not None
    assert answer_params(agreement) == [("server_max_window_bits", "10"), ("client_max_window_bits", "12")]
    assert (agreement.server_bits, agreement.client_bits) == (10, 12)
    agreement = negotiate(["permessage-deflate; server_max_window_bits=15; client_max_window_bits=9"])
    assert agreement is not None and (agreement.server_bits, agreement.client_bits) == (12, 9)
    assert answer_params(agreement) == [("server_max_window_bits", "12"), ("client_max_window_bits", "9")]
    agreement = negotiate(["permessage-deflate; client_max_window_bits=8"])
    assert agreement is not None and agreement.client_bits == 9  # zlib writes 9 for 8
    agreement = negotiate(["permessage-deflate"])  # nothing offered: nothing answered, 32 KiB read
    assert agreement is not None and agreement.header == "permessage-deflate"
    assert (agreement.server_bits, agreement.client_bits) == (12, 15)


CLIENTS = [
    {},
    {"client_max_window_bits": None},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 9, "client_max_window_bits": 9},
    {"server_max_window_bits": 15, "client_max_window_bits": 15},
    {"server_no_context_takeover": True, "client_no_context_takeover": True, "server_max_window_bits": 11},
]


def pair(settings: dict[str, object], limit: int = 1 << 20) -> tuple[Protocol, FrameReader, Deflater]:
    """A websockets client that offered permessage-deflate with `settings`, and porch's
    reader and compressor for the answer porch gave, which the client accepted."""
    factory = ClientPerMessageDeflateFactory(**settings)  # type: ignore[arg-type]
    agreement = negotiate([build_extension([("permessage-deflate", factory.get_request_params())])])
    assert agreement is not None
    extension = factory.process_response_params(answer_params(agreement), [])
    assert isinstance(extension, PerMessageDeflate)
    client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    client.extensions = [extension]
    return client, FrameReader(limit, Inflater(agreement, limit)), Deflater(agreement)


def messages(rng: random.Random, count: int) -> list[tuple[int, bytes]]:
    out = []
    for _ in range(count):
        size = rng.choice((0, 1, 31, 32, 200, 5000, 70_000, rng.randint(0, 2000)))
        kind = rng.random()
        if kind < 0.4:  # JSON-ish text, compressible and similar message to message
            text = f'{{"id": {size}, "name": "process {size}", "state": "running"}} ' * (size // 40 + 1)
            out.append((OP_TEXT, text[:size].encode()))
        elif kind < 0.7:
            out.append((OP_TEXT, ("é€x" * size)[:size].encode()))
        else:
            out.append((OP_BINARY, rng.randbytes(size)))
    return out


def feed_in_pieces(reader: FrameReader, data: bytes, rng: random.Random) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        step = rng.choice((1, 5, 64, 1000, 70_000))
        out += reader.feed(data[pos:pos + step])
        pos += step
    return out


@pytest.mark.parametrize("settings", CLIENTS, ids=repr)
def test_a_websockets_client_and_porch_agree_and_read_each_other(settings: dict[str, object]) -> None:
    """Each answer porch gives is one the websockets client accepts; then its compressed
    messages (fragmented or not, context taken over or not) read back in porch as sent,
    and porch's compressed messages read back in the client."""
    rng = random.Random(repr(settings))
    client, reader, deflater = pair(settings)
    sent = messages(rng, 40)
    for opcode, payload in sent:
        send = client.send_text if opcode == OP_TEXT else client.send_binary
        if len(payload) > 100 and rng.random() < 0.5:
            third = len(payload) // 3
            send(payload[:third], fin=False)
            client.send_ping(b"between")
            client.send_continuation(payload[third:2 * third], fin=False)
            client.send_continuation(payload[2 * third:], fin=True)
        else:
            send(payload)
    wire = b"".join(client.data_to_send())
    got = [m for m in feed_in_pieces(reader, wire, rng) if m[0] != OP_PING]
    assert got == sent
    # and the other way: what porch compresses, the client reads
    out = b"".join(frame(op | RSV1, deflater.deflate(p)) if len(p) >= MIN_COMPRESS else frame(op, p)
                   for op, p in sent)
    client.receive_data(out)
    events = client.events_received()
    assert [(int(e.opcode), bytes(e.data)) for e in events] == sent


def test_porch_keeps_its_context_unless_asked_not_to() -> None:
    """Context takeover: the same message sent again costs a few bytes; a client that
    asked for server_no_context_takeover gets every message compressed on its own."""
    message = b'{"type": "update", "process": "chat:chat:template.os", "state": "running"}' * 3
    kept = negotiate(["permessage-deflate"])
    fresh = negotiate(["permessage-deflate; server_no_context_takeover"])
    assert kept is not None and fresh is not None
    keeper, forgetter = Deflater(kept), Deflater(fresh)
    first, second = keeper.deflate(message), keeper.deflate(message)
    assert len(second) < len(first) // 4
    assert forgetter.deflate(message) == forgetter.deflate(message)
    assert zlib.decompressobj(-15).decompress(forgetter.deflate(message) + b"\x00\x00\xff\xff") == message


# ---------------------------------------------------------------------------- frames

MASK = b"\x01\x02\x03\x04"
TAIL = b"\x00\x00\xff\xff"


def masked(b0: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return bytes([b0]) + length + MASK + unmask(payload, MASK)


def compress(data: bytes, wbits: int = 15, finish: bool = False) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    if finish:
        return z.compress(data) + z.flush(zlib.Z_FINISH)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def reader(header: str = "permessage-deflate", limit: int = 1 << 20) -> FrameReader:
    agreement = negotiate([header])
    assert agreement is not None
    return FrameReader(limit, Inflater(agreement, limit))


MALFORMED = {
    "rsv1 on a continuation": (masked(0x41, compress(b"ab")) + masked(0xC0, compress(b"cd")), 1002),
    "rsv1 on a ping": (masked(0xC9, b"p"), 1002),
    "rsv1 on a close": (masked(0xC8, (1000).to_bytes(2, "big")), 1002),
    "rsv1 on a pong": (masked(0xCA, b""), 1002),
    "rsv2": (masked(0xA1, b"hi"), 1002),
    "rsv1 and rsv3": (masked(0xD1, compress(b"hi")), 1002),
    "rsv1 on an unknown opcode": (masked(0xC3, compress(b"hi")), 1002),
    "not deflate": (masked(0xC1, b"\xff\xff\xff\xff"), 1007),
    "not deflate across fragments": (masked(0x42, b"\x07") + masked(0x80, b"\xff\xff"), 1007),
    "inflates to invalid UTF-8": (masked(0xC1, compress(b"\xff\xfe")), 1007),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_compressed_frames_misused_close_with_their_code(name: str) -> None:
    data, code = MALFORMED[name]
    with pytest.raises(ProtocolError) as caught:
        reader().feed(data)
    assert caught.value.code == code, caught.value.reason


def test_rsv1_without_the_extension_stays_a_protocol_error() -> None:
    with pytest.raises(ProtocolError) as caught:
        FrameReader(1 << 20).feed(masked(0xC1, compress(b"hi")))
    assert caught.value.code == 1002


def test_the_limit_is_on_inflated_bytes() -> None:
    text = b"a" * 1000
    assert reader(limit=1000).feed(masked(0xC1, compress(text))) == [(OP_TEXT, text)]
    with pytest.raises(ProtocolError) as caught:
        reader(limit=999).feed(masked(0xC1, compress(text)))
    assert caught.value.code == 1009
    # fragmented: the whole message counts
    split = compress(text)
    with pytest.raises(ProtocolError) as caught:
        reader(limit=999).feed(masked(0x41, split[:3]) + masked(0x80, split[3:]))
    assert caught.value.code == 1009


def test_a_bomb_is_refused_without_being_inflated() -> None:
    """256 MiB of zeros compress to a quarter of a MiB: refused 1009 with at most the
    limit (1 MiB) inflated, never the whole."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    bomb = b"".join(z.compress(chunk) for _ in range(256)) + z.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(bomb) < 300_000
    data = masked(0xC2, bomb)
    r = reader(limit=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as caught:
            r.feed(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.code == 1009
    assert peak < 8 << 20, peak


def test_compressed_bytes_past_the_limit_are_refused_at_the_header() -> None:
    """A compressed message may be a little larger than the limit on the wire (deflate
    adds a few bytes to incompressible data), not much more: 1009 before its payload."""
    incompressible = random.Random(3).randbytes(100_000)
    packed = compress(incompressible)
    assert len(packed) > 100_000
    assert reader(limit=100_000).feed(masked(0xC2, packed)) == [(OP_BINARY, incompressible)]
    header_only = bytes([0xC2, 0x80 | 127]) + (200_000).to_bytes(8, "big") + MASK
    with pytest.raises(ProtocolError) as caught:
        reader(limit=100_000).feed(header_only)
    assert caught.value.code == 1009
    with pytest.raises(ProtocolError) as caught:  # uncompressed: the limit itself
        reader(limit=100_000).feed(bytes([0x82, 0x80 | 127]) + (100_001).to_bytes(8, "big") + MASK)
    assert caught.value.code == 1009


def test_context_is_taken_over_unless_the_client_agreed_not_to() -> None:
    """With context: the second message refers to the first. A client that agreed to
    client_no_context_takeover and refers back anyway sends data porch cannot read."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    message = b"the same words, again and again " * 4
    first = z.compress(message) + z.flush(zlib.Z_SYNC_FLUSH)
    second = z.compress(message) + z.flush(zlib.Z_SYNC_FLUSH)
    assert len(second) < len(first) // 2
    wire = masked(0xC1, first[:-4]) + masked(0xC1, second[:-4])
    assert reader().feed(wire) == [(OP_TEXT, message), (OP_TEXT, message)]
    with pytest.raises(ProtocolError) as caught:
        reader("permessage-deflate; client_no_context_takeover").feed(wire)
    assert caught.value.code == 1007


def test_uncompressed_messages_and_a_final_block_on_a_deflate_socket() -> None:
    """RSV1 clear: the message as it is. A sender that ends a message with a BFINAL
    block (RFC 7692 7.2.3.4) starts a new stream with its next one."""
    r = reader()
    wire = (masked(0x81, b"plain") + masked(0xC1, compress(b"final one", finish=True))
            + masked(0xC1, compress(b"next stream")) + masked(0x82, b"\x00raw"))
    assert r.feed(wire) == [(OP_TEXT, b"plain"), (OP_TEXT, b"final one"), (OP_TEXT, b"next stream"),
                            (OP_BINARY, b"\x00raw")]


def test_an_empty_compressed_message() -> None:
    assert reader().feed(masked(0xC1, b"\x00") + masked(0xC2, compress(b""))) == [(OP_TEXT, b""),
                                                                                  (OP_BINARY, b"")]


# ---------------------------------------------------------------------------- rules pinned one by one


def test_a_bare_offer_is_answered_with_every_default() -> None:
    """No parameter: both sides keep their context, porch compresses with its 4 KiB
    window and inflates with 32 KiB (what a client that was told nothing may use)."""
    assert negotiate(["permessage-deflate"]) == Agreement(False, False, 12, 15, "permessage-deflate")
    assert negotiate(["permessage-deflate; server_no_context_takeover"]) == Agreement(
        True, False, 12, 15, "permessage-deflate; server_no_context_takeover")
    assert negotiate(["permessage-deflate; client_no_context_takeover"]) == Agreement(
        False, True, 12, 15, "permessage-deflate; client_no_context_takeover")


def test_offers_of_exactly_max_offers_characters_are_read() -> None:
    offer = "permessage-deflate"
    exact = offer + "," * (MAX_OFFERS - len(offer))  # empty list elements
    assert len(exact) == MAX_OFFERS
    assert negotiate([exact]) is not None
    assert negotiate([exact + ","]) is None
    assert negotiate([offer, "," * (MAX_OFFERS - len(offer) - 2)]) is not None  # joined by ", "
    assert negotiate([offer, "," * (MAX_OFFERS - len(offer) - 1)]) is None


def test_a_comma_needs_no_space_after_it() -> None:
    assert parse_extensions("a,b;c,d,,e") == [("a", []), ("b", [("c", None)]), ("d", []), ("e", [])]


@pytest.mark.parametrize("header, message", [
    (";", "a token expected at 0"),
    ("a; =1", "a token expected at 3"),
    ('a; b="x y"', "quoted value of b is not a token"),
    ("a b", "',' expected at 2"),
    ("a; b=1 c", "',' expected at 7"),
])
def test_a_header_that_does_not_parse_says_where(header: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_extensions(header)
    assert str(caught.value) == message


def test_the_tail_put_back_is_part_of_the_data() -> None:
    """RFC 7692 7.2.2: the receiver appends 00 00 ff ff and inflates the whole. A
    message that ends in a stored block's header of 4 bytes gets those 4 bytes as
    its content's end, after what came before."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = z.compress(b"hello") + z.flush(zlib.Z_SYNC_FLUSH) + b"\x00\x04\x00\xfb\xff"
    assert reader(limit=9).feed(masked(0xC2, data)) == [(OP_BINARY, b"hello" + TAIL)]
    with pytest.raises(ProtocolError) as caught:
        reader(limit=8).feed(masked(0xC2, data))
    assert caught.value.code == 1009


def test_inflating_refusals_say_why() -> None:
    with pytest.raises(ProtocolError) as caught:
        reader().feed(masked(0xC1, b"\xff\xff\xff\xff"))
    assert (caught.value.code, caught.value.reason) == (1007, "invalid compressed data")
    with pytest.raises(ProtocolError) as caught:
        reader(limit=10).feed(masked(0xC1, compress(b"a" * 11)))
    assert (caught.value.code, caught.value.reason) == (1009, "message too big")


def test_a_kept_compressor_is_small() -> None:
    """A socket's compressor lives as long as the socket: a 4 KiB window and memLevel 5
    hold ~38 KiB where zlib's defaults would hold 150-260 KiB (zlib allocates through
    Python's raw allocator, which tracemalloc traces)."""
    agreement = negotiate(["permessage-deflate"])
    assert agreement is not None
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        deflater = Deflater(agreement)
        deflater.deflate(b"x" * 100)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 64 * 1024, held
    assert deflater.deflate(b"x" * 100)  # (kept alive to here)
