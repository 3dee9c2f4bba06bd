"""The frames of a direct HTTP link (porch.link.pipe): what goes in comes out, whole,
however the stream is cut, and bytes that are not frames are refused."""

from __future__ import annotations

import struct

import pytest

from porch.link.pipe import HAS_BLOB, HEADER, BadFrame, FrameReader, encode


def test_a_frame_round_trips_with_and_without_a_blob() -> None:
    reader = FrameReader()
    data = encode(7, b"body", b"blob bytes", 1234) + encode(2**64 - 1, b"", None) + encode(3, b"b", b"")
    assert reader.feed(data) == [(7, 1234, b"body", b"blob bytes"), (2**64 - 1, 0, b"", None),
                                 (3, 0, b"b", b"")]
    assert reader.buffered == 0


def test_the_header_is_as_documented() -> None:
    """u32 length of the rest, u64 id, u64 deadline, u32 body length, u8 flags; then
    the body and the blob, little-endian."""
    frame = encode(0x0102030405060708, b"ab", b"xyz", 9)
    assert frame == struct.pack("<IQQIB", 8 + 8 + 4 + 1 + 2 + 3, 0x0102030405060708, 9, 2, HAS_BLOB) + b"abxyz"
    assert len(frame) == HEADER.size + 5


@pytest.mark.parametrize("step", [1, 2, 3, 7, 21, 22, 1000])
def test_frames_cut_anywhere_come_out_whole_and_in_order(step: int) -> None:
    frames = [(i, i * 10, bytes([i]) * i, bytes([255 - i]) * (3 * i) if i % 2 else None) for i in range(12)]
    stream = b"".join(encode(*f[:1], f[2], f[3], f[1]) for f in frames)
    reader = FrameReader()
    out = []
    for at in range(0, len(stream), step):
        out += reader.feed(stream[at:at + step])
    assert out == frames
    assert reader.buffered == 0


def test_a_partial_frame_waits_for_the_rest() -> None:
    frame = encode(1, b"body", b"blob")
    reader = FrameReader()
    assert reader.feed(frame[:-1]) == []
    assert reader.buffered == len(frame) - 1
    assert reader.feed(frame[-1:]) == [(1, 0, b"body", b"blob")]


@pytest.mark.parametrize("rest, body_len", [
    pytest.param(HEADER.size - 5, 0, id="shorter-than-its-header"),
    pytest.param(HEADER.size - 4 + 3, 4, id="body-longer-than-the-frame"),
    pytest.param(101, 0, id="over-the-limit"),
])
def test_a_length_that_cannot_be_is_refused(rest: int, body_len: int) -> None:
    reader = FrameReader(max_frame=100)
    with pytest.raises(BadFrame, match=f"a frame of {rest} bytes with a body of {body_len}"):
        reader.feed(struct.pack("<IQQIB", rest, 1, 0, body_len, 0))


def test_a_whole_frame_comes_out_before_a_partial_one_behind_it() -> None:
    first, second = encode(1, b"x" * 40, b"y" * 40), encode(2, b"body", b"blob")
    reader = FrameReader()
    assert reader.feed(first + second[:-1]) == [(1, 0, b"x" * 40, b"y" * 40)]
    assert reader.buffered == len(second) - 1
    assert reader.feed(second[-1:]) == [(2, 0, b"body", b"blob")]


def test_the_limit_allows_a_frame_of_exactly_its_size() -> None:
    frame = encode(1, b"", b"x" * (100 - (HEADER.size - 4)))
    assert FrameReader(max_frame=100).feed(frame) == [(1, 0, b"", b"x" * (100 - (HEADER.size - 4)))]
