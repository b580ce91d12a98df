"""Frames larger than the NATS server's ``max_payload``: split into ordered chunks, described in a header.

NATS refuses a message bigger than ``max_payload`` (1 MiB by default; the exchange's WebSocket may
send up to 16 MiB), and a refused frame would be held and re-sent forever, stalling the shard. So
the publisher stores such a frame as ``count`` messages on the frame's own subject, in order, each
carrying the header (always the *first* header of the block, so a reader spots a chunk with one
prefix comparison)::

    Ssmd-Chunk: {index}/{count} {frame_bytes} {crc32:08x} {frame_id}

``index`` counts from 0; ``frame_bytes`` and ``crc32`` (zlib CRC-32) describe the whole frame, so
reassembly can prove it rebuilt the original bytes; ``frame_id`` is the frame's own
``Nats-Msg-Id``. Each chunk has its own ``Nats-Msg-Id`` (``{frame_id}.c{index}``): distinct per
chunk, and the same on every retry of that chunk, so JetStream (and the archive) de-duplicate a
retried chunk like any other message. The other headers (receive time, shard, connection) are the
frame's, on every chunk. Chunk payloads are plain slices of the frame: concatenated in index order
they are the frame, byte for byte.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final

from ingest_daemons.wire import HDR_CHUNK, HDR_MSG_ID

HEADER_PREFIX: Final = f"NATS/1.0\r\n{HDR_CHUNK}: ".encode()
# What a chunk's header block adds to the frame's, besides the frame id (an upper bound): the
# "Ssmd-Chunk: {index}/{count} {bytes} {crc32} " line with its CRLF, numbers at their widest, and
# ".c{index}" appended to the message id.
_CHUNK_LINE_OVERHEAD: Final = len(f"{HDR_CHUNK}: {10**10}/{10**10} {10**20} {0:08x} \r\n") + len(f".c{10**10}")
MIN_CHUNK_BYTES: Final = 1024


class ChunkHeaderError(ValueError):
    """An ``Ssmd-Chunk`` value that does not follow the format above."""


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    index: int
    count: int
    frame_bytes: int
    crc32: int
    frame_id: str

    def render(self) -> str:
        return f"{self.index}/{self.count} {self.frame_bytes} {self.crc32:08x} {self.frame_id}"

    @classmethod
    def parse(cls, value: str | bytes) -> ChunkHeader:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        try:
            position, size, crc, frame_id = text.strip().split(" ", 3)
            index_text, count_text = position.split("/")
            header = cls(int(index_text), int(count_text), int(size), int(crc, 16), frame_id)
        except ValueError:
            raise ChunkHeaderError(f"not an {HDR_CHUNK} value: {text[:120]!r}") from None
        if not 0 <= header.index < header.count or header.frame_bytes < 0 or not frame_id:
            raise ChunkHeaderError(f"inconsistent {HDR_CHUNK} value: {text[:120]!r}")
        return header

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1


def chunk_msg_id(frame_id: str, index: int) -> str:
    return f"{frame_id}.c{index}"


def chunk_payload_limit(max_payload: int, headers: bytes) -> int:
    """Payload bytes per chunk so that a chunk (its headers included) fits ``max_payload``."""
    return max_payload - len(headers) - _CHUNK_LINE_OVERHEAD


def frame_id_of(headers: bytes) -> str:
    """The ``Nats-Msg-Id`` of a header block (the chunks' ids derive from it)."""
    marker = f"\r\n{HDR_MSG_ID}: ".encode()
    start = headers.find(marker)
    if start < 0:
        raise ValueError(f"a frame to split needs a {HDR_MSG_ID} header")
    start += len(marker)
    return headers[start : headers.index(b"\r\n", start)].decode()


def split_frame(payload: bytes, headers: bytes, max_payload: int) -> list[tuple[bytes, bytes]]:
    """``(headers, payload)`` of each chunk, in order, for a frame that does not fit ``max_payload``.

    ``headers`` is the frame's complete header block (with its ``Nats-Msg-Id``); each chunk gets the
    same block with the ``Ssmd-Chunk`` line first and its own message id.
    """
    frame_id = frame_id_of(headers)
    limit = chunk_payload_limit(max_payload, headers) - len(frame_id)
    if limit < MIN_CHUNK_BYTES:
        raise ValueError(f"max_payload {max_payload} leaves no room for chunks of a {len(payload)}-byte frame")
    count = -(-len(payload) // limit)
    crc = zlib.crc32(payload)
    old_id = f"{HDR_MSG_ID}: {frame_id}\r\n".encode()
    rest = headers[len(b"NATS/1.0\r\n") :]
    chunks = []
    for index in range(count):
        line = f"{HDR_CHUNK}: {ChunkHeader(index, count, len(payload), crc, frame_id).render()}\r\n".encode()
        own_id = f"{HDR_MSG_ID}: {chunk_msg_id(frame_id, index)}\r\n".encode()
        block = b"NATS/1.0\r\n" + line + rest.replace(old_id, own_id, 1)
        chunks.append((block, payload[index * limit : (index + 1) * limit]))
    return chunks
