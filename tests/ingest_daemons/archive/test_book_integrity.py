"""The book-integrity record of a partition (pure), from the 400 recorded Kraken spot v2 book frames."""

from __future__ import annotations

import re

import orjson

from ingest_daemons import wire
from ingest_daemons.archive.book_integrity import NS, BookIntegrityAudit, depth_for
from tests.fixtures.archive import sample_frames

FRAMES = sample_frames("kraken_book.jsonl")  # one BTC/USD depth-25 snapshot, then 399 updates
SNAPSHOT = FRAMES[0]


def wrong_checksum(frame: bytes) -> bytes:
    """The frame with one digit of its checksum changed (the levels untouched)."""
    def bump(m: re.Match[bytes]) -> bytes:
        digits = m.group(1)
        return b'"checksum":' + digits[:-1] + str((int(digits[-1:]) + 1) % 10).encode()
    return re.sub(rb'"checksum":(\d+)', bump, frame)


def gap_marker(symbol: str = "BTC/USD") -> bytes:
    return wire.marker_payload(wire.TYPE_GAP, conn="c1", reason="checksum", channel="book", symbol=symbol,
                               expected=1, computed=2, resync=True, market=symbol)


def feed(audit: BookIntegrityAudit, frames: list[bytes], start_s: int = 0) -> int:
    """Each frame one second apart from ``start_s``; returns the next second."""
    for i, frame in enumerate(frames):
        audit.book_frame((start_s + i) * NS, frame)
    return start_s + len(frames)


def test_every_recorded_frame_verifies() -> None:
    audit = BookIntegrityAudit(25)
    feed(audit, FRAMES)
    [s] = audit.finish().symbols
    assert (s.frames, s.verified, s.mismatches, s.resyncs, s.unverified_ns, s.unrecovered) == (400, 400, 0, 0, 0, False)


def test_a_wrong_checksum_breaks_the_book_until_the_next_verified_snapshot() -> None:
    audit = BookIntegrityAudit(25)
    frames = [*FRAMES[:100], wrong_checksum(FRAMES[100]), *FRAMES[101:110]]
    t = feed(audit, frames)  # the mismatch at second 100, then 9 updates with no book to apply them to
    audit.marker(100 * NS, gap_marker())
    unrepaired = BookIntegrityAudit(25)
    feed(unrepaired, frames)
    [broken] = unrepaired.finish().symbols
    assert (broken.verified, broken.mismatches, broken.unverified_frames, broken.unrecovered) == (100, 1, 9, True)
    assert broken.unverified_ns == 9 * NS  # to the partition's last message

    feed(audit, [SNAPSHOT, *FRAMES[1:20]], t)  # the resubscribe's fresh snapshot at second 110
    report = audit.finish()
    [s] = report.symbols
    assert (s.mismatches, s.reported, s.resyncs, s.unrecovered) == (1, 1, 1, False)
    assert s.unverified_ns == 10 * NS and s.unverified_frames == 9
    assert s.verified == 100 + 20 and s.frames == 130
    assert "| BTC/USD | 130 | 120 | 1 | 1 | 1 | 10.000 |  |" in report.markdown()


def test_a_snapshot_that_does_not_verify_does_not_repair() -> None:
    audit = BookIntegrityAudit(25)
    t = feed(audit, [SNAPSHOT, wrong_checksum(FRAMES[1])])
    feed(audit, [wrong_checksum(SNAPSHOT)], t)
    [s] = audit.finish().symbols
    assert (s.mismatches, s.resyncs, s.unrecovered) == (2, 0, True)


def test_updates_before_the_partition_s_first_snapshot_are_carried_in_not_faults() -> None:
    audit = BookIntegrityAudit(25)
    feed(audit, FRAMES[50:60])
    [s] = audit.finish().symbols
    assert (s.carried_in, s.verified, s.unverified_frames, s.unrecovered, s.unverified_ns) == (10, 0, 0, False, 0)


def test_a_disconnect_counts_only_for_books_whose_next_frame_is_a_snapshot() -> None:
    disconnected = wire.marker_payload(wire.STATUS_DISCONNECTED, conn="c1", reason="closed")
    audit = BookIntegrityAudit(25)
    t = feed(audit, FRAMES[:10])
    audit.marker(t * NS, disconnected)
    feed(audit, [SNAPSHOT], t + 5)  # the reconnect's snapshot, five seconds later
    [s] = audit.finish().symbols
    assert (s.resyncs, s.unverified_ns, s.mismatches) == (1, 5 * NS, 0)

    other_socket = BookIntegrityAudit(25)
    t = feed(other_socket, FRAMES[:10])
    other_socket.marker(t * NS, disconnected)
    feed(other_socket, FRAMES[10:12], t + 5)  # updates that verify: that socket was not this book's
    [s] = other_socket.finish().symbols
    assert (s.resyncs, s.unverified_ns, s.verified) == (0, 0, 12)


def test_a_marker_alone_breaks_the_book_and_is_counted() -> None:
    """The connector said mismatch where the replay verified: the book is unknown until a snapshot."""
    audit = BookIntegrityAudit(25)
    t = feed(audit, FRAMES[:5])
    audit.marker(t * NS, gap_marker())
    feed(audit, FRAMES[5:7], t)
    [s] = audit.finish().symbols
    assert (s.reported, s.mismatches, s.unverified_frames, s.unrecovered) == (1, 0, 2, True)
    assert orjson.loads(gap_marker())["reason"] == "checksum"


def test_depth_follows_a_snapshot_deeper_than_configured() -> None:
    assert depth_for(25, 25) == 25 and depth_for(10, 25) == 25 and depth_for(25, 80) == 100
    assert depth_for(25, 3) == 25
    audit = BookIntegrityAudit(10)  # configured 10, recorded at 25: still verifies
    feed(audit, FRAMES)
    assert audit.finish().symbols[0].verified == 400
