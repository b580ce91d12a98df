"""Frames stored in chunks, archived from a real stream: whole lines, and a frame straddling two windows."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from ingest_daemons import wire
from ingest_daemons.archive import TimeWindow, archive_partition, check_contiguity, verify_file
from ingest_daemons.archive.cat import iter_messages
from ingest_daemons.frame_chunks import split_frame
from tests.fixtures.archive import Message, delete_message, publish
from tests.ingest_daemons.archive.conftest import ArchiveStream

FAR_FUTURE = 4_102_444_800 * 10**9
FRAME = b'{"type":"orderbook_snapshot","sid":2,"seq":9,"msg":{"market_ticker":"KX","yes_dollars_fp":[%s]}}' % (
    b",".join(b'["0.%04d","%d.00"]' % (i, i) for i in range(1, 900))
)


def chunk_messages(stream: ArchiveStream, frame: bytes, max_payload: int = 4096) -> list[Message]:
    subject, _, headers = stream.messages.message("orderbook", "KX", frame)
    assert headers is not None
    block = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    out: list[Message] = []
    for chunk_block, payload in split_frame(frame, block, max_payload):
        fields = dict(line.split(": ", 1) for line in chunk_block.decode().split("\r\n")[1:] if ": " in line)
        out.append((subject, payload, fields))
    return out


def test_a_frame_straddling_two_windows_is_whole_in_the_first_and_skipped_by_the_second(
    stream: ArchiveStream, tmp_path: Path
) -> None:
    chunks = chunk_messages(stream, FRAME)
    assert len(chunks) >= 4
    m = stream.messages
    start = time.time_ns()
    first = publish(stream.url, [m.ticker(1), *chunks[:2]])
    midnight = time.time_ns()  # every message above is stored before this instant, every one below after
    time.sleep(0.002)
    second = publish(stream.url, [m.ticker(2), *chunks[2:], m.ticker(3)])
    day = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-01", TimeWindow(start, midnight),
                            progress=None)
    next_day = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-02",
                                 TimeWindow(midnight, FAR_FUTURE), progress=None)

    lines = list(iter_messages(day.paths.data))
    assert [msg.seq for msg in lines] == first[:2]
    assert lines[1].frame == FRAME and lines[1].message_type == "orderbook"
    assert orjson.loads(lines[1].line)["chunk_seqs"] == first[1:] + second[1:-1]
    assert day.manifest.count == 2 and (day.manifest.first_seq, day.manifest.last_seq) == (first[0], first[-1])
    assert day.manifest.next_seq == second[0] and day.manifest.holes == []
    assert day.manifest.chunks["borrowed"] == second[1:-1]

    assert [msg.seq for msg in iter_messages(next_day.paths.data)] == [second[0], second[-1]]
    assert next_day.manifest.chunks["skipped"] == second[1:-1]
    assert (next_day.manifest.first_seq, next_day.manifest.last_seq) == (second[0], second[-1])
    assert next_day.manifest.holes == []
    for result in (day, next_day):
        check = verify_file(result.paths)
        assert check.manifest_matches and check.gzip_ok, check.manifest_problems + check.gzip_problems
    assert check_contiguity(next_day.manifest, day.manifest, "2026-03-01", None).passed


def test_a_frame_whose_first_chunks_the_stream_lost_is_reported_by_the_next_days_contiguity(
    stream: ArchiveStream, tmp_path: Path
) -> None:
    chunks = chunk_messages(stream, FRAME)
    m = stream.messages
    start = time.time_ns()
    publish(stream.url, [m.ticker(1)])  # the frame's first chunks never reached the stream
    midnight = time.time_ns()
    time.sleep(0.002)
    publish(stream.url, [m.ticker(2), *chunks[2:], m.ticker(3)])
    day = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-01", TimeWindow(start, midnight),
                            progress=None)
    next_day = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-02",
                                 TimeWindow(midnight, FAR_FUTURE), progress=None)
    assert day.manifest.chunks == {}
    finding = check_contiguity(next_day.manifest, day.manifest, "2026-03-01", None)
    assert not finding.passed and finding.severity == "error"
    assert "which does not hold them" in finding.reason


def test_a_chunk_lost_mid_frame_leaves_every_other_chunk_on_its_own_line(stream: ArchiveStream, tmp_path: Path) -> None:
    chunks = chunk_messages(stream, FRAME)
    m = stream.messages
    start = time.time_ns()
    seqs = publish(stream.url, [m.ticker(1), *chunks, m.ticker(2)])
    delete_message(stream.url, stream.name, seqs[2])  # chunk 1
    result = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-01",
                               TimeWindow(start, FAR_FUTURE), progress=None)
    lines = list(iter_messages(result.paths.data))
    assert [msg.seq for msg in lines] == [seqs[0], seqs[1], *seqs[3:]]
    assert all(FRAME != msg.frame for msg in lines)
    assert [msg.lone_chunk is not None for msg in lines] == [False] + [True] * (len(chunks) - 1) + [False]
    assert result.manifest.holes and result.manifest.holes[0].first == seqs[2]  # the lost chunk is a hole
    assert result.manifest.chunks["incomplete_count"] >= 1 and result.manifest.chunks["frames"] == 0
    assert verify_file(result.paths).manifest_matches
    assert wire.HDR_CHUNK == "Ssmd-Chunk"


def test_the_parquet_build_sees_whole_frames_and_rejects_lone_chunks(stream: ArchiveStream, tmp_path: Path) -> None:
    import polars as pl

    from ingest_daemons.parquet import KALSHI_TABLES, convert_partition

    m = stream.messages
    start = time.time_ns()
    whole = chunk_messages(stream, FRAME)
    broken = chunk_messages(stream, FRAME.replace(b'"seq":9', b'"seq":10'))
    seqs = publish(stream.url, [m.ticker(1), *whole, *broken, m.ticker(2)])
    delete_message(stream.url, stream.name, seqs[1 + len(whole) + 1])  # chunk 1 of the second frame
    result = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-01",
                               TimeWindow(start, FAR_FUTURE), progress=None)
    converted = convert_partition(result.paths.data, tmp_path / "parquet", KALSHI_TABLES, manifest=result.manifest)
    assert sum(converted.rows.values()) + converted.rejects == result.manifest.count
    book = pl.read_parquet(converted.files["orderbook"])
    assert book.filter(pl.col("seq") == seqs[1]).height >= 1  # the whole frame, at its first chunk's seq
    assert converted.rejects == len(broken) - 1  # the second frame's chunks, each alone, never a row
