"""permessage-deflate (RFC 7692) for the server's WebSockets, pure: the client's offer
parsed and answered (`negotiate`), its compressed messages inflated under the message
limit (`Inflater`), the server's messages compressed (`Deflater`). Used only when
`[http_server] ws_compression = true`; frames.py and wsconn.py carry the result.

Negotiation (RFC 7692 section 7): the first `permessage-deflate` offer whose
parameters are all known, valid and not repeated is accepted; an unacceptable offer
(or a header that does not parse) is declined, never refused: the 101 goes without
the extension. What porch answers:

- `server_no_context_takeover` and `client_no_context_takeover`: echoed when offered,
  never imposed. Both sides otherwise keep their context between messages, which is
  what makes small similar messages (JSON) small: measured on 144-byte JSON updates,
  33% of their size with context, 78% without, and half the CPU (a compressor made
  per message costs ~8 us, a kept one ~4 us).
- Memory instead comes from small windows: porch compresses with a 4 KiB window
  (SERVER_WINDOW_BITS) and zlib memLevel 5 (~38 KiB per socket, made at the socket's
  first compressed message; zlib's defaults would hold 260 KiB), and a client that
  offers `client_max_window_bits` is answered 12 (a ~11 KiB inflater; a client that
  does not offer it may use 32 KiB, a ~40 KiB inflater). On JSON the small window
  compressed as well as zlib's default one (measured: 144-byte updates and a 17 MB
  document). A worker's RSS grew by ~45 KiB per socket with 300 compressed sockets
  (one 1.5 KB JSON message each way), by ~3 KiB without compression.
- `server_max_window_bits=N`: answered min(N, 12). N = 8 declines that offer: zlib
  cannot write raw deflate with a 256-byte window.

Data (RFC 7692 section 7.2): an inflated message may be at most `limit` bytes; zlib is
told to give at most one byte more (`max_length`), so a small message that inflates to
gigabytes costs `limit` + 1 bytes and closes 1009. Data that is not valid deflate
closes 1007 (the frames were sound; their payload is not what the message type
promises, as with invalid UTF-8). A block with BFINAL set ends the client's stream:
what follows it in the message is ignored and the next message starts a fresh one.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from porch.ws.frames import CLOSE_INVALID_DATA, CLOSE_TOO_BIG, ProtocolError

NAME = "permessage-deflate"
SERVER_WINDOW_BITS = 12  # the window porch compresses with (and answers, when asked)
CLIENT_WINDOW_BITS = 12  # what porch answers a client offering client_max_window_bits
LEVEL = 1  # zlib level: measured on JSON, 1.7x the speed of the default (6) for 6% more bytes
MEM_LEVEL = 5
# Messages shorter than this go uncompressed (RSV1 clear, allowed per message): a few
# bytes cannot shrink by what their deflate framing costs.
MIN_COMPRESS = 32
MAX_OFFERS = 4096
_TAIL = b"\x00\x00\xff\xff"  # the empty stored block a sender strips (7.2.1), put back (7.2.2)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*)"')
_OWS = re.compile(r"[ \t]*")
_BITS = re.compile(r"[1-9][0-9]?")  # decimal, no leading zero (7.1.2.1)

Params = list[tuple[str, str | None]]


def parse_extensions(value: str) -> list[tuple[str, Params]]:
    """A Sec-WebSocket-Extensions value (RFC 6455 9.1, list rules of RFC 9110 5.6.1):
    extensions separated by commas (empty elements allowed), each a token with
    `; name[=value]` parameters, the value a token or a quoted string whose unescaped
    content is a token. Names lower-cased. Raises ValueError if it does not parse."""
    out: list[tuple[str, Params]] = []
    pos = 0
    end = len(value)

    def ows() -> None:
        nonlocal pos
        pos = _OWS.match(value, pos).end()  # type: ignore[union-attr]  # always matches

    def token() -> str:
        nonlocal pos
        m = _TOKEN.match(value, pos)
        if m is None:
            raise ValueError(f"a token expected at {pos}")
        pos = m.end()
        return m.group()

    while True:
        ows()
        if pos == end:
            return out
        if value[pos] == ",":
            pos += 1
            continue
        name = token()
        params: Params = []
        ows()
        while pos < end and value[pos] == ";":
            pos += 1
            ows()
            param = token().lower()
            ows()
            arg: str | None = None
            if pos < end and value[pos] == "=":
                pos += 1
                ows()
                quoted = _QUOTED.match(value, pos)
                if quoted is not None:
                    pos = quoted.end()
                    arg = re.sub(r"\\(.)", r"\1", quoted.group(1))
                    if _TOKEN.fullmatch(arg) is None:
                        raise ValueError(f"quoted value of {param} is not a token")
                else:
                    arg = token()
                ows()
            params.append((param, arg))
        out.append((name.lower(), params))
        if pos < end:
            if value[pos] != ",":
                raise ValueError(f"',' expected at {pos}")
            pos += 1


@dataclass(frozen=True)
class Agreement:
    """The extension as agreed: how each side compresses, and the answer (`header`)."""

    server_no_context: bool  # porch compresses every message on its own
    client_no_context: bool  # the client does: porch may drop its inflater after each
    server_bits: int  # porch's window
    client_bits: int  # the window porch inflates with (what the client may use)
    header: str  # the Sec-WebSocket-Extensions value of the 101


def _window_bits(value: str | None) -> int | None:
    if value is None or _BITS.fullmatch(value) is None:
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


def accept(params: Params) -> Agreement | None:
    """porch's answer to one permessage-deflate offer (RFC 7692 7.1), None to decline it."""
    seen: set[str] = set()
    server_no_context = client_no_context = False
    server_bits: int | None = None
    client_bits: int | None = None
    for name, value in params:
        if name in seen:
            return None  # 7.1: a parameter at most once
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
            if name == "server_no_context_takeover":
                server_no_context = True
            else:
                client_no_context = True
        elif name == "server_max_window_bits":
            server_bits = _window_bits(value)
            if server_bits is None:
                return None
        elif name == "client_max_window_bits":
            client_bits = 15 if value is None else _window_bits(value)
            if client_bits is None:
                return None
        else:
            return None  # an unknown parameter declines the offer (7.1)
    if server_bits == 8:
        return None
    answer = [NAME]
    if server_no_context:
        answer.append("server_no_context_takeover")
    if client_no_context:
        answer.append("client_no_context_takeover")
    own_bits = min(server_bits or 15, SERVER_WINDOW_BITS)
    if server_bits is not None:
        answer.append(f"server_max_window_bits={own_bits}")
    inflate_bits = 15
    if client_bits is not None:
        told = min(client_bits, CLIENT_WINDOW_BITS)
        answer.append(f"client_max_window_bits={told}")
        # zlib writes 9 when asked for 8 (a 256-byte window it cannot do): read 9.
        inflate_bits = max(told, 9)
    return Agreement(server_no_context, client_no_context, own_bits, inflate_bits, "; ".join(answer))


