"""Archiving windows of a real stream: exact content, tiling, idempotence, holes (real nats-server)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from ingest_daemons import wire
from ingest_daemons.archive import (
    ArchiveResult,
    SeqRange,
    StreamNotFound,
    TimeWindow,
    archive_partition,
    check_contiguity,
    partition_paths,
    verify_file,
)
from ingest_daemons.archive.envelope import raw_frame
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.archive.reader import StreamReader
from tests.fixtures.archive import Message, delete_message, publish, sample_frames
from tests.ingest_daemons.archive.conftest import ArchiveStream

FAR_FUTURE = 4_102_444_800 * 10**9


def archive(stream: ArchiveStream, root: Path, key: str, window: TimeWindow, **kwargs: object) -> ArchiveResult:
    return archive_partition(stream.url, root, stream.env, stream.name, key, window, **kwargs)  # type: ignore[arg-type]


def lines_of(result: ArchiveResult) -> list[bytes]:
    import gzip

    return gzip.decompress(result.paths.data.read_bytes()).splitlines(keepends=True)


def three_bursts(stream: ArchiveStream) -> tuple[list[list[int]], list[list[Message]], list[int]]:
    """Publish three bursts; returns their seqs, messages and the two split times between them."""
    m = stream.messages
    kraken = [m.message("orderbook", "BTC/USD", frame) for frame in sample_frames("kraken_book.jsonl")[:6]]
    bursts: list[list[Message]] = [
        [m.ticker(i) for i in range(5)],
        [
            *kraken,
            m.ticker(5, "KXETHD-26FEB1217-T1819.99"),
            m.marker(wire.TYPE_GAP, "KXBTCD-26FEB1217-T72749.99",
                     wire.marker_payload("gap", sid=1, expected=10, got=12)),
            m.marker(wire.TYPE_STATUS, "conn-1", wire.marker_payload(wire.STATUS_DISCONNECTED, reason="eof")),
            m.marker(wire.TYPE_UNPARSED, "conn-1", b"\x00\xffnot json\n"),
        ],
        [m.ticker(i) for i in range(100, 103)],
    ]
    seqs, splits = [], []
    for i, burst in enumerate(bursts):
        seqs.append(publish(stream.url, burst))
        if i < 2:
            splits.append(time.time_ns())  # same host clock as the server: after every ack of this burst
    return seqs, bursts, splits


def test_window_holds_exactly_its_messages_in_order_with_raw_frames(stream: ArchiveStream, tmp_path: Path) -> None:
    seqs, bursts, (split1, split2) = three_bursts(stream)
    result = archive(stream, tmp_path, "2026-03-02", TimeWindow(split1, split2))
    manifest = result.manifest

    lines = lines_of(result)
    assert [orjson.loads(line)["seq"] for line in lines] == seqs[1]
    for line, (subject, payload, headers) in zip(lines, bursts[1], strict=True):
        record = orjson.loads(line)
        assert record["subject"] == subject
        assert record["recv_ns"] == int(headers[wire.HDR_RECEIVED_NS])  # type: ignore[index]
        assert split1 <= record["ts"] < split2
        assert raw_frame(line) == payload  # byte-for-byte, Kraken decimals and binary junk alike
    assert b'"qty":0.00005100' in b"".join(lines)

    assert (manifest.count, manifest.first_seq, manifest.last_seq) == (10, seqs[1][0], seqs[1][-1])
    assert manifest.next_seq == seqs[2][0]
    assert manifest.holes == []
    assert manifest.message_types == {"gap": 1, "orderbook": 6, "status": 1, "ticker": 1, "unparsed": 1}
    assert manifest.tickers == {"BTC/USD": 6, "KXETHD-26FEB1217-T1819.99": 1}
    assert manifest.markers == {"gap": 1, "status": 1, "status.disconnected": 1}
    assert manifest.gap_markers == 1 and manifest.disconnect_markers == 1
    assert [e.kind for e in manifest.marker_events] == ["gap", "disconnected"]
    assert manifest.marker_events[0].detail["expected"] == 10
    assert manifest.frame_keys == {"frame": 9, "frame_b64": 1}
    assert manifest.bytes == result.paths.data.stat().st_size
    assert verify_file(result.paths).manifest_matches


def test_windows_tile_the_stream_and_rerun_is_byte_identical(stream: ArchiveStream, tmp_path: Path) -> None:
    seqs, _, (split1, split2) = three_bursts(stream)
    windows = {"2026-03-01": TimeWindow(0, split1), "2026-03-02": TimeWindow(split1, split2),
               "2026-03-03": TimeWindow(split2, FAR_FUTURE)}
    results = {key: archive(stream, tmp_path, key, w) for key, w in windows.items()}
    archived = [orjson.loads(line)["seq"] for r in results.values() for line in lines_of(r)]
    assert archived == [s for burst in seqs for s in burst]

    first = results["2026-03-01"].manifest
    assert check_contiguity(first, None, "2026-02-28", stream_first_seq=seqs[0][0]).passed
    second, third = results["2026-03-02"].manifest, results["2026-03-03"].manifest
    assert check_contiguity(second, first, "2026-03-01", None).passed
    assert check_contiguity(third, second, "2026-03-02", None).passed
    assert third.next_seq == seqs[2][-1] + 1  # stopped at the stream's last sequence

    before = {k: (r.paths.data.read_bytes(), r.paths.manifest.read_bytes()) for k, r in results.items()}
    for key, window in windows.items():
        archive(stream, tmp_path, key, window)  # network batching differs run to run: same bytes
    after = {k: (r.paths.data.read_bytes(), r.paths.manifest.read_bytes()) for k, r in results.items()}
    assert after == before


def test_a_message_removed_from_the_middle_is_a_named_hole(stream: ArchiveStream, tmp_path: Path) -> None:
    seqs, _, (split1, split2) = three_bursts(stream)
    first = archive(stream, tmp_path, "2026-03-01", TimeWindow(0, split1)).manifest
    gone = seqs[1][4]
    delete_message(stream.url, stream.name, gone)
    second = archive(stream, tmp_path, "2026-03-02", TimeWindow(split1, split2)).manifest

    assert second.holes == [SeqRange(gone, gone)] and second.count == len(seqs[1]) - 1
    finding = check_contiguity(second, first, "2026-03-01", None)
    assert not finding.passed and finding.severity == "error"
    assert finding.missing == [SeqRange(gone, gone)]
    assert f"missing seq {gone} (1 message)" in finding.reason
    with NatsWireClient(stream.url) as client:
        reader = StreamReader(client, stream.name)
        assert reader.held_in_range(gone, gone) == 0
        assert reader.held_in_range(seqs[1][0], seqs[1][-1]) == len(seqs[1]) - 1


def test_a_message_removed_at_the_day_boundary_is_a_hole_between_partitions(
    stream: ArchiveStream, tmp_path: Path
) -> None:
    seqs, _, (split1, split2) = three_bursts(stream)
    first = archive(stream, tmp_path, "2026-03-01", TimeWindow(0, split1)).manifest
    delete_message(stream.url, stream.name, seqs[1][0])
    second = archive(stream, tmp_path, "2026-03-02", TimeWindow(split1, split2)).manifest
    finding = check_contiguity(second, first, "2026-03-01", None)
    assert not finding.passed
    assert finding.missing == [SeqRange(seqs[1][0], seqs[1][0])]
    assert finding.expected_first_seq == seqs[0][-1] + 1


def test_empty_window_records_where_the_next_partition_starts(stream: ArchiveStream, tmp_path: Path) -> None:
    before = time.time_ns()
    seqs = publish(stream.url, [stream.messages.ticker(i) for i in range(3)])
    empty = archive(stream, tmp_path, "2026-02-28", TimeWindow(before - 10**12, before)).manifest
    assert (empty.count, empty.first_seq, empty.last_seq, empty.next_seq) == (0, None, None, seqs[0])
    full = archive(stream, tmp_path, "2026-03-01", TimeWindow(before, FAR_FUTURE)).manifest
    assert check_contiguity(full, empty, "2026-02-28", None).passed
    assert verify_file(partition_paths(tmp_path, stream.env, stream.name, "2026-02-28")).gzip_ok


def test_trailing_deleted_messages_end_the_scan(stream: ArchiveStream, tmp_path: Path) -> None:
    seqs = publish(stream.url, [stream.messages.ticker(i) for i in range(4)])
    delete_message(stream.url, stream.name, seqs[-1])
    manifest = archive(stream, tmp_path, "2026-03-01", TimeWindow(0, FAR_FUTURE)).manifest
    assert manifest.last_seq == seqs[-2] and manifest.next_seq == seqs[-1] + 1


def test_unknown_stream_is_named(nats_server: object, tmp_path: Path, unique_env: str) -> None:
    url = nats_server.url  # type: ignore[attr-defined]
    with pytest.raises(StreamNotFound, match=f"{unique_env.upper()}_NOPE"):
        archive_partition(url, tmp_path, unique_env, f"{unique_env.upper()}_NOPE", "2026-03-01", TimeWindow(0, 1))
    assert not (tmp_path / unique_env).exists() or not list((tmp_path / unique_env).rglob("*.jsonl.gz"))


def test_scans_end_without_waiting_or_re_creating_the_consumer(stream: ArchiveStream) -> None:
    """Every stop condition is seen in the deliveries themselves: no idle-heartbeat wait, no reset."""
    seqs = publish(stream.url, [stream.messages.ticker(i) for i in range(50)])
    with NatsWireClient(stream.url) as client:
        reader = StreamReader(client, stream.name, heartbeat_s=30)  # a wait would blow the deadline
        state = reader.state()
        cases = {
            "up to the end": (TimeWindow(0, FAR_FUTURE), len(seqs), seqs[-1] + 1, "stream_end"),
            "only the last": (TimeWindow(state.last_ts_ns or 0, FAR_FUTURE), 1, seqs[-1] + 1, "stream_end"),
            "before all": (TimeWindow(0, state.first_ts_ns or 0), 0, seqs[0], "window_end"),
            "after all": (TimeWindow((state.last_ts_ns or 0) + 1, FAR_FUTURE), 0, seqs[-1] + 1, "stream_end"),
        }
        for name, (window, count, next_seq, reason) in cases.items():
            started = time.monotonic()
            scan = reader.scan(window)
            assert sum(len(batch) for batch in scan) == count, name
            assert (scan.next_seq, scan.stopped_by, scan.resets) == (next_seq, reason, 0), name
            assert time.monotonic() - started < 5, name
