"""Kraken spot v2 order books kept from the wire's decimal text, checksum-verified on every frame.

No I/O, no clock: :class:`SpotBooks` takes each raw ``book`` frame and returns a :class:`BookVerdict`.

**Where the work is done.** The books (:class:`SpotBooks`, :class:`SpotBook`, :class:`BookSide`) are
the C extension :mod:`._kraken_book`: a connector verifies every book frame before publishing it, and
in Python the book was about three quarters of the connector's CPU. It reads Kraken's compact layout
itself (the same language as the pattern below) and hands any other frame to :func:`parse_book_frame`,
then applies those levels in C. :mod:`.kraken_book_reference` keeps the same books in plain Python:
the specification the C books are tested against, frame by frame. What follows holds for both.

**Decimal text, never floats** (protocols §C1, §D8). Prices and quantities are JSON numbers whose
*text* carries the pair's precision (``0.00000000``); the CRC32 is computed over that text, so a
float round-trip (which prints ``0.0``) breaks it. A level keeps its text for the checksum and is
ordered by its exact value read from that text (the C books compare normalised decimal digits,
the reference exact integers; neither can overflow or round).

**Reading levels.** Kraken writes book frames compactly with a fixed key order. The fast reader
checks that a frame has exactly that shape: the fixed head up to the symbol with ``str.startswith``,
then the rest (symbol, both level arrays, checksum, timestamp) with one regular expression that
admits only what a JSON parser reads the same way (numbers without exponent, strings without escape
or control character). A frame it accepts therefore cannot be read differently by a JSON parser; the
(price, qty) texts are then taken out of the checked arrays by one ``findall``, with no Python loop.
Any other frame (whitespace, another key order, extra keys, exponents) is read by the standard
library's JSON parser with ``parse_float``/``parse_int`` keeping the text. Both paths give the same
levels.

**Applying** (§C1). A snapshot replaces the book. An update's levels are applied in order (a price
may repeat in one update); ``qty`` 0 deletes. Then the book is truncated to the subscribed depth,
because Kraken sends no delete for a level pushed out of range by an insert above it. Then the
checksum: the top 10 asks low→high, then the top 10 bids high→low, each level as price text and
qty text with ``.`` removed and leading zeros stripped, concatenated, CRC32 (unsigned).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Final, NamedTuple

from ingest_daemons.adapters import _kraken_book

DEPTHS: Final = (10, 25, 100, 500, 1000)  # §C1: the only depths Kraken accepts
DEFAULT_DEPTH: Final = 25
CHECKSUM_LEVELS: Final = 10
# An exponent beyond this in a price is not a price (InvalidOperation): an exact key would be huge.
# The C books hold the same limit (_kraken_book.c, MAX_PRICE_EXPONENT).
MAX_PRICE_EXPONENT: Final = 100

_NUM: Final = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"  # a JSON number without an exponent
_LEVEL: Final = r'\{"price":' + _NUM + r',"qty":' + _NUM + r"\}"
_LEVELS: Final = r"(?:" + _LEVEL + r"(?:," + _LEVEL + r")*)?"  # the inside of a bids/asks array
_TEXT: Final = r'[^"\\\x00-\x1f]*'  # a JSON string's inside with no escape (none is needed in these fields)
_UPDATE_HEAD: Final = '{"channel":"book","type":"update","data":[{"symbol":"'
_SNAPSHOT_HEAD: Final = '{"channel":"book","type":"snapshot","data":[{"symbol":"'
_UPDATE_HEAD_LEN: Final = len(_UPDATE_HEAD)  # len() is a call at run time: spelled out once
_SNAPSHOT_HEAD_LEN: Final = len(_SNAPSHOT_HEAD)
# Kraken's own layout of a book frame after one of the heads (checked with startswith, which compares
# fixed text many times faster than the pattern engine): (symbol, bids inside, asks inside, checksum).
_COMPACT_REST: Final = re.compile(
    r'(' + _TEXT + r')","bids":\[(' + _LEVELS + r')\],"asks":\[(' + _LEVELS + r')\],'
    r'"checksum":(0|[1-9][0-9]*),"timestamp":"' + _TEXT + r'"\}\]\}'
).fullmatch
# (price text, qty text) of every level of an array the frame pattern has already checked.
_LEVEL_TEXTS: Final = re.compile(r'\{"price":(' + _NUM + r'),"qty":(' + _NUM + r')\}').findall


class BookStatus(Enum):
    OK = "ok"  # the checksum Kraken sent equals the one computed from our book
    MISMATCH = "mismatch"  # the book is wrong from here on: mark it and resubscribe for a snapshot
    NO_SNAPSHOT = "no_snapshot"  # an update for a symbol without a book (before its snapshot or after a mismatch)
    MALFORMED = "malformed"  # not a readable book frame


class BookVerdict(NamedTuple):
    """What one ``book`` frame did to its symbol's book.

    ``expected`` is the checksum Kraken sent, ``computed`` ours (both ``None`` unless the frame was
    applied); on ``MISMATCH`` they differ and the book is dropped until the next snapshot.
    """

    status: BookStatus
    symbol: str | None
    snapshot: bool
    expected: int | None = None
    computed: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is BookStatus.OK


_UNREADABLE: Final = BookVerdict(BookStatus.MALFORMED, None, False)


class BookFrame(NamedTuple):
    """A ``book`` frame's content, levels as (price text, qty text) in wire order."""

    snapshot: bool
    symbol: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    checksum: int