def negotiate(values: Iterable[str]) -> Agreement | None:
    """The first acceptable permessage-deflate offer among a request's
    Sec-WebSocket-Extensions values (every header line, in order), or None. Offers
    longer than MAX_OFFERS characters in all are declined unread (a real one is a few
    dozen; the whole travels to the primary worker with the socket)."""
    joined = ", ".join(values)
    if len(joined) > MAX_OFFERS:
        return None
    try:
        offers = parse_extensions(joined)
    except ValueError:
        return None
    for name, params in offers:
        if name == NAME:
            agreement = accept(params)
            if agreement is not None:
                return agreement
    return None


class Inflater:
    """The client's compressed messages, inflated: one zlib stream for the socket's life
    (context takeover), or one per message when the client agreed not to keep one."""

    __slots__ = ("_bits", "_keep", "_z", "limit")

    def __init__(self, agreement: Agreement, limit: int) -> None:
        self.limit = limit
        self._bits = agreement.client_bits
        self._keep = not agreement.client_no_context
        self._z: zlib._Decompress | None = None  # made at the first compressed message

    def inflate(self, data: bytes) -> bytes:
        """One whole message's payload (its fragments joined), inflated. Raises
        ProtocolError 1009 past `limit` bytes (having inflated at most one more), 1007
        for data that is not deflate."""
        z = self._z if self._z is not None else zlib.decompressobj(-self._bits)
        room = self.limit + 1
        try:
            out = z.decompress(data, room)
            if len(out) < room and not z.eof:  # all input taken: put the flush block back
                rest = z.decompress(_TAIL, room - len(out))
                if rest:
                    out += rest
        except zlib.error:
            self._z = None
            raise ProtocolError(CLOSE_INVALID_DATA, "invalid compressed data") from None
        if len(out) > self.limit:
            self._z = None
            raise ProtocolError(CLOSE_TOO_BIG, "message too big")
        self._z = z if self._keep and not z.eof else None
        return out


class Deflater:
    """The server's messages, compressed: a zlib stream kept for the socket's life
    (context takeover), or one per message when the client asked porch not to keep
    one. Every message given is compressed (with context the client's inflater must
    see each one porch's compressor saw), so callers skip short ones before."""

    __slots__ = ("_bits", "_keep", "_z")

    def __init__(self, agreement: Agreement) -> None:
        self._bits = agreement.server_bits
        self._keep = not agreement.server_no_context
        self._z: zlib._Compress | None = None

    def deflate(self, payload: bytes) -> bytes:
        z = self._z
        if z is None:
            z = zlib.compressobj(LEVEL, zlib.DEFLATED, -self._bits, MEM_LEVEL)
            if self._keep:
                self._z = z
        data = z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4]  # a sync flush ends with the empty stored block (7.2.1)
