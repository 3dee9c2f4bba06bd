"""The ZMTP codec's secondary rules, one variant at a time (issue 16): the boundaries of
the greeting, commands and metadata, malformed READY / ERROR commands (which close the
connection and never raise out of feed()), large bodies that end inside one read, and
the output queue's size boundaries. The main cases are in test_zmtp.py."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from porch.link import codec as z
from support.zmtp_stream import as_bytes, feed_in_pieces

# The codec's ends, named once: what changes here when the codec moves or is renamed.
Session = z.Session


def router(max_frame: int = 1 << 20) -> Session:
    return z.Session(max_frame, z.ROUTER)


def dealer(max_frame: int = 1 << 20) -> Session:
    return z.Session(max_frame, z.DEALER)


MAX = 1 << 20
HELLO = z.greeting() + z.ready(b"DEALER")


def ready_router() -> Session:
    s = router()
    assert s.feed(HELLO) == [] and s.ready
    s.out.clear()
    return s


def closed_by(s: Session, data: bytes) -> str:
    """Feed data (it must not raise) and return why the session closed."""
    s.out.clear()
    assert s.feed(data) == []
    assert s.error is not None, "the session must refuse this"
    return s.error


# ------------------------------------------------------------------------- greeting


@pytest.mark.parametrize("first", [b"G", b"\x00", b"\xfe"])
def test_a_first_byte_that_is_not_0xff_is_refused_on_its_own(first: bytes) -> None:
    assert "not ZMTP" in closed_by(router(), first)


@pytest.mark.parametrize("last", [0x00, 0x02, 0x7E, 0xFE])
def test_the_signature_s_tenth_byte_needs_its_low_bit(last: int) -> None:
    assert "not ZMTP" in closed_by(router(), b"\xff" + bytes(8) + bytes((last,)))


@pytest.mark.parametrize("last", [0x01, 0x7F, 0xFF])
def test_a_tenth_byte_with_its_low_bit_is_a_signature(last: int) -> None:
    s = router()
    s.feed(b"\xff" + bytes(8) + bytes((last,)))
    assert s.error is None


def test_a_bad_mechanism_is_refused_as_soon_as_its_20_bytes_are_in() -> None:
    g = z.greeting(mechanism=b"PLAIN")
    s = router()
    assert s.feed(g[:31]) == [] and s.error is None
    assert "mechanism PLAIN" in closed_by(s, g[31:32])


@pytest.mark.parametrize("mech", [b"NULLX", b"NULL\0X", b"NUL", b"null", b"\0NULL"])
def test_only_the_exact_null_mechanism_is_accepted(mech: bytes) -> None:
    assert "not supported" in closed_by(router(), z.greeting(mechanism=mech))


def test_the_as_server_byte_is_not_part_of_the_mechanism() -> None:
    s = router()
    s.feed(z.greeting(as_server=True) + z.ready(b"DEALER"))
    assert s.error is None and s.ready


@pytest.mark.parametrize("mech", [b"\xffN\xe9", "NULL\u00e9".encode()])
def test_a_non_ascii_mechanism_closes_the_connection(mech: bytes) -> None:
    assert "not supported" in closed_by(router(), z.greeting(mechanism=mech))


# ------------------------------------------------------------------------- encoding


def test_a_command_without_data_is_its_name_alone() -> None:
    assert z.command(b"PING") == b"\x04\x05\x04PING"


@pytest.mark.parametrize("body_size, long", [(255, False), (256, True), (257, True)])
def test_a_command_body_of_256_bytes_or_more_takes_the_long_form(body_size: int, long: bool) -> None:
    frame = z.command(b"X", bytes(body_size - 2))  # body: name length, name, data
    header = 9 if long else 2
    assert frame[0] == (z.COMMAND | z.LONG if long else z.COMMAND)
    assert len(frame) == header + body_size
    assert z.parse_command(frame[header:]) == (b"X", bytes(body_size - 2))


def test_our_ready_is_spelled_as_libzmq_spells_it() -> None:
    meta = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"ROUTER"
    body = b"\x05READY" + meta
    assert z.ready(b"ROUTER") == bytes((z.COMMAND, len(body))) + body


def test_an_error_reason_is_cut_to_255_bytes() -> None:
    name, data = z.parse_command(z.error("x" * 300)[9:])
    assert name == b"ERROR" and data[0] == 255 and data[1:] == b"x" * 255


def test_an_error_reason_that_is_not_unicode_text_is_still_sent() -> None:
    name, data = z.parse_command(z.error("bad \ud800 half")[2:])
    assert name == b"ERROR" and data[1:] == b"bad ? half"


# ------------------------------------------------------------------------- commands


@pytest.mark.parametrize("body", [b"\x05AB", b"\x01", b"\xff" + bytes(10)])
def test_a_command_whose_name_is_cut_short_is_malformed(body: bytes) -> None:
    with pytest.raises(z.ProtocolError, match="malformed command"):
        z.parse_command(body)
    frame = bytes((z.COMMAND, len(body))) + body
    assert "malformed command" in closed_by(router(), z.greeting() + frame)


def test_one_letter_property_names_are_read_and_empty_names_are_malformed() -> None:
    assert z.parse_properties(z.properties({b"X": b"1", b"Socket-Type": b"DEALER"})) == {
        "x": b"1", "socket-type": b"DEALER"}
    with pytest.raises(z.ProtocolError, match="malformed READY"):
        z.parse_properties(b"\x00" + struct.pack(">I", 0))


def test_a_ready_cut_anywhere_closes_the_connection() -> None:
    meta = z.properties({b"Identity": b"me", b"Socket-Type": b"DEALER"})
    for cut in range(len(meta)):
        s = router()
        closed_by(s, z.greeting() + z.command(b"READY", meta[:cut]))
        assert not s.ready
        assert len(s.out) <= 1  # at most our ERROR


def test_a_ready_without_socket_type_is_answered_with_error_and_closed() -> None:
    s = router()
    closed_by(s, z.greeting() + z.command(b"READY", z.properties({b"Identity": b"x"})))
    [answer] = s.out
    assert z.parse_command(answer[2:])[0] == b"ERROR"


@pytest.mark.parametrize("session", [router, dealer])
def test_a_non_ascii_socket_type_is_refused_not_raised(session: Callable[[], Session]) -> None:
    s = session()
    assert "socket type" in closed_by(s, z.greeting() + z.ready(b"\xe9DEALER\xff"))
    assert z.parse_command(s.out[0][2:])[0] == b"ERROR"


def test_non_ascii_property_names_are_read_not_raised() -> None:
    s = router()
    s.feed(z.greeting() + z.ready(b"DEALER", {b"X-\xe9\xff": b"v"}))
    assert s.error is None and s.ready


def test_a_peer_s_type_and_identity_are_empty_until_its_ready_says_them() -> None:
    s = router()
    assert (s.peer_socket_type, s.peer_identity) == (b"", b"")
    s.feed(z.greeting() + z.ready(b"REQ"))
    assert (s.peer_socket_type, s.peer_identity) == (b"REQ", b"")


def test_our_ready_carries_the_metadata_we_were_given() -> None:
    s = z.Session(MAX, z.DEALER, {b"X-Porch-Fds": b"1"})
    name, data = z.parse_command(s.out[1][2:])
    assert name == b"READY"
    assert z.parse_properties(data) == {"socket-type": b"DEALER", "x-porch-fds": b"1"}


def test_the_peer_s_metadata_is_empty_until_its_ready_says_it() -> None:
    s = router()
    assert s.peer_properties == {}
    s.feed(z.greeting() + z.ready(b"DEALER", {b"X-Porch-Fds": b"1", b"Identity": b"me"}))
    assert s.ready
    assert s.peer_properties == {"socket-type": b"DEALER", "x-porch-fds": b"1", "identity": b"me"}


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x05ab", b"\x02\xff\xfe", b"\xff"])
@pytest.mark.parametrize("handshake", [False, True])
def test_a_malformed_error_command_closes_the_connection(data: bytes, handshake: bool) -> None:
    s = ready_router() if handshake else router()
    prefix = b"" if handshake else z.greeting()
    assert "the peer sent ERROR" in closed_by(s, prefix + z.command(b"ERROR", data))


def test_the_peer_s_error_reason_is_its_declared_length() -> None:
    s = ready_router()
    assert "ERROR 'bye'" in closed_by(s, z.command(b"ERROR", b"\x03byeZZ"))


@pytest.mark.parametrize("name", [b"\xff\xfe", "P\u00cfNG".encode()])
def test_an_unknown_non_ascii_command_closes_the_connection(name: bytes) -> None:
    assert "unexpected command" in closed_by(ready_router(), z.command(name))


# ------------------------------------------------------------------------- frames


def test_a_long_frame_header_cut_anywhere_waits_for_the_rest() -> None:
    first, second = z.encode_message([b"a"]), z.encode_message([b"b" * 300])
    for cut in range(1, 9):  # inside the 9-byte LONG header of the second message
        s = ready_router()
        data = first + second
        msgs = s.feed(data[:len(first) + cut]) + s.feed(data[len(first) + cut:])
        assert s.error is None
        assert as_bytes(msgs) == [([b"a"], 1), ([b"b" * 300], 1)]


@pytest.mark.parametrize("size, in_place", [(z.BIG_FRAME, False), (z.BIG_FRAME + 1, True)])
def test_only_bodies_over_64_kib_are_read_in_place(size: int, in_place: bool) -> None:
    s = ready_router()
    s.feed(z.frame_header(size, False) + b"x")
    assert (s.read_buffer() is not None) == in_place


@pytest.mark.parametrize("after_cut", [0, 1, 5, 12])
def test_a_large_body_that_ends_inside_one_read_with_more_frames_after_it(after_cut: int) -> None:
    """feed() (not read_buffer) is handed the end of a body read in place together with
    whole and partial frames after it: nothing after the body is lost or misread."""
    big = bytes(range(256)) * 300  # 76800 > BIG_FRAME
    after = z.encode_message([b"env", b"blob"]) + z.encode_message([b"z" * 300])
    stream = z.encode_message([big]) + after
    s = ready_router()
    start = 1000
    assert s.feed(stream[:start]) == [] and s.read_buffer() is not None
    cut = len(stream) - len(after) + len(z.encode_message([b"env", b"blob"])) + after_cut
    msgs = s.feed(stream[start:cut]) + s.feed(stream[cut:])
    assert s.error is None
    assert as_bytes(msgs) == [([big], 1), ([b"env", b"blob"], 2), ([b"z" * 300], 1)]


def test_two_bodies_over_a_chunk_on_one_connection() -> None:
    s = router(max_frame=1 << 30)
    one, two = b"\x01" * (z.CHUNK + 10), b"\x02" * (z.CHUNK + 20)
    first = HELLO + z.encode_message([b"e1", one])
    stream = first + z.encode_message([two])
    # Each body starts in a read of its own: both are read in place, in CHUNK pieces.
    msgs = feed_in_pieces(s, stream, [len(HELLO) + 50, len(first) + 100])
    assert s.error is None
    assert [(len(f[-1]), n) for f, n in msgs] == [(len(one), 2), (len(two), 1)]
    assert bytes(msgs[0][0][1]) == one and bytes(msgs[1][0][0]) == two


def test_a_protocol_error_in_a_body_read_in_place_closes_the_session() -> None:
    s = ready_router()
    body = b"\x04PING" + b"\x00\x0a" + bytes(z.BIG_FRAME)
    frame = bytes((z.COMMAND | z.MORE | z.LONG,)) + struct.pack(">Q", len(body)) + body
    s.feed(frame[:100])
    buf = s.read_buffer()
    assert buf is not None
    buf[:] = frame[100:]
    assert s.filled(len(frame) - 100) == []
    assert s.error is not None and "command frame with MORE" in s.error
    assert s.read_buffer() is None


# ------------------------------------------------------------------------- OutQueue


def drain(q: z.OutQueue, step: int = 1 << 30) -> bytes:
    """Write out everything queued, step bytes at a time; consume must say True at the end."""
    out = b""
    done = q.empty
    while not done:
        data = b"".join(bytes(b) for b in q.buffers)
        assert data, "bytes are queued but no buffer holds them"
        n = min(step, len(data))
        out += data[:n]
        done = q.consume(n)
        assert done == (n == len(data)), "consume says True exactly when all is written"
    assert q.empty and q.buffers == [] and not q.ends
    return out


SIZES = [0, 1, 255, 256, 257, z.JOIN_BELOW - 1, z.JOIN_BELOW, z.JOIN_BELOW + 1]


@pytest.mark.parametrize("flen", SIZES)
@pytest.mark.parametrize("blen", [None, *SIZES])
def test_out_queue_encodes_each_size_boundary_exactly(flen: int, blen: int | None) -> None:
    frame, blob = b"f" * flen, (None if blen is None else b"b" * blen)
    expected = z.encode_message([frame] if blob is None else [frame, blob])
    for step in (1 << 30, 7):
        q = z.OutQueue(high_water_mark=10, max_bytes=1 << 30)
        assert q.push(frame, blob)
        assert q.queued == len(expected), "what is counted is what is sent"
        assert drain(q, step) == expected


@pytest.mark.parametrize("total", [z.JOIN_BELOW - 1, z.JOIN_BELOW, z.JOIN_BELOW + 1])
def test_a_blob_message_of_16_kib_or_more_keeps_the_blob_as_its_own_buffer(total: int) -> None:
    frame = b"e" * 10
    blob = b"b" * (total - len(frame) - 2 - 9)  # headers: 2 (short frame) + 9 (long blob)
    q = z.OutQueue(10, 1 << 30)
    q.push(frame, blob)
    assert q.queued == total
    assert (q.buffers[-1] is blob) == (total >= z.JOIN_BELOW)


@pytest.mark.parametrize("flen", [z.JOIN_BELOW - 1, z.JOIN_BELOW])
def test_a_frame_of_16_kib_or_more_is_its_own_buffer(flen: int) -> None:
    frame = b"f" * flen
    q = z.OutQueue(10, 1 << 30)
    q.push(frame, None)
    assert (q.buffers[-1] is frame) == (flen >= z.JOIN_BELOW)


def test_a_blob_is_sent_from_its_own_buffer_once_its_header_is_written() -> None:
    blob = b"b" * z.JOIN_BELOW
    q = z.OutQueue(10, 1 << 30)
    q.push(b"env", blob)
    head = len(q.buffers[0])
    assert not q.consume(head)
    assert q.buffers == [blob] and q.buffers[0] is blob, "no copy, no empty buffer in front"


@pytest.mark.parametrize("with_blob", [False, True])
def test_out_queue_byte_bound_is_exact(with_blob: bool) -> None:
    def msg(c: bytes) -> tuple[bytes, bytes | None]:  # 50 bytes on the wire either way
        return (c * 20, c * 26) if with_blob else (c * 48, None)

    q = z.OutQueue(high_water_mark=100, max_bytes=100)
    assert q.push(*msg(b"a"))
    assert q.push(*msg(b"b")), "exactly at the bound is within it"
    assert not q.push(b"c", None) and not q.push(b"c", b""), "one byte over is not"
    assert not q.consume(50)  # the first went out: room for exactly one more
    assert q.push(*msg(b"c"))
    assert not q.push(*msg(b"d"))


def test_out_queue_message_bound_with_blobs() -> None:
    q = z.OutQueue(high_water_mark=2, max_bytes=1 << 30)
    assert q.push(b"e1", b"b1") and q.push(b"e2", b"b2")
    before = (list(q.buffers), q.queued, list(q.ends))
    assert not q.push(b"e3", b"b3"), "past the high-water mark"
    assert (list(q.buffers), q.queued, list(q.ends)) == before, "a refused message queues nothing"
    assert drain(q) == z.encode_message([b"e1", b"b1"]) + z.encode_message([b"e2", b"b2"])


def test_protocol_output_is_queued_and_counted_with_messages() -> None:
    q = z.OutQueue(high_water_mark=10, max_bytes=1 << 30)
    q.push(b"m1", None)
    q.push_raw(z.ping(50))
    q.push(b"m2", b"blob")
    expected = z.encode_message([b"m1"]) + z.ping(50) + z.encode_message([b"m2", b"blob"])
    assert q.queued == len(expected)
    assert drain(q, 3) == expected
    q.push_raw(b"PONG")
    assert drain(q) == b"PONG"


def test_a_cleared_queue_is_empty_and_takes_messages_again() -> None:
    q = z.OutQueue(high_water_mark=1, max_bytes=10)
    q.push(b"x" * 100, None)
    q.consume(5)
    q.clear()
    assert q.empty and q.buffers == [] and not q.ends and q.queued == q.written == 0
    assert q.push(b"y", None)
    assert drain(q) == z.encode_message([b"y"])


# ------------------------------------------------------------------- descriptors in OutQueue


def test_a_descriptor_is_queued_with_where_its_message_starts() -> None:
    q = z.OutQueue(10, 1 << 30)
    assert q.fds_within(100) == 0
    assert q.push(b"a", None)  # bytes 0..3
    assert q.push(b"env", b"blob", fd=0)  # 0 is a descriptor like any other; from byte 3
    assert q.push(b"c", None, fd=7)  # from byte 3 + 5 + 6 = 14
    assert list(q.fds) == [(3, 0), (14, 7)]


@pytest.mark.parametrize("length, count", [(1, 0), (3, 0), (4, 1), (14, 1), (15, 2), (100, 2)])
def test_a_write_carries_the_descriptors_of_the_messages_it_starts(length: int, count: int) -> None:
    """A descriptor goes with the write holding its message's first byte (early is
    fine, late is not), never with a write that ends before it."""
    q = z.OutQueue(10, 1 << 30)
    q.push(b"a", None)
    q.push(b"env", b"blob", fd=5)
    q.push(b"c", None, fd=7)
    assert q.fds_within(length) == count


def test_descriptors_are_counted_from_what_was_written_and_taken_in_order() -> None:
    q = z.OutQueue(10, 1 << 30)
    q.push(b"a", None)
    q.push(b"env", b"blob", fd=5)
    q.push(b"c", None, fd=7)
    assert not q.consume(3)
    assert q.fds_within(1) == 1
    assert q.take_fds(1) == [5]
    assert not q.consume(11)
    assert q.fds_within(1) == 1
    assert q.take_fds(1) == [7] and not q.fds
    q.push(b"d", None, fd=9)
    q.push(b"e", None, fd=11)
    assert q.clear() == [9, 11], "the unsent ones are handed back to be closed"
    assert not q.fds


@pytest.mark.parametrize("blob", [None, b"blob"])
def test_a_queue_holds_a_bounded_number_of_descriptors(blob: bytes | None) -> None:
    """Each queued descriptor is an open file of the process: at MAX_QUEUED_FDS a
    message with one more waits (False, nothing queued), unless forced; messages
    without a descriptor still go."""
    q = z.OutQueue(10**6, 1 << 30)
    for fd in range(z.MAX_QUEUED_FDS):
        assert q.push(b"m", blob, fd=fd)
    before = (list(q.buffers), q.queued, list(q.ends), list(q.fds))
    assert not q.push(b"m", blob, fd=1000)
    assert (list(q.buffers), q.queued, list(q.ends), list(q.fds)) == before
    assert q.push(b"m", blob)
    assert q.push(b"m", blob, force=True, fd=1001)
    assert [fd for _, fd in q.fds][-2:] == [z.MAX_QUEUED_FDS - 1, 1001]


def test_an_empty_queue_takes_a_message_with_a_descriptor_whatever_it_still_holds() -> None:
    q = z.OutQueue(10**6, 1 << 30)
    for fd in range(z.MAX_QUEUED_FDS):
        q.push(b"m", None, fd=fd)
    assert q.consume(q.queued), "all written; the descriptors not yet taken"
    assert q.push(b"m", None, fd=1000)
    assert len(q.fds) == z.MAX_QUEUED_FDS + 1


@pytest.mark.parametrize("blob", [None, b"blob"])
@pytest.mark.parametrize("fd", [0, 3])
def test_a_message_refused_for_room_does_not_keep_its_descriptor(blob: bytes | None, fd: int) -> None:
    q = z.OutQueue(high_water_mark=1, max_bytes=1 << 30)
    assert q.push(b"first", None, fd=9)
    assert not q.push(b"second", blob, fd=fd)
    assert list(q.fds) == [(0, 9)], "the caller still owns it (and closes it)"
    q = z.OutQueue(high_water_mark=10, max_bytes=10)
    assert q.push(b"first", None)
    assert not q.push(b"x" * 20, blob, fd=fd)
    assert not q.fds
