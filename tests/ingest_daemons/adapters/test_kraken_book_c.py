"""The C books against the plain-Python reference, frame by frame: same verdict, levels and checksum.

Random sequences (hypothesis) of snapshots and updates for two symbols (one with non-ASCII text) go to
both :class:`~ingest_daemons.adapters.kraken_book.SpotBooks` (C) and the reference
(:mod:`~ingest_daemons.adapters.kraken_book_reference`): prices from a small pool of values, each
written in several ways (spare trailing zeros, more than 19 digits, negative, exponent forms that
only the JSON reader takes, exponents beyond the usable range), repeated within one update, zero
quantities in every spelling, deletes of absent levels, depth changes of the books and of the
collection, wrong checksums, and frames that are malformed, in another layout or not UTF-8.
"""

from __future__ import annotations

import copy
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_daemons.adapters import _kraken_book, kraken_book_reference
from ingest_daemons.adapters.kraken_book import DEPTHS, BookFrame, BookStatus, SpotBook, SpotBooks, parse_book_frame

SYMBOLS = ("X/USD", "Ü/€")
Levels = list[tuple[str, str]]


def price_texts(value: Decimal) -> list[str]:
    """Ways to write one price: plain with spare zeros, and with an exponent."""
    plain = format(value, "f")
    out = [plain, plain + ("0" if "." in plain else ".0"), plain + ("000" if "." in plain else ".000")]
    sign, digits, exponent = value.as_tuple()
    mantissa = "".join(map(str, digits))
    assert isinstance(exponent, int)
    out.append(("-" if sign else "") + mantissa + f"e{exponent}")
    out.append(("-" if sign else "") + mantissa[0] + "." + (mantissa[1:] or "0") + f"E+{exponent + len(mantissa) - 1}")
    return out


@st.composite
def price_pool(draw: st.DrawFn) -> list[Decimal]:
    """A few price values near each other, some with long digit strings or negative."""
    scale = draw(st.integers(0, 24))
    base = draw(st.integers(1, 10**22))
    pool = {Decimal(base + draw(st.integers(-30, 30))).scaleb(-scale) for _ in range(draw(st.integers(3, 40)))}
    if draw(st.booleans()):
        pool.add(Decimal(draw(st.integers(-10**25, 10**25))).scaleb(-draw(st.integers(0, 30))))
    if draw(st.integers(0, 9)) == 0:
        pool.add(Decimal(0))
    return sorted(pool)


ZERO_QTYS = ["0", "0.0", "0.00000000", "-0", "-0.000"]
ZERO_QTYS_EXPONENT = ["0e0", "0.0E-5", "-0e+3"]
QTYS = ["1", "0.5", "2.00000000", "0.00010000", "123456789012345678901234.5", "-1.5", "10"]
QTYS_EXPONENT = ["5e-3", "1.25E1", "1E+400", "7e-999"]


@st.composite
def level(draw: st.DrawFn, pool: list[Decimal], exponents: bool) -> tuple[str, str]:
    texts = price_texts(draw(st.sampled_from(pool)))
    if exponents and draw(st.integers(0, 9)) == 0:
        # Either side of the usable range (Decimal's as_tuple exponent within ±100), and far beyond it.
        price = draw(st.sampled_from(["1e100", "1e101", "1e-100", "1e-101", "1.0e-99", "1.00e-99", "9E+100",
                                      "1e9999999999999999999999"]))
    else:
        price = draw(st.sampled_from(texts if exponents else texts[:3]))
    zeros = ZERO_QTYS + (ZERO_QTYS_EXPONENT if exponents else [])
    qtys = QTYS + (QTYS_EXPONENT if exponents else [])
    qty = draw(st.sampled_from(zeros)) if draw(st.integers(0, 3)) == 0 else draw(st.sampled_from(qtys))
    return price, qty


def compact(snapshot: bool, symbol: str, bids: Levels, asks: Levels, checksum: int) -> bytes:
    def side(levels: Levels) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)

    return (
        f'{{"channel":"book","type":"{"snapshot" if snapshot else "update"}","data":[{{"symbol":"{symbol}",'
        f'"bids":[{side(bids)}],"asks":[{side(asks)}],"checksum":{checksum},"timestamp":"2026-12-04T23:00:00Z"}}]}}'
    ).encode()


