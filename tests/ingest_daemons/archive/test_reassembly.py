"""Chunked frames made whole again, on records alone (pure): order, day boundaries, missing chunks."""

from __future__ import annotations

import zlib

import orjson

from ingest_daemons.archive import SeqRange
from ingest_daemons.archive.layout import TimeWindow
from ingest_daemons.archive.reader import Record
from ingest_daemons.archive.reassembly import FrameReassembler, covered_holes
from ingest_daemons.frame_chunks import ChunkHeader

SUBJECT = b"dev.kalshi.economics.json.orderbook.KX"
FRAME = b'{"type":"orderbook_snapshot","msg":{"levels":[' + b",".join(b"[%d,%d]" % (i, i) for i in range(300)) + b"]}}"


def chunked(frame: bytes, count: int, frame_id: str = "r.k1.s1:7") -> list[tuple[bytes, bytes]]:
    """(Ssmd-Chunk value, payload) of each chunk, as the publisher makes them."""
    size = -(-len(frame) // count)
    crc = zlib.crc32(frame)
    return [
        (ChunkHeader(i, count, len(frame), crc, frame_id).render().encode(), frame[i * size : (i + 1) * size])
        for i in range(count)
    ]


def other(seq: int, ts: int) -> Record:
    return (seq, ts, b"dev.kalshi.economics.json.trade.KY", b"1", b'{"n":%d}' % seq)


def test_a_frame_interleaved_with_other_messages_becomes_one_line_at_its_first_chunk() -> None:
    parts = chunked(FRAME, 3)
    records = [other(1, 10), (2, 11, SUBJECT, b"5", parts[0][1]), other(3, 12), (4, 13, SUBJECT, b"5", parts[1][1]),
               (5, 14, SUBJECT, b"5", parts[2][1]), other(6, 15)]
    chunks = {2: parts[0][0], 4: parts[1][0], 5: parts[2][0]}
    r = FrameReassembler(TimeWindow(0, 100))
    out = r.feed(records, chunks) + r.finish()
    assert [rec[0] for rec in out] == [1, 2, 3, 6]
    assert out[1] == (2, 11, SUBJECT, b"5", FRAME)  # chunk 0's seq, ts, subject, receive time; whole bytes
    assert r.extras == {2: b'"chunk_seqs":[2,4,5],'}
    assert r.covered == {4, 5} and (r.first_seq, r.last_seq) == (1, 6)
    assert r.report.as_manifest()["frames"] == 1 and r.report.chunk_messages == 3
    assert covered_holes(4, 6, r.covered) == []  # after line 3: 4 and 5 are not holes
    assert covered_holes(4, 8, r.covered) == [SeqRange(6, 7)]


def test_batches_without_chunks_pass_untouched() -> None:
    batch = [other(1, 1), other(2, 2)]
    r = FrameReassembler(TimeWindow(0, 100))
    assert r.feed(batch, {}) is batch


def test_a_frame_straddling_midnight_belongs_to_the_day_of_its_first_chunk() -> None:
    """Day D = [0, 100), D+1 = [100, 200). Chunks 0 and 1 before midnight, chunk 2 after."""
    parts = chunked(FRAME, 3)
    stream = [other(1, 10), (2, 98, SUBJECT, b"5", parts[0][1]), (3, 99, SUBJECT, b"5", parts[1][1]),
              other(4, 100), (5, 101, SUBJECT, b"5", parts[2][1]), other(6, 150)]
    chunks = {2: parts[0][0], 3: parts[1][0], 5: parts[2][0]}
    day = FrameReassembler(TimeWindow(0, 100))
    out = day.feed(stream[:3], chunks)
    assert day.open and out == [stream[0]]  # the frame holds back until it is whole
    out += day.feed_beyond(stream[3:], chunks)  # the look-ahead past the end
    out += day.finish()
    assert out == [stream[0], (2, 98, SUBJECT, b"5", FRAME)]
    assert day.report.borrowed == [5] and day.last_seq == 3 and day.covered == {3}

    next_day = FrameReassembler(TimeWindow(100, 200))
    out = next_day.feed(stream[3:], chunks) + next_day.finish()
    assert out == [stream[3], stream[5]]  # the leading continuation chunk is the previous day's
    assert next_day.report.skipped == [5] and next_day.covered == {5}
    assert (next_day.first_seq, next_day.last_seq) == (4, 6)
    assert next_day.report.incomplete_count == 0


def test_a_missing_chunk_is_reported_and_never_glued() -> None:
    parts = chunked(FRAME, 4)
    stream = [(1, 10, SUBJECT, b"5", parts[0][1]), (2, 11, SUBJECT, b"5", parts[1][1]), other(3, 12),
              (4, 13, SUBJECT, b"5", parts[3][1]), other(5, 14)]  # chunk 2 never stored
    chunks = {1: parts[0][0], 2: parts[1][0], 4: parts[3][0]}
    r = FrameReassembler(TimeWindow(0, 100))
    out = r.feed(stream, chunks) + r.finish()
    assert out == stream  # every chunk kept on a line of its own, in stream order
    assert all(len(rec[4]) < len(FRAME) for rec in out)
    for seq in (1, 2, 4):
        assert orjson.loads(b"{" + r.extras[seq].rstrip(b",") + b"}")["chunk"].split(" ")[0] in {"0/4", "1/4", "3/4"}
    assert r.covered == set()
    assert r.report.incomplete_count == 2  # the frame (chunks 0, 1), and chunk 3 with nothing to join
    assert r.report.incomplete[0]["seqs"] == [1, 2] and "chunk 2 of 4 missing" in r.report.incomplete[0]["reason"]


def test_a_frame_whose_last_chunk_never_comes_is_given_up_after_the_horizon() -> None:
    parts = chunked(FRAME, 2)
    stream = [(1, 10, SUBJECT, b"5", parts[0][1]), other(2, 20), other(3, 10 + 50)]
    r = FrameReassembler(TimeWindow(0, 100), horizon_ns=50)
    out = r.feed(stream, {1: parts[0][0]})
    assert out == stream and not r.open  # released at the horizon, not at the end of the day
    assert r.report.incomplete_count == 1


def test_chunks_that_do_not_rebuild_the_frame_are_not_glued() -> None:
    parts = chunked(FRAME, 2)
    bad = (parts[1][0], parts[1][1][:-1] + b"!")
    stream = [(1, 10, SUBJECT, b"5", parts[0][1]), (2, 11, SUBJECT, b"5", bad[1])]
    r = FrameReassembler(TimeWindow(0, 100))
    out = r.feed(stream, {1: parts[0][0], 2: bad[0]}) + r.finish()
    assert out == stream and r.report.incomplete_count == 1 and "CRC-32" in r.report.incomplete[0]["reason"]


def test_a_chunk_stored_twice_does_not_break_its_frame() -> None:
    parts = chunked(FRAME, 3)
    stream = [(1, 10, SUBJECT, b"5", parts[0][1]), (2, 11, SUBJECT, b"5", parts[1][1]),
              (3, 12, SUBJECT, b"5", parts[1][1]), (4, 13, SUBJECT, b"5", parts[2][1])]
    r = FrameReassembler(TimeWindow(0, 100))
    out = r.feed(stream, {1: parts[0][0], 2: parts[1][0], 3: parts[1][0], 4: parts[2][0]}) + r.finish()
    assert out == [(1, 10, SUBJECT, b"5", FRAME), stream[2]]  # the whole frame, and the repeat kept apart
    assert r.report.frames == 1 and r.report.incomplete_count == 1
    assert "stored again" in r.report.incomplete[0]["reason"]


def test_a_frame_open_at_midnight_that_never_completes_borrows_nothing() -> None:
    parts = chunked(FRAME, 3)
    chunks = {2: parts[0][0], 4: parts[1][0]}
    day = FrameReassembler(TimeWindow(0, 100))
    out = day.feed([other(1, 10), (2, 99, SUBJECT, b"5", parts[0][1])], chunks)
    out += day.feed_beyond([(4, 101, SUBJECT, b"5", parts[1][1])], chunks) + day.finish()
    assert out == [other(1, 10), (2, 99, SUBJECT, b"5", parts[0][1])]  # chunk 0 alone, as a chunk
    assert day.report.borrowed == []  # so the next day's skipped chunk 4 fails its contiguity check
    assert day.report.incomplete[0]["seqs"] == [2, 4]
