"""The fast Kraken book against a plain reference: same levels and same checksum after every update.

The reference below is written for obviousness, not speed: a dict keyed by ``Decimal`` price, sorted
and truncated after each frame, the checksum string rebuilt from scratch. Random sequences drive both:
inserts, updates, deletes (``qty`` 0, also for absent prices), a price repeated within one update,
prices written with different numbers of decimals (``101.5`` and ``101.50`` are one level), inserts
that push levels past the depth, snapshots, and frames in another layout (spaces, exponents) that take
the JSON parser instead of the compact reader.
"""

from __future__ import annotations

import random
import zlib
from decimal import Decimal

import pytest

from ingest_daemons.adapters.kraken_book import BookStatus, SpotBooks

SYMBOL = "X/USD"
Levels = list[tuple[str, str]]


class ReferenceBook:
    """§C1 read literally: apply levels in order, ``qty`` 0 deletes, truncate to depth, CRC32 the top 10."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def apply(self, snapshot: bool, bids: Levels, asks: Levels) -> int:
        """Returns how many levels the truncation dropped."""
        dropped = 0
        if snapshot:
            self.bids.clear()
            self.asks.clear()
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = (price, qty)
        for side, best_first in ((self.bids, self.bid_levels()), (self.asks, self.ask_levels())):
            kept = {Decimal(p) for p, _ in best_first[: self.depth]}
            for price in list(side):
                if price not in kept:
                    del side[price]
                    dropped += 1
        return dropped

    def bid_levels(self) -> Levels:
        return [self.bids[p] for p in sorted(self.bids, reverse=True)]

    def ask_levels(self) -> Levels:
        return [self.asks[p] for p in sorted(self.asks)]

    def checksum(self) -> int:
        text = "".join(
            p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0")
            for p, q in self.ask_levels()[:10] + self.bid_levels()[:10]
        )
        return zlib.crc32(text.encode())


def price_text(rng: random.Random, ticks: int, spaced: bool) -> str:
    """A price of ``ticks`` hundredths, sometimes with a millionth more, written with spare decimals."""
    value = Decimal(ticks) / 100
    if rng.random() < 0.05:
        value += Decimal(rng.randint(1, 9)) / 1_000_000
    places = len(str(value).partition(".")[2]) + rng.choice([0, 0, 0, 1, 2])
    if spaced and rng.random() < 0.2:
        return f"{value:.6e}"  # 1.000500e+02: exact for these values
    return f"{value:.{places}f}"


def qty_text(rng: random.Random, spaced: bool) -> str:
    if spaced and rng.random() < 0.1:
        return rng.choice(["5e-3", "1.25E1", "0e0", "0.0e-5"])
    if rng.random() < 0.25:
        return rng.choice(["0", "0.0", "0.00000000"])  # a delete, in several spellings
    return nonzero_qty(rng)


def nonzero_qty(rng: random.Random) -> str:
    return f"{Decimal(rng.randint(1, 10**6)) / 10**4:.{rng.choice([4, 8])}f}"


def random_levels(rng: random.Random, side: dict[Decimal, tuple[str, str]], bid: bool, spaced: bool) -> Levels:
    """One update's levels for a side: mostly near the top, some far out (past the depth)."""
    out: Levels = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 5])):
        roll = rng.random()
        if roll < 0.3 and side:
            price = rng.choice(list(side.values()))[0]  # an existing level: update or delete
        else:
            spread = 40 if roll < 0.9 else 400
            ticks = 10_000 - rng.randint(0, spread) if bid else 10_001 + rng.randint(0, spread)
            price = price_text(rng, ticks, spaced)
        out.append((price, qty_text(rng, spaced)))
        if rng.random() < 0.05:
            out.append((price, qty_text(rng, spaced)))  # the same price again in one update
    return out


def frame(snapshot: bool, bids: Levels, asks: Levels, checksum: int, spaced: bool) -> bytes:
    def side(levels: Levels) -> str:
        sep = ", " if spaced else ","
        return sep.join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)

    text = (
        f'{{"channel":"book","type":"{"snapshot" if snapshot else "update"}","data":[{{"symbol":"{SYMBOL}",'
        f'"bids":[{side(bids)}],"asks":[{side(asks)}],"checksum":{checksum},"timestamp":"t"}}]}}'
    )
    return (text.replace(":", ": ") if spaced else text).encode()


@pytest.mark.parametrize(("seed", "depth", "steps"), [(1, 10, 1500), (2, 25, 1500), (3, 100, 500)])
def test_random_updates_match_the_reference_book(seed: int, depth: int, steps: int) -> None:
    rng = random.Random(seed)
    ref = ReferenceBook(depth)
    books = SpotBooks(depth)
    truncated = deleted = 0
    for step in range(steps):
        snapshot = step == 0 or rng.random() < 0.01
        spaced = rng.random() < 0.1
        if snapshot:
            ref_before: tuple[dict[Decimal, tuple[str, str]], dict[Decimal, tuple[str, str]]] = ({}, {})
        else:
            ref_before = (ref.bids, ref.asks)
        bids = random_levels(rng, ref_before[0], True, spaced)
        asks = random_levels(rng, ref_before[1], False, spaced)
        if snapshot:
            bids += [(price_text(rng, 10_000 - i, spaced), nonzero_qty(rng)) for i in range(depth + 5)]
            asks += [(price_text(rng, 10_001 + i, spaced), nonzero_qty(rng)) for i in range(depth + 5)]
        truncated += ref.apply(snapshot, bids, asks) > 0
        deleted += any(Decimal(q) == 0 for _, q in bids + asks)
        expected = ref.checksum()
        verdict = books.apply(frame(snapshot, bids, asks, expected, spaced))
        assert verdict.status is BookStatus.OK, (step, bids, asks, verdict)
        assert verdict.computed == expected
        book = books.book(SYMBOL)
        assert book is not None
        assert book.bids.levels() == ref.bid_levels(), step
        assert book.asks.levels() == ref.ask_levels(), step
    # The sequences did what they are for: books filled past the depth, and levels were deleted.
    assert truncated > 20 and deleted > 100
