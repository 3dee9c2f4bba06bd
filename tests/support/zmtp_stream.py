"""Feeding a ZMTP session as the transports do, for the codec's unit tests (server and
client side): bytes cut anywhere, large bodies read in place."""

from __future__ import annotations

from hypothesis import strategies as st

from porch.link import codec as z

# Bodies over BIG_FRAME (read in place): drawn as a size and an offset, not byte by byte.
PATTERN = bytes(range(256)) * 300
LARGE = st.builds(lambda n, k: PATTERN[k:k + n], st.integers(z.BIG_FRAME - 10, z.BIG_FRAME + 5000),
                  st.integers(0, 255))


def feed_in_pieces(s: z.Session, data: bytes, cuts: list[int]) -> list[z.Message]:
    """Feed data cut at `cuts`, reading large bodies in place as the transport does."""
    msgs: list[z.Message] = []
    pos = 0
    for cut in [*sorted({c for c in cuts if c < len(data)}), len(data)]:
        while pos < cut:
            buf = s.read_buffer()
            if buf is None:
                msgs += s.feed(data[pos:cut])
                pos = cut
            else:
                k = min(len(buf), cut - pos)
                buf[:k] = data[pos:pos + k]
                pos += k
                msgs += s.filled(k)
    return msgs


def as_bytes(msgs: list[z.Message]) -> list[tuple[list[bytes], int]]:
    return [([bytes(f) for f in frames], count) for frames, count in msgs]
