"""Kraken spot v2 books in plain Python: the reference the C books (:mod:`._kraken_book`) are tested against.

Same semantics, same verdicts (:mod:`.kraken_book`'s docstring is the specification), written in
Python: every frame a differential test feeds the C books goes through these too, and their levels,
verdicts and checksums must agree after every frame. Not on any hot path.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Final

from ingest_daemons.adapters.kraken_book import (
    _UNREADABLE,
    CHECKSUM_LEVELS,
    DEFAULT_DEPTH,
    DEPTHS,
    MAX_PRICE_EXPONENT,
    BookFrame,
    BookStatus,
    BookVerdict,
    _parse_book_frame_slow,
    _read_compact,
    checksum_token,
)

SEEN_PRICES: Final = 4096  # price texts whose key a side remembers before it starts over


def _verdict(fields: tuple[BookStatus, str | None, bool, int | None, int | None]) -> BookVerdict:
    return BookVerdict(*fields)


def _is_zero(qty: str) -> bool:
    if "e" in qty or "E" in qty:
        return Decimal(qty) == 0
    return not qty.strip("0.-")


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
            return _verdict((BookStatus.NO_SNAPSHOT, symbol, False, None, None))
        try:
            book.apply(snapshot, bids, asks)
        except InvalidOperation:
            self._books.pop(symbol, None)
            return _verdict((BookStatus.MALFORMED, symbol, snapshot, None, None))
        computed = book.checksum()
        if computed == expected:
            return _verdict((BookStatus.OK, symbol, snapshot, expected, computed))
        del self._books[symbol]
        return _verdict((BookStatus.MISMATCH, symbol, snapshot, expected, computed))
