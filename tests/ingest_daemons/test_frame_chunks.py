"""Splitting a frame into chunks that fit max_payload, and the Ssmd-Chunk header (pure)."""

from __future__ import annotations

import zlib

import pytest

from ingest_daemons.frame_chunks import HEADER_PREFIX, ChunkHeader, ChunkHeaderError, split_frame
from ingest_daemons.publisher import HeaderTemplate

MAX_PAYLOAD = 64 * 1024


def test_chunks_fit_max_payload_are_ordered_and_rebuild_the_frame() -> None:
    frame = bytes(range(256)) * 4100  # 1,049,600 bytes, every byte value
    headers = HeaderTemplate("run1.k1.s1:", {"Ssmd-Shard": "0", "Ssmd-Conn": "k1"}).render(42, 1770000000000000000)
    chunks = split_frame(frame, headers, MAX_PAYLOAD)
    assert len(chunks) == 17
    assert b"".join(payload for _, payload in chunks) == frame
    ids = []
    for index, (block, payload) in enumerate(chunks):
        assert len(block) + len(payload) <= MAX_PAYLOAD
        assert block.startswith(HEADER_PREFIX)  # first header: the archive reader's one-comparison check
        value = block[len(HEADER_PREFIX) : block.index(b"\r\n", len(HEADER_PREFIX))]
        header = ChunkHeader.parse(value)
        assert (header.index, header.count) == (index, 17)
        assert (header.frame_bytes, header.crc32, header.frame_id) == (len(frame), zlib.crc32(frame), "run1.k1.s1:42")
        assert b"\r\nSsmd-Received-Ns: 1770000000000000000\r\n" in block and b"\r\nSsmd-Shard: 0\r\n" in block
        ids.append([line for line in block.split(b"\r\n") if line.startswith(b"Nats-Msg-Id: ")])
    # one message id per chunk, distinct, derived from the frame's (so a retried chunk keeps it)
    assert [i[0] for i in ids] == [b"Nats-Msg-Id: run1.k1.s1:42.c%d" % n for n in range(17)]
    assert split_frame(frame, headers, MAX_PAYLOAD) == chunks  # deterministic: a retry is the same bytes


@pytest.mark.parametrize("value", ["", "1/1", "2/2 10 00000000 id", "0/1 x 00000000 id", "0/1 5 zz id", "0/1 5 0 "])
def test_a_malformed_chunk_header_is_refused(value: str) -> None:
    with pytest.raises(ChunkHeaderError):
        ChunkHeader.parse(value)


def test_header_round_trip() -> None:
    header = ChunkHeader(3, 17, 1_049_600, 0xDEADBEEF, "r.k1.s2:9")
    assert ChunkHeader.parse(header.render().encode()) == header
