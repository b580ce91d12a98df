"""The connector's own frame parser against the ``websockets`` library's, on random server streams.

Both must return the same messages and fail with the same close code, however the stream is cut
into reads: fragmentation, control frames between fragments, masked frames, every close code,
invalid UTF-8 in text and close reasons, reserved bits and opcodes, length encodings and size limits.
What follows a close frame does not count (the connection ends there; ``websockets`` stops reading).
"""

from __future__ import annotations

import itertools
import struct

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest_daemons.connector.ws_client import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Control,
    FrameParser,
    ProtocolError,
)
from ingest_daemons.connector.ws_reference import LibraryFrameParser

Result = tuple[list[bytes | Control], int | None]


def frame_bytes(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = False,
                length_form: int = 0) -> bytes:
    """A frame as a server (or a broken server) writes it; ``length_form`` forces the 16- or 64-bit length."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126 and length_form == 0:
        header = struct.pack("!BB", b0, mask_bit | size)
    elif size < 1 << 16 and length_form in (0, 16):
        header = struct.pack("!BBH", b0, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", b0, mask_bit | 127, size)
    if masked:
        key = b"\x11\x22\x33\x44"
        return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + payload


TEXTS = st.one_of(
    st.text(max_size=12).map(str.encode),
    st.binary(max_size=12),  # often invalid UTF-8
    st.sampled_from(["é".encode()[:1], "€".encode()[1:], "€".encode()[:2], b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]),
)
CLOSE_CODES = st.sampled_from([1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1014, 1015, 1016, 999,
                               2999, 3000, 4999, 5000, 65535])


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["text", "text", "binary", "cont", "cont", "ping", "pong", "close", "odd"]))
    fin = draw(st.booleans())
    rsv = draw(st.sampled_from([0] * 12 + [0x40, 0x20, 0x10]))
    masked = draw(st.sampled_from([False] * 12 + [True]))
    length_form = draw(st.sampled_from([0] * 8 + [16, 64]))
    if kind == "close":
        body = draw(st.one_of(
            st.just(b""), st.binary(min_size=1, max_size=1),
            st.tuples(CLOSE_CODES, TEXTS).map(lambda c: struct.pack("!H", c[0]) + c[1]),
        ))
        return frame_bytes(OP_CLOSE, body, fin=draw(st.sampled_from([True] * 6 + [False])), rsv=rsv, masked=masked,
                           length_form=length_form)
    if kind in ("ping", "pong"):
        body = draw(st.one_of(st.binary(max_size=8), st.just(b"p" * 126)))
        opcode = OP_PING if kind == "ping" else OP_PONG
        return frame_bytes(opcode, body, fin=draw(st.sampled_from([True] * 6 + [False])), rsv=rsv, masked=masked,
                           length_form=length_form)
    if kind == "odd":
        return frame_bytes(draw(st.sampled_from([0x3, 0x7, 0xB, 0xF])), draw(st.binary(max_size=4)), fin=fin)
    opcode = {"text": OP_TEXT, "binary": OP_BINARY, "cont": OP_CONTINUATION}[kind]
    return frame_bytes(opcode, draw(TEXTS), fin=fin, rsv=rsv, masked=masked, length_form=length_form)


def run(parser: FrameParser | LibraryFrameParser, chunks: list[bytes]) -> Result:
    """Messages up to and including the first close frame, and the close code of the first violation before it."""
    out: list[bytes | Control] = []
    error: int | None = None
    for chunk in chunks:
        try:
            out += parser.feed(chunk)
        except ProtocolError as exc:
            out += exc.messages
            error = exc.close_code
            break
    for i, message in enumerate(out):
        if isinstance(message, Control) and message.opcode == OP_CLOSE:
            return out[: i + 1], None
    return out, error


def both(stream: bytes, cuts: list[int], max_size: int) -> tuple[Result, Result]:
    points = [0, *sorted(set(cuts)), len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(points) if b > a]
    return run(FrameParser(max_size), chunks), run(LibraryFrameParser(max_size), chunks)


SIZES = st.sampled_from([1 << 20, 1 << 20, 24])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=8).map(b"".join), SIZES)
@example(frame_bytes(OP_TEXT, "é".encode()[:1]), 1 << 20)  # invalid UTF-8 in a whole text frame
@example(frame_bytes(OP_TEXT, "€".encode()[:2], fin=False) + frame_bytes(OP_PING, b"x")
         + frame_bytes(OP_CONTINUATION, "€".encode()[2:]), 1 << 20)  # a character split across fragments
@example(frame_bytes(OP_TEXT, b"ok") + frame_bytes(OP_CLOSE, struct.pack("!H", 1005)), 1 << 20)
@example(frame_bytes(OP_TEXT, b"ok") + frame_bytes(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1 << 20)
@example(frame_bytes(OP_TEXT, b"a", fin=False) + frame_bytes(OP_CLOSE, b""), 1 << 20)
@example(frame_bytes(OP_TEXT, b"a" * 20, fin=False) + frame_bytes(OP_PING, b"p" * 8), 24)
def test_every_split_point_agrees(stream: bytes, max_size: int) -> None:
    for cut in range(len(stream) + 1):
        own, library = both(stream, [cut], max_size)
        assert own == library, f"cut at {cut} of {stream!r}"


@settings(max_examples=150, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=12).map(b"".join), st.lists(st.integers(0, 400), max_size=20), SIZES)
def test_any_chunking_agrees(stream: bytes, cuts: list[int], max_size: int) -> None:
    own, library = both(stream, [c for c in cuts if c < len(stream)], max_size)
    assert own == library
    one_byte = [stream[i : i + 1] for i in range(len(stream))]
    assert run(FrameParser(max_size), one_byte) == run(LibraryFrameParser(max_size), one_byte)