def checksum_token(text: str) -> str:
    """One number's part of the checksum string: ``.`` removed, leading zeros stripped (§C1)."""
    return text.replace(".", "").lstrip("0")


def parse_book_frame(frame: bytes) -> BookFrame | None:
    """The levels of a spot v2 ``book`` frame as decimal text; ``None`` if it is not one."""
    try:
        text = frame.decode()
    except UnicodeDecodeError:
        return None
    compact = _read_compact(text)
    if compact is not None:
        return BookFrame(*compact)
    return _parse_book_frame_slow(text)


def _read_compact(text: str) -> tuple[bool, str, list[tuple[str, str]], list[tuple[str, str]], int] | None:
    """Kraken's own layout, checked whole (a head, then one regular expression); ``None`` for any other text."""
    if text.startswith(_UPDATE_HEAD):
        m, snapshot = _COMPACT_REST(text, _UPDATE_HEAD_LEN), False
    elif text.startswith(_SNAPSHOT_HEAD):
        m, snapshot = _COMPACT_REST(text, _SNAPSHOT_HEAD_LEN), True
    else:
        return None
    if m is None:
        return None
    symbol, bids, asks, checksum = m.groups()
    return snapshot, symbol, _LEVEL_TEXTS(bids), _LEVEL_TEXTS(asks), int(checksum)


def _parse_book_frame_slow(frame: str) -> BookFrame | None:
    try:
        body = json.loads(frame, parse_float=str, parse_int=str)
    except ValueError:
        return None
    try:
        if body.get("channel") != "book" or body.get("type") not in ("snapshot", "update"):
            return None
        data = body["data"][0]
        symbol = data["symbol"]
        if not isinstance(symbol, str):
            return None
        bids = _levels_text(data.get("bids", []))
        asks = _levels_text(data.get("asks", []))
        checksum = int(data["checksum"])
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return None
    if bids is None or asks is None:
        return None
    return BookFrame(body["type"] == "snapshot", symbol, bids, asks, checksum)


def _levels_text(levels: Any) -> list[tuple[str, str]] | None:
    if not isinstance(levels, list):
        return None
    out: list[tuple[str, str]] = []
    for lv in levels:
        if not isinstance(lv, dict):
            return None
        price, qty = lv.get("price"), lv.get("qty")
        # parse_float/parse_int=str: a number arrives as its text; a JSON string here is not a number.
        if not isinstance(price, str) or not isinstance(qty, str) or not _is_number_text(price, qty):
            return None
        out.append((price, qty))
    return out


def _is_number_text(*texts: str) -> bool:
    try:
        for t in texts:
            Decimal(t)
    except InvalidOperation:
        return False
    return True


# The C books build verdicts of these and hand frames they do not read themselves to this reader.
_kraken_book.configure(BookVerdict, BookStatus.OK, BookStatus.MISMATCH, BookStatus.NO_SNAPSHOT, BookStatus.MALFORMED,
                       _UNREADABLE, parse_book_frame)

BookSide = _kraken_book.BookSide
SpotBook = _kraken_book.SpotBook


class SpotBooks(_kraken_book.SpotBooks):
    """Every subscribed symbol's book on one connection, verified after each frame.

    After a mismatch the symbol's book is dropped: later updates report ``NO_SNAPSHOT`` until the
    snapshot that a resubscribe brings, so one fault is reported once, not on every update after it.
    A level whose price cannot be used (an exponent beyond :data:`MAX_PRICE_EXPONENT`) makes the frame
    ``MALFORMED`` and drops the book too.
    """

    __slots__ = ()

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        if depth not in DEPTHS:
            raise ValueError(f"Kraken book depth must be one of {DEPTHS}, not {depth}")
        super().__init__(depth)
