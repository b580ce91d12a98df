"""Kraken spot v2 order books kept from the wire's decimal text, checksum-verified on every frame.

No I/O, no clock: :class:`SpotBooks` takes each raw ``book`` frame and returns a :class:`BookVerdict`.

**Decimal text, never floats** (protocols §C1, §D8). Prices and quantities are JSON numbers whose
*text* carries the pair's precision (``0.00000000``); the CRC32 is computed over that text, so a
float round-trip (which prints ``0.0``) breaks it. Levels are therefore read as text and ordered by
their :class:`~decimal.Decimal` value; the text is what the checksum sees.

**Reading levels.** Kraken writes book frames compactly with a fixed key order. A single regular
expression checks that a frame has exactly that shape (it matches the whole frame, so a frame it
accepts cannot be read differently by a JSON parser) and another pulls each level's two numbers out
of the ``bids``/``asks`` arrays. Any other frame (whitespace, another key order, extra keys) is read
by the standard library's JSON parser with ``parse_float``/``parse_int`` keeping the text. Both
paths give the same levels; the fast one is about ten times cheaper.

**Applying** (§C1). A snapshot replaces the book. An update's levels are applied in order (a price
may repeat in one update); ``qty`` 0 deletes. Then the book is truncated to the subscribed depth,
because Kraken sends no delete for a level pushed out of range by an insert above it. Then the
checksum: the top 10 asks low→high, then the top 10 bids high→low, each level as price text and
qty text with ``.`` removed and leading zeros stripped, concatenated, CRC32 (unsigned).
"""

from __future__ import annotations

import bisect
import json
import re
import zlib
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Final, NamedTuple

DEPTHS: Final = (10, 25, 100, 500, 1000)  # §C1: the only depths Kraken accepts
DEFAULT_DEPTH: Final = 25
CHECKSUM_LEVELS: Final = 10

_NUM: Final = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"
_LEVEL: Final = r'\{"price":' + _NUM + r',"qty":' + _NUM + r"\}"
_LEVELS: Final = r"\[(?:" + _LEVEL + r"(?:," + _LEVEL + r")*)?\]"
_COMPACT_FRAME: Final = re.compile(
    r'\{"channel":"book","type":"(snapshot|update)","data":\[\{"symbol":"([^"\\]*)",'
    r'"bids":(' + _LEVELS + r'),"asks":(' + _LEVELS + r'),"checksum":([0-9]+),"timestamp":"[^"\\]*"\}\]\}'
)
_LEVEL_TEXT: Final = re.compile(r'"price":(' + _NUM + r'),"qty":(' + _NUM + r")")

# A side's level: (price text, qty text, checksum token). The token is computed once, on insert.
Level = tuple[str, str, str]


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


def _is_zero(qty: str) -> bool:
    if "e" in qty or "E" in qty:
        return Decimal(qty) == 0
    return not qty.strip("0.-")


def parse_book_frame(frame: bytes) -> BookFrame | None:
    """The levels of a spot v2 ``book`` frame as decimal text; ``None`` if it is not one."""
    try:
        text = frame.decode()
    except UnicodeDecodeError:
        return None
    m = _COMPACT_FRAME.fullmatch(text)
    if m is not None:
        findall = _LEVEL_TEXT.findall
        snapshot, symbol, bids, asks, checksum = m.groups()
        return BookFrame(snapshot == "snapshot", symbol, findall(bids), findall(asks), int(checksum))
    return _parse_book_frame_slow(text)


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


