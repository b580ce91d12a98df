"""Kraken spot v2 books from decimal text: every recorded checksum verifies, any altered digit is caught."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from ingest_daemons.adapters.kraken_book import (
    BookStatus,
    SpotBook,
    SpotBooks,
    checksum_token,
    parse_book_frame,
)


def book_lines(samples_dir: Path) -> list[bytes]:
    return (samples_dir / "kraken_book.jsonl").read_bytes().splitlines()


def test_every_recorded_book_frame_verifies(samples_dir: Path) -> None:
    lines = book_lines(samples_dir)
    assert len(lines) == 400
    books = SpotBooks(depth=25)
    verdicts = [books.apply(line) for line in lines]
    assert [v.status for v in verdicts] == [BookStatus.OK] * 400
    assert verdicts[0].snapshot and not any(v.snapshot for v in verdicts[1:])
    assert all(v.expected == v.computed for v in verdicts)
    book = books.book("BTC/USD")
    assert book is not None and len(book.bids) == 25 and len(book.asks) == 25


def test_reformatted_frames_take_the_slow_parser_and_verify_the_same(samples_dir: Path) -> None:
    """Whitespace and key order defeat the compact fast path; the text-keeping JSON parse must agree."""
    books = SpotBooks(depth=25)
    for line in book_lines(samples_dir)[:60]:
        body = json.loads(line, parse_float=str)
        pretty = json.dumps(body, indent=1, sort_keys=True)
        # json.dumps quotes the number texts it was given as str: unquote them back into numbers.
        for side in ("bids", "asks"):
            for lv in body["data"][0][side]:
                for key in ("price", "qty"):
                    pretty = pretty.replace(f'"{key}": "{lv[key]}"', f'"{key}": {lv[key]}')
        raw = pretty.encode()
        assert parse_book_frame(raw) == parse_book_frame(line)
        assert books.apply(raw).status is BookStatus.OK


def _alter_last_digit(line: bytes, start: int) -> bytes:
    """Change the last digit of the number starting at ``start`` (d → d+1, 9 → 8): same length, never 0."""
    end = start
    while line[end : end + 1] not in (b",", b"}"):
        end += 1
    d = line[end - 1]
    return line[: end - 1] + bytes([d + 1 if d != ord("9") else d - 1]) + line[end:]


def _qty_offsets(line: bytes) -> list[tuple[bytes, int]]:
    """(price text, offset of its qty's text) for every level of the frame."""
    out = []
    pos = 0
    while (i := line.find(b'"price":', pos)) >= 0:
        p_end = line.index(b",", i)
        q = line.index(b'"qty":', p_end) + len(b'"qty":')
        out.append((line[i + len(b'"price":') : p_end], q))
        pos = q
    return out


def test_a_single_altered_digit_in_the_checked_levels_is_detected_in_every_frame(samples_dir: Path) -> None:
    """For each of the 400 frames: one digit changed in a level that ends up in the top 10 (the levels the
    CRC covers) is a mismatch. A frame that touches no such level gets a digit of its checksum changed."""
    lines = book_lines(samples_dir)
    books = SpotBooks(depth=25)
    level_altered = checksum_altered = 0
    for line in lines:
        trial = copy.deepcopy(books)
        assert books.apply(line).ok
        book = books.book("BTC/USD")
        assert book is not None
        top = {p for p, _ in book.bids.levels()[:10]} | {p for p, _ in book.asks.levels()[:10]}
        target = next(
            (q for p, q in _qty_offsets(line) if p.decode() in top and not line[q:].startswith(b"0.00000000,")
             and not line[q:].startswith(b"0.00000000}")),
            None,
        )
        if target is None:
            target = line.index(b'"checksum":') + len(b'"checksum":')
            checksum_altered += 1
        else:
            level_altered += 1
        altered = _alter_last_digit(line, target)
        assert altered != line
        verdict = trial.apply(altered)
        assert verdict.status is BookStatus.MISMATCH, line
        assert verdict.expected != verdict.computed
    # 116 of the 400 recorded frames change a level that stays in the top 10; the rest touch deeper levels.
    assert level_altered >= 100 and level_altered + checksum_altered == 400


def test_after_a_mismatch_updates_wait_for_a_snapshot(samples_dir: Path) -> None:
    lines = book_lines(samples_dir)
    books = SpotBooks(depth=25)
    assert books.apply(lines[0]).ok
    i = lines[1].index(b'"checksum":') + len(b'"checksum":')
    assert books.apply(_alter_last_digit(lines[1], i)).status is BookStatus.MISMATCH
    # The book is dropped: later updates report no book instead of the same fault again, until a snapshot.
    assert [books.apply(x).status for x in lines[2:5]] == [BookStatus.NO_SNAPSHOT] * 3
    assert books.apply(lines[0]).ok


def test_an_altered_checksum_digit_is_detected(samples_dir: Path) -> None:
    line = book_lines(samples_dir)[0]
    i = line.index(b'"checksum":') + len(b'"checksum":')
    d = line[i]
    altered = line[:i] + (b"1" if d != ord("1") else b"2") + line[i + 1 :]
    v = SpotBooks(depth=25).apply(altered)
    assert v.status is BookStatus.MISMATCH and v.computed == json.loads(line)["data"][0]["checksum"]


def test_every_level_of_the_top_ten_counts_and_no_level_below(samples_dir: Path) -> None:
    """In the snapshot (25 bids then 25 asks), a digit changed in any of the top 10 per side is caught;
    one changed at places 11-25 is not: the CRC covers the top 10 only (protocols §C1)."""
    snapshot = book_lines(samples_dir)[0]
    offsets = _qty_offsets(snapshot)
    assert len(offsets) == 50
    for n, (_, q) in enumerate(offsets):
        v = SpotBooks(depth=25).apply(_alter_last_digit(snapshot, q))
        in_top_ten = n % 25 < 10
        assert (v.status is BookStatus.MISMATCH) == in_top_ten, n


def test_floats_would_fail_where_text_passes(samples_dir: Path) -> None:
    """Why decimal text: a float round-trip writes 0.0511 for 0.05110000 and the CRC changes."""
    frame = parse_book_frame(book_lines(samples_dir)[0])
    assert frame is not None
    as_floats = [(repr(float(p)), repr(float(q))) for p, q in frame.bids]
    book = SpotBook(25)
    book.apply(True, as_floats, [(repr(float(p)), repr(float(q))) for p, q in frame.asks])
    assert book.checksum() != frame.checksum


def test_without_truncation_recorded_updates_fail(samples_dir: Path) -> None:
    """Kraken sends no delete for a level pushed out of range: a book that does not truncate drifts."""
    books = SpotBooks(depth=25)
    books.depth = 1000  # behave like a client that forgot to truncate at its subscribed depth 25
    statuses = []
    for line in book_lines(samples_dir):
        f = parse_book_frame(line)
        assert f is not None
        book = books.book(f.symbol)
        if book is not None:
            book.depth = 1000
        statuses.append(books.apply_parsed(f).status)
    assert BookStatus.MISMATCH in statuses


def test_update_before_snapshot_and_repeated_prices() -> None:
    books = SpotBooks(depth=10)
    upd = (
        b'{"channel":"book","type":"update","data":[{"symbol":"X/USD","bids":[],"asks":[],"checksum":0,'
        b'"timestamp":"t"}]}'
    )
    assert books.apply(upd).status is BookStatus.NO_SNAPSHOT
    snap = SpotBook(10)
    snap.apply(True, [("1.0", "2.00")], [("1.5", "3.00")])
    snapshot = (
        b'{"channel":"book","type":"snapshot","data":[{"symbol":"X/USD","bids":[{"price":1.0,"qty":2.00}],'
        b'"asks":[{"price":1.5,"qty":3.00}],"checksum":' + str(snap.checksum()).encode() + b',"timestamp":"t"}]}'
    )
    assert books.apply(snapshot).ok
    # One update may name a price twice: the levels apply in order, the last one wins.
    snap.apply(False, [("1.0", "0.00"), ("1.0", "5.00")], [])
    update = (
        b'{"channel":"book","type":"update","data":[{"symbol":"X/USD","bids":[{"price":1.0,"qty":0.00},'
        b'{"price":1.0,"qty":5.00}],"asks":[],"checksum":' + str(snap.checksum()).encode() + b',"timestamp":"t"}]}'
    )
    v = books.apply(update)
    assert v.ok
    book = books.book("X/USD")
    assert book is not None and book.bids.levels() == [("1.0", "5.00")]


def test_checksum_token_and_malformed_frames() -> None:
    assert checksum_token("0.00005100") == "5100"
    assert checksum_token("63388.7") == "633887"
    books = SpotBooks()
    assert books.apply(b'{"channel":"book","type":"update","data":[{"sym').status is BookStatus.MALFORMED
    assert books.apply(b'{"channel":"book","type":"snapshot","data":[{"symbol":"A","bids":[{"price":"x","qty":1}],'
                       b'"asks":[],"checksum":1}]}').status is BookStatus.MALFORMED
    with pytest.raises(ValueError, match="depth"):
        SpotBooks(depth=20)
