"""Kraken spot v2 order books kept from the wire's decimal text, checksum-verified on every frame.

No I/O, no clock: :class:`SpotBooks` takes each raw ``book`` frame and returns a :class:`BookVerdict`.

**Decimal text, never floats** (protocols §C1, §D8). Prices and quantities are JSON numbers whose
*text* carries the pair's precision (``0.00000000``); the CRC32 is computed over that text, so a
float round-trip (which prints ``0.0``) breaks it. A level keeps its text for the checksum and is
ordered by an exact integer read from that text (see :class:`BookSide`).

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

import bisect
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Final, NamedTuple

DEPTHS: Final = (10, 25, 100, 500, 1000)  # §C1: the only depths Kraken accepts
DEFAULT_DEPTH: Final = 25
CHECKSUM_LEVELS: Final = 10
# An exponent beyond this in a price is not a price: reading it exactly would make every key huge.
MAX_PRICE_EXPONENT: Final = 100
SEEN_PRICES: Final = 4096  # price texts whose key a side remembers before it starts over

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


# Built once per frame on the hot path: tuple.__new__ skips the generated __new__'s Python frame.
_verdict: Final = tuple.__new__
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


def _exponent_price(price: str) -> tuple[int, int]:
    """(digits as an integer, decimal places) of a price written with an exponent (``6.3e4``)."""
    sign, digits, exponent = Decimal(price).as_tuple()
    if not isinstance(exponent, int) or abs(exponent) > MAX_PRICE_EXPONENT:
        raise InvalidOperation(f"not a usable price: {price!r}")
    n = int("".join(map(str, digits)) or "0")
    n = -n if sign else n
    if exponent >= 0:
        return n * 10**exponent, 0
    return n, -exponent


class BookSide:
    """One side of a book, best first, in three parallel lists: integer keys, texts, checksum tokens.

    A key is the price's exact value times ``10**scale``, read from the text (``63381.05`` at scale 2
    is ``6338105``): integers compare several times faster than ``Decimal`` and are exact, as long as
    ``scale`` covers every price's decimals, so a price with more decimals than seen so far rescales
    the side once. Bids store negated keys so one ascending list serves both sides. A level's
    checksum token (price digits + qty digits) is made once, when the level is written; the top 10
    tokens' bytes and their CRC32 are cached and rebuilt only after a change among them (most
    updates touch deeper levels). With a ``depth``, every :meth:`update` ends truncated to it.
    """

    __slots__ = ("_crc", "_depth", "_keys", "_levels", "_negate", "_scale", "_seen", "_tokens", "_top")

    def __init__(self, descending: bool, depth: int | None = None) -> None:
        self._negate = descending
        self._depth = depth
        self._scale = 0
        self._keys: list[int] = []
        self._levels: list[tuple[str, str]] = []
        self._tokens: list[str] = []
        self._seen: dict[str, tuple[int, str]] = {}  # price text -> (key, checksum token) at this scale
        self._top: bytes | None = b""
        self._crc = 0

    def clear(self) -> None:
        self._keys.clear()
        self._levels.clear()
        self._tokens.clear()
        self._top = b""
        self._crc = 0

    def apply(self, price: str, qty: str) -> None:
        self.update(((price, qty),))

    def update(self, levels: Iterable[tuple[str, str]]) -> None:
        """Write levels in order (JSON number texts); a zero ``qty`` deletes; then truncate to the depth."""
        keys = self._keys
        texts = self._levels
        tokens = self._tokens
        seen = self._seen
        bisect_left = bisect.bisect_left
        for level in levels:
            price, qty = level
            known = seen.get(price)
            if known is None:
                known = self._read_price(price)
                keys = self._keys  # a new scale makes a new list
            key, price_token = known
            i = bisect_left(keys, key)
            found = i < len(keys) and keys[i] == key
            qty_token = qty.replace(".", "").lstrip("0")
            if not qty_token or (not qty_token.isdigit() and _is_zero(qty)):
                if found:
                    del keys[i]
                    del texts[i]
                    del tokens[i]
                    if i < CHECKSUM_LEVELS:
                        self._top = None
                continue
            if found:
                texts[i] = level
                tokens[i] = price_token + qty_token
            else:
                keys.insert(i, key)
                texts.insert(i, level)
                tokens.insert(i, price_token + qty_token)
            if i < CHECKSUM_LEVELS:
                self._top = None
        depth = self._depth
        if depth is not None and len(keys) > depth:
            del keys[depth:]
            del texts[depth:]
            del tokens[depth:]

    def _read_price(self, price: str) -> tuple[int, str]:
        """(key, checksum token) of a price text not seen at this scale; remembered, because the
        same few prices come back in update after update."""
        whole, _, fraction = price.partition(".")
        digits = whole + fraction
        try:
            value = int(digits)
            places = len(fraction)
            token = digits.lstrip("0")
        except ValueError:
            value, places = _exponent_price(price)
            token = checksum_token(price)
        scale = self._scale
        if places > scale:
            self._rescale(places)
        elif places < scale:
            value *= 10 ** (scale - places)
        seen = self._seen
        if len(seen) >= SEEN_PRICES:
            seen.clear()
        known = seen[price] = (-value if self._negate else value, token)
        return known

    def _rescale(self, places: int) -> None:
        factor = 10 ** (places - self._scale)
        self._keys = [k * factor for k in self._keys]
        self._scale = places
        self._seen.clear()

    def set_depth(self, depth: int) -> None:
        """Truncate to ``depth`` from now on, and now (never among the top 10: every depth is at least 10)."""
        self._depth = depth
        if len(self._keys) > depth:
            del self._keys[depth:]
            del self._levels[depth:]
            del self._tokens[depth:]

    def top_bytes(self) -> bytes:
        """The checksum text of the top 10 levels, best first."""
        top = self._top
        if top is None:
            top = self._top = "".join(self._tokens[:CHECKSUM_LEVELS]).encode("ascii")
            self._crc = zlib.crc32(top)
        return top

    def top_crc(self) -> int:
        """CRC32 of :meth:`top_bytes`, cached with it."""
        if self._top is None:
            self.top_bytes()
        return self._crc

    def levels(self) -> list[tuple[str, str]]:
        """(price text, qty text), best first."""
        return list(self._levels)

    def __len__(self) -> int:
        return len(self._keys)


class SpotBook:
    """One symbol's book at one subscribed depth."""

    __slots__ = ("_depth", "asks", "bids")

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        self._depth = depth
        self.bids = BookSide(descending=True, depth=depth)
        self.asks = BookSide(descending=False, depth=depth)

    @property
    def depth(self) -> int:
        return self._depth

    @depth.setter
    def depth(self, depth: int) -> None:
        """The sides truncate as they update, so a changed depth is theirs too (a deeper one keeps
        levels the exchange no longer maintains: their checksum then stops matching)."""
        self._depth = depth
        self.bids.set_depth(depth)
        self.asks.set_depth(depth)

    def apply(self, snapshot: bool, bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> None:
        if snapshot:
            self.bids.clear()
            self.asks.clear()
        if bids:
            self.bids.update(bids)
        if asks:
            self.asks.update(asks)

    def checksum(self) -> int:
        # CRC32 continues across calls: the asks' cached CRC is the start value for the bids' bytes.
        return zlib.crc32(self.bids.top_bytes(), self.asks.top_crc())


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
        """The hot path: read (compact layout first), apply, truncate, verify."""
        try:
            text = frame.decode()
        except UnicodeDecodeError:
            return _UNREADABLE
        compact = _read_compact(text)
        if compact is not None:
            return self._apply(*compact)
        parsed = _parse_book_frame_slow(text)
        if parsed is None:
            return _UNREADABLE
        return self.apply_parsed(parsed)

    def apply_parsed(self, f: BookFrame) -> BookVerdict:
        return self._apply(f.snapshot, f.symbol, f.bids, f.asks, f.checksum)

    def _apply(
        self, snapshot: bool, symbol: str, bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]],
        expected: int,
    ) -> BookVerdict:
        book = self._books.get(symbol)
        if snapshot:
            if book is None:
                book = self._books[symbol] = SpotBook(self.depth)
        elif book is None:
            return _verdict(BookVerdict, (BookStatus.NO_SNAPSHOT, symbol, False, None, None))
        try:
            book.apply(snapshot, bids, asks)
        except InvalidOperation:
            self._books.pop(symbol, None)
            return _verdict(BookVerdict, (BookStatus.MALFORMED, symbol, snapshot, None, None))
        computed = book.checksum()
        if computed == expected:
            return _verdict(BookVerdict, (BookStatus.OK, symbol, snapshot, expected, computed))
        del self._books[symbol]
        return _verdict(BookVerdict, (BookStatus.MISMATCH, symbol, snapshot, expected, computed))
