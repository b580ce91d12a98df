"""The compact book reader: every Kraken-layout frame is read by it, exactly as the JSON parser reads it,
and any frame a JSON parser would read differently (or refuse) is left to the JSON parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest_daemons.adapters import kraken_book
from ingest_daemons.adapters.kraken_book import BookStatus, SpotBooks

UPDATE = (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":63381.1,'
          b'"qty":0.25000000},{"price":63380.0,"qty":0}],"asks":[],"checksum":1234,'
          b'"timestamp":"2026-12-04T20:00:00.000000Z"}]}')


def json_reading(text: str) -> tuple[bool, str, list[tuple[str, str]], list[tuple[str, str]], int] | None:
    """What the standard library's JSON parser makes of a frame, numbers kept as their text."""
    try:
        body = json.loads(text, parse_float=str, parse_int=str)
    except ValueError:
        return None
    data = body["data"][0]
    levels = [[(lv["price"], lv["qty"]) for lv in data[side]] for side in ("bids", "asks")]
    return body["type"] == "snapshot", data["symbol"], levels[0], levels[1], int(data["checksum"])


def test_every_recorded_frame_takes_the_compact_reader_and_reads_as_json_does(samples_dir: Path) -> None:
    """Without this, a broken compact reader would go unnoticed: the JSON parser reads the same frames."""
    lines = (samples_dir / "kraken_book.jsonl").read_bytes().splitlines()
    assert len(lines) == 400
    for line in lines:
        text = line.decode()
        compact = kraken_book._read_compact(text)
        assert compact is not None, line[:80]
        assert compact == json_reading(text)


def test_a_frame_of_the_simulator_layout_with_a_delete_reads_as_json_does() -> None:
    text = UPDATE.decode()
    assert kraken_book._read_compact(text) == json_reading(text)
    assert kraken_book._read_compact(text) == (False, "BTC/USD", [("63381.1", "0.25000000"), ("63380.0", "0")], [],
                                               1234)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"symbol":"BTC/USD"', b'"symbol":"BTC/\nUSD"'),  # a raw control character: not JSON
        (b'"symbol":"BTC/USD"', b'"symbol":"BTC\\/USD"'),  # an escape: JSON reads "BTC/USD"
        (b'"checksum":1234', b'"checksum":01234'),  # a leading zero: not JSON
        (b'"qty":0.25000000}', b'"qty":0.25000000,"qty":1}'),  # a repeated key: JSON keeps the last
        (b'"price":63381.1', b'"price":063381.1'),  # a leading zero in a price: not JSON
        (b'"qty":0.25000000}', b'"qty":2.5e-1}'),  # an exponent: the text is not the checksum's text
        (b'},{"price":63380.0', b'}{"price":63380.0'),  # levels without a comma: not JSON
        (b'},{"price":63380.0', b'},,{"price":63380.0'),  # two commas: not JSON
        (b'"timestamp":"2026', b'"timestamp":"\t2026'),  # a raw tab in a string: not JSON
        (b'"asks":[]', b'"asks": []'),  # white space: JSON, but not the compact layout
        (b'"bids":[{', b'"bids":[ {'),
    ],
)
def test_a_frame_off_the_compact_layout_is_left_to_the_json_parser(old: bytes, new: bytes) -> None:
    assert UPDATE.count(old) == 1
    frame = UPDATE.replace(old, new)
    text = frame.decode()
    assert kraken_book._read_compact(text) is None
    # The book then says what the JSON parser says: a readable frame is applied from its reading, an
    # unreadable one is malformed (here after a snapshot, so an update is applied and checked).
    books = SpotBooks(depth=10)
    books.apply(b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[],"asks":[],'
                b'"checksum":0,"timestamp":"t"}]}')
    verdict = books.apply(frame)
    if json_reading(text) is None:
        assert verdict.status is BookStatus.MALFORMED
    else:
        assert verdict.status in (BookStatus.OK, BookStatus.MISMATCH)