def spaced(frame: bytes) -> bytes:
    """The same frame in another layout: the compact reader declines it, the JSON reader takes it."""
    return frame.replace(b":", b": ").replace(b',"', b', "')


@st.composite
def step(draw: st.DrawFn, pool: list[Decimal]) -> tuple[str, object]:
    kind = draw(st.sampled_from(["frame"] * 12 + ["book_depth", "books_depth", "broken"]))
    if kind == "book_depth":
        return kind, (draw(st.sampled_from(SYMBOLS)), draw(st.sampled_from(DEPTHS[:3])))
    if kind == "books_depth":
        return kind, draw(st.sampled_from(DEPTHS[:3]))
    if kind == "broken":
        return kind, draw(st.sampled_from([
            b'{"channel":"book","type":"update","data":[{"sym',
            b"\xff\xfe",
            b'{"channel":"book","type":"snapshot","data":[{"symbol":"X/USD","bids":[{"price":"1","qty":1}],'
            b'"asks":[],"checksum":1,"timestamp":"t"}]}',
            b'{"channel":"book","type":"update","data":[{"symbol":"X/USD","bids":[{"price":01,"qty":1}],'
            b'"asks":[],"checksum":1,"timestamp":"t"}]}',
            b'{"channel":"book","type":"update","data":[{"symbol":"X/USD","bids":[],"asks":[],"checksum":1,'
            b'"timestamp":"\xc3("}]}',
            b'{"channel":"book","type":"update","data":[{"symbol":"\xe9","bids":[],"asks":[],"checksum":1,'
            b'"timestamp":"t"}]}',
            b'{"channel":"book","type":"update","data":[{"symbol":"X/USD","bids":[],"asks":[],"checksum":1,'
            b'"timestamp":"t","extra":1}]}',
            b'{"channel":"book","type":"update","data":[{"symbol":"X/USD","bids":[],"asks":[],'
            b'"checksum":123456789012345678901234567890,"timestamp":"t"}]}\n',
        ]))
    exponents = draw(st.integers(0, 4)) == 0
    snapshot = draw(st.integers(0, 7)) == 0
    most = 30 if snapshot else 6
    bids = draw(st.lists(level(pool, exponents), max_size=most))
    asks = draw(st.lists(level(pool, exponents), max_size=most))
    if bids and draw(st.booleans()):
        bids.append((bids[-1][0], draw(st.sampled_from(QTYS + ZERO_QTYS))))  # the same price again
    checksum = draw(st.sampled_from(["right"] * 6 + ["wrong", "huge"]))
    return kind, (snapshot, draw(st.sampled_from(SYMBOLS)), bids, asks, checksum, exponents or draw(st.booleans()))


def right_checksum(ref: kraken_book_reference.SpotBooks, f: BookFrame) -> int | None:
    trial = copy.deepcopy(ref)
    v = trial.apply_parsed(f._replace(checksum=-1))
    return v.computed