class BookSide:
    """One side of a book: levels keyed by Decimal price, kept best first.

    ``descending`` (bids) stores negated keys so one ascending sorted list serves both sides. The
    checksum text of the top 10 levels is cached and rebuilt only after a change among them: most
    updates touch deeper levels.
    """

    __slots__ = ("_keys", "_levels", "_negate", "_top")

    def __init__(self, descending: bool) -> None:
        self._negate = descending
        self._keys: list[Decimal] = []
        self._levels: dict[Decimal, Level] = {}
        self._top: str | None = ""

    def clear(self) -> None:
        self._keys.clear()
        self._levels.clear()
        self._top = ""

    def apply(self, price: str, qty: str) -> None:
        key = -Decimal(price) if self._negate else Decimal(price)
        levels = self._levels
        keys = self._keys
        if _is_zero(qty):
            if levels.pop(key, None) is not None:
                i = bisect.bisect_left(keys, key)
                del keys[i]
                if i < CHECKSUM_LEVELS:
                    self._top = None
            return
        if key in levels:
            if self._top is not None and bisect.bisect_left(keys, key) < CHECKSUM_LEVELS:
                self._top = None
        else:
            i = bisect.bisect_left(keys, key)
            keys.insert(i, key)
            if i < CHECKSUM_LEVELS:
                self._top = None
        levels[key] = (price, qty, checksum_token(price) + checksum_token(qty))

    def truncate(self, depth: int) -> None:
        """Drop levels past ``depth`` (never among the top 10: every depth is at least 10)."""
        keys = self._keys
        if len(keys) > depth:
            levels = self._levels
            for k in keys[depth:]:
                del levels[k]
            del keys[depth:]

    def top_text(self) -> str:
        """The checksum text of the top 10 levels, best first."""
        top = self._top
        if top is None:
            levels = self._levels
            top = self._top = "".join([levels[k][2] for k in self._keys[:CHECKSUM_LEVELS]])
        return top

    def levels(self) -> list[tuple[str, str]]:
        """(price text, qty text), best first."""
        return [self._levels[k][:2] for k in self._keys]

    def __len__(self) -> int:
        return len(self._keys)


class SpotBook:
    """One symbol's book at one subscribed depth."""

    __slots__ = ("asks", "bids", "depth")

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        self.depth = depth
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)

    def apply(self, snapshot: bool, bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> None:
        if snapshot:
            self.bids.clear()
            self.asks.clear()
        for p, q in bids:
            self.bids.apply(p, q)
        for p, q in asks:
            self.asks.apply(p, q)
        self.bids.truncate(self.depth)
        self.asks.truncate(self.depth)

    def checksum(self) -> int:
        return zlib.crc32((self.asks.top_text() + self.bids.top_text()).encode("ascii"))


class SpotBooks:
    """Every subscribed symbol's book on one connection, verified after each frame.

    After a mismatch the symbol's book is dropped: later updates report ``NO_SNAPSHOT`` until the
    snapshot that a resubscribe brings, so one fault is reported once, not on every update after it.
    """

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        if depth not in DEPTHS:
            raise ValueError(f"Kraken book depth must be one of {DEPTHS}, not {depth}")
        self.depth = depth
        self._books: dict[str, SpotBook] = {}

    def reset(self) -> None:
        """A new socket: no book survives a reconnect (§D9)."""
        self._books.clear()

    def drop(self, symbol: str) -> None:
        self._books.pop(symbol, None)

    def book(self, symbol: str) -> SpotBook | None:
        return self._books.get(symbol)

    def apply(self, frame: bytes) -> BookVerdict:
        parsed = parse_book_frame(frame)
        if parsed is None:
            return BookVerdict(BookStatus.MALFORMED, None, False)
        return self.apply_parsed(parsed)

    def apply_parsed(self, f: BookFrame) -> BookVerdict:
        book = self._books.get(f.symbol)
        if f.snapshot:
            if book is None:
                book = self._books[f.symbol] = SpotBook(self.depth)
        elif book is None:
            return BookVerdict(BookStatus.NO_SNAPSHOT, f.symbol, False)
        try:
            book.apply(f.snapshot, f.bids, f.asks)
        except InvalidOperation:
            self._books.pop(f.symbol, None)
            return BookVerdict(BookStatus.MALFORMED, f.symbol, f.snapshot)
        computed = book.checksum()
        if computed == f.checksum:
            return BookVerdict(BookStatus.OK, f.symbol, f.snapshot, f.checksum, computed)
        del self._books[f.symbol]
        return BookVerdict(BookStatus.MISMATCH, f.symbol, f.snapshot, f.checksum, computed)
