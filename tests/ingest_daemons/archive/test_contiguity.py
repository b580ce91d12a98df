"""Contiguity rules, on manifests alone (pure)."""

from __future__ import annotations

from dataclasses import replace

from ingest_daemons.archive import PartitionManifest, SeqRange, check_contiguity


def manifest(
    first: int | None, last: int | None, next_seq: int, holes: list[SeqRange] | None = None
) -> PartitionManifest:
    count = 0 if first is None or last is None else last - first + 1
    return PartitionManifest(
        env="dev", stream="DEV_KALSHI_ECONOMICS", partition="2026-03-02", window_start_ns=0, window_end_ns=1,
        open_window=False, file="2026-03-02.jsonl.gz", count=count, bytes=20, uncompressed_bytes=0, sha256="",
        compression="gzip", first_seq=first, last_seq=last, first_ts_ns=None, last_ts_ns=None, next_seq=next_seq,
        holes=holes or [], message_types={}, frame_keys={}, markers={}, marker_events=[],
        marker_events_truncated=False, tickers={},
    )


def test_meeting_partitions_pass() -> None:
    assert check_contiguity(manifest(11, 20, 21), manifest(1, 10, 11), "2026-03-01", None).passed


def test_gap_between_days_names_the_range() -> None:
    finding = check_contiguity(manifest(14, 20, 21), manifest(1, 10, 11), "2026-03-01", None)
    assert not finding.passed and finding.severity == "error"
    assert finding.missing == [SeqRange(11, 13)]
    assert finding.reason == "missing seq 11..13 (3 messages)"


def test_overlap_is_an_error() -> None:
    finding = check_contiguity(manifest(9, 20, 21), manifest(1, 10, 11), "2026-03-01", None)
    assert not finding.passed and finding.overlap == SeqRange(9, 10)
    assert "9..10 is in both partitions" in finding.reason


def test_internal_hole_fails_even_when_the_boundary_meets() -> None:
    finding = check_contiguity(manifest(11, 20, 21, [SeqRange(15, 15)]), manifest(1, 10, 11), "2026-03-01", None)
    assert not finding.passed and finding.missing == [SeqRange(15, 15)]


def test_empty_days_chain_through_next_seq() -> None:
    empty = manifest(None, None, 11)
    assert check_contiguity(empty, manifest(1, 10, 11), "2026-03-01", None).passed
    assert check_contiguity(manifest(11, 12, 13), empty, "2026-03-01", None).passed
    assert not check_contiguity(manifest(12, 12, 13), empty, "2026-03-01", None).passed


def test_without_a_previous_partition_the_stream_start_decides() -> None:
    current = manifest(500, 600, 601)
    assert check_contiguity(current, None, "2026-03-01", stream_first_seq=500).passed
    assert check_contiguity(replace(current, first_seq=1), None, "2026-03-01", None).passed
    finding = check_contiguity(current, None, "2026-03-01", stream_first_seq=420)
    assert not finding.passed and finding.severity == "warn"
    assert finding.missing == [SeqRange(420, 499)] and "2026-03-01 is not archived" in finding.reason
    assert check_contiguity(current, None, "2026-03-01", None).severity == "warn"


def test_skipped_leading_chunks_must_be_what_the_previous_day_borrowed() -> None:
    previous = replace(manifest(1, 10, 11), chunks={"frames": 1, "chunk_messages": 3, "borrowed": [12],
                                                     "skipped": [], "incomplete": [], "incomplete_count": 0})
    current = replace(manifest(11, 20, 21), chunks={"frames": 0, "chunk_messages": 0, "borrowed": [],
                                                    "skipped": [12], "incomplete": [], "incomplete_count": 0})
    assert check_contiguity(current, previous, "2026-03-01", None).passed
    finding = check_contiguity(current, manifest(1, 10, 11), "2026-03-01", None)
    assert not finding.passed and finding.severity == "error" and finding.missing == [SeqRange(12, 12)]
    alone = check_contiguity(current, None, "2026-03-01", 11)
    assert not alone.passed and alone.severity == "warn" and "not archived" in alone.reason


def test_duplicates_dropped_at_the_end_of_a_day_still_meet_the_next_day() -> None:
    previous = replace(manifest(1, 8, 11), duplicates_dropped=2, duplicate_seqs=[SeqRange(9, 10)])
    assert previous.last_covered_seq == 10
    assert check_contiguity(manifest(11, 20, 21), previous, "2026-03-01", None).passed


def test_a_lost_head_fails_naming_the_stream_s_first_message() -> None:
    from ingest_daemons.archive.manifest import HeadLoss

    lost = replace(manifest(41, 50, 51), head_lost=HeadLoss(41, 1_772_323_200_500_000_000))
    finding = check_contiguity(lost, None, "2026-03-01", 41)
    assert not finding.passed and finding.severity == "error"
    assert finding.reason == ("stream no longer holds 2026-03-02 (first message 2026-03-01T00:00:00.500000000Z); "
                              "messages of the day before seq 41 are lost")