def assert_same_books(c: SpotBooks, ref: kraken_book_reference.SpotBooks) -> None:
    assert c.depth == ref.depth
    for symbol in SYMBOLS:
        cb, rb = c.book(symbol), ref.book(symbol)
        assert (cb is None) == (rb is None), symbol
        if cb is None or rb is None:
            continue
        assert cb.bids.levels() == rb.bids.levels()
        assert cb.asks.levels() == rb.asks.levels()
        assert len(cb.bids) == len(rb.bids) and len(cb.asks) == len(rb.asks)
        assert cb.checksum() == rb.checksum()
        assert cb.depth == rb.depth


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_frames_give_the_c_and_the_reference_books_the_same_verdicts_levels_and_checksums(
    data: st.DataObject,
) -> None:
    pool = data.draw(price_pool())
    depth = data.draw(st.sampled_from(DEPTHS[:3]))
    c, ref = SpotBooks(depth), kraken_book_reference.SpotBooks(depth)
    for symbol in SYMBOLS:  # books to update from the start: fewer updates end as no_snapshot
        bids, asks = (data.draw(st.lists(level(pool, False), min_size=1, max_size=30)) for _ in "ba")
        right = right_checksum(ref, BookFrame(True, symbol, bids, asks, 0))
        frame = compact(True, symbol, bids, asks, right or 0)
        assert c.apply(frame) == ref.apply(frame)
    for kind, arg in data.draw(st.lists(step(pool), min_size=5, max_size=40)):
        if kind == "book_depth":
            symbol, d = arg  # type: ignore[misc]
            cb, rb = c.book(symbol), ref.book(symbol)
            if cb is not None and rb is not None:
                cb.depth = rb.depth = d
        elif kind == "books_depth":
            c.depth = ref.depth = arg  # type: ignore[assignment]
        elif kind == "broken":
            assert isinstance(arg, bytes)
            assert c.apply(arg) == ref.apply(arg)
        else:
            snapshot, symbol, bids, asks, which, other_layout = arg  # type: ignore[misc]
            f = BookFrame(snapshot, symbol, bids, asks, 0)
            right = right_checksum(ref, f)
            checksum = {"right": right or 0, "wrong": ((right or 0) + 1) % 2**32, "huge": 2**64 + (right or 0)}[which]
            frame = compact(snapshot, symbol, bids, asks, checksum)
            if other_layout:
                frame = spaced(frame)
            verdict = c.apply(frame)
            assert verdict == ref.apply(frame), frame
            assert type(verdict) is type(ref.apply(b"x"))
        assert_same_books(c, ref)


def test_the_books_are_the_c_ones() -> None:
    books = SpotBooks()
    assert isinstance(books, _kraken_book.SpotBooks)
    assert isinstance(SpotBook(10), _kraken_book.SpotBook)


def test_every_recorded_frame_verifies_in_c_and_agrees_with_the_reference(samples_dir: Path) -> None:
    lines = (samples_dir / "kraken_book.jsonl").read_bytes().splitlines()
    c, ref = SpotBooks(25), kraken_book_reference.SpotBooks(25)
    for line in lines:
        verdict = c.apply(line)
        assert verdict.ok and verdict == ref.apply(line)
        assert_same_books(c, ref)
    # One altered digit in a top-10 quantity of the snapshot: a mismatch in both.
    snapshot = lines[0]
    i = snapshot.index(b'"qty":') + len(b'"qty":') + 2
    altered = snapshot[:i] + (b"1" if snapshot[i : i + 1] != b"1" else b"2") + snapshot[i + 1 :]
    c, ref = SpotBooks(25), kraken_book_reference.SpotBooks(25)
    verdict = c.apply(altered)
    assert verdict.status is BookStatus.MISMATCH and verdict == ref.apply(altered)


def test_a_book_used_directly_raises_invalid_operation_like_the_reference() -> None:
    """The archive's check applies parsed levels to a SpotBook itself and counts InvalidOperation."""
    for book in (SpotBook(25), kraken_book_reference.SpotBook(25)):
        book.apply(True, [("1.5e2", "1"), ("150.00", "2"), ("9", "0e3")], [("1E+3", "5e-3")])
        assert book.bids.levels() == [("150.00", "2")]
        assert book.asks.levels() == [("1E+3", "5e-3")]
        with pytest.raises(InvalidOperation):
            book.apply(False, [("1e101", "1")], [])


def test_prices_beyond_nineteen_digits_keep_their_exact_order() -> None:
    """No 64-bit integer holds these; a double would round them together."""
    a, b, c = "12345678901234567890123.000000000000000000001", "12345678901234567890123", "12345678901234567890122.9"
    frame = parse_book_frame(compact(True, "X/USD", [(a, "1"), (b, "1"), (c, "1")], [(b, "2"), (c, "0"), (a, "3")], 0))
    assert frame is not None
    c_books, ref = SpotBooks(10), kraken_book_reference.SpotBooks(10)
    assert c_books.apply_parsed(frame) == ref.apply_parsed(frame)
    fresh = SpotBook(10)
    fresh.apply(True, frame.bids, frame.asks)
    assert fresh.bids.levels() == [(a, "1"), (b, "1"), (c, "1")]
    assert fresh.asks.levels() == [(b, "2"), (a, "3")]
