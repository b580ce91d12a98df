"""The simulator's own order book: integer prices and quantities, and what each client is owed.

Written apart from the connector's book on purpose. Here a level is a pair of integers (units of
the pair's last decimal); the checksum is computed from those integers — for fixed-point text,
"remove the dot, strip leading zeros" is just the integer's decimal digits — so it agrees with the
connector's text-based computation only if both read protocols §C1 the same way.

A client subscribed at depth ``D`` holds the top ``D`` levels (it truncates, §C1). :meth:`SimBook.apply`
changes one level and returns the levels that client must be sent: the changed level if it is in
its view; on a delete inside the view, the delete and the level that moves up into place ``D``; an
insert that pushes a level out of the view sends no delete for it.
"""

from __future__ import annotations

import bisect
import random
import zlib
from typing import Final

BID: Final = "bid"
ASK: Final = "ask"

# One level to send: (side, price units, qty units); qty 0 deletes.
Change = tuple[str, int, int]


class SimBook:
    def __init__(self, rng: random.Random, mid: int, levels: int, lot_scale: int) -> None:
        self.rng = rng
        self.target = levels
        self.lot_scale = lot_scale
        self.bid_px: list[int] = []  # ascending; best bid last
        self.ask_px: list[int] = []  # ascending; best ask first
        self.qty: dict[tuple[str, int], int] = {}
        spread = max(1, mid // 20_000)
        px = mid - spread
        for _ in range(levels):
            self.bid_px.append(px)
            self.qty[(BID, px)] = self._random_qty()
            px -= rng.randint(1, 3)
        self.bid_px.reverse()
        px = mid + spread
        for _ in range(levels):
            self.ask_px.append(px)
            self.qty[(ASK, px)] = self._random_qty()
            px += rng.randint(1, 3)

    def _random_qty(self) -> int:
        return max(1, int(self.rng.expovariate(1.0) * self.lot_scale))

    # --- reading -------------------------------------------------------------------------------

    def side(self, side: str) -> list[int]:
        """Prices of ``side``, best first."""
        return self.bid_px[::-1] if side == BID else list(self.ask_px)

    def top(self, side: str, n: int) -> list[tuple[int, int]]:
        pxs = self.bid_px[: -n - 1 : -1] if side == BID else self.ask_px[:n]
        return [(p, self.qty[(side, p)]) for p in pxs]

    def rank(self, side: str, px: int) -> int:
        """0 for the best level of ``side``; ``px`` must be on the book."""
        if side == ASK:
            return bisect.bisect_left(self.ask_px, px)
        return len(self.bid_px) - 1 - bisect.bisect_left(self.bid_px, px)

    def best(self, side: str) -> int:
        return self.bid_px[-1] if side == BID else self.ask_px[0]

    def checksum(self) -> int:
        """§C1 from integers: top 10 asks low→high, then top 10 bids high→low."""
        parts = [f"{p}{q}" for p, q in self.top(ASK, 10)] + [f"{p}{q}" for p, q in self.top(BID, 10)]
        return zlib.crc32("".join(parts).encode())

    # --- changing ------------------------------------------------------------------------------

    def random_change(self, depth: int) -> list[Change]:
        """Change one level, mostly near the top, and return what a depth-``depth`` client is sent."""
        rng = self.rng
        side = BID if rng.random() < 0.5 else ASK
        pxs = self.bid_px if side == BID else self.ask_px
        n = len(pxs)
        r = min(int(rng.expovariate(1 / 6)), n - 1) if rng.random() < 0.9 else rng.randrange(n)
        roll = rng.random()
        if n > self.target + 10:
            roll = 0.9
        elif n < self.target - 10 or n <= 11:
            roll = 0.6
        if roll < 0.5:
            return self._modify(side, r, depth)
        if roll < 0.8:
            return self._insert(side, r, depth) or self._modify(side, r, depth)
        return self._delete(side, r, depth)

    def _px_at(self, side: str, r: int) -> int:
        return self.bid_px[-1 - r] if side == BID else self.ask_px[r]

    def _modify(self, side: str, r: int, depth: int) -> list[Change]:
        px = self._px_at(side, r)
        q = self._random_qty()
        self.qty[(side, px)] = q
        return [(side, px, q)] if r < depth else []

    def _insert(self, side: str, r: int, depth: int) -> list[Change]:
        """A new price between level ``r-1`` and level ``r`` (at the top: inside the spread)."""
        if r == 0:
            outer = self._px_at(side, 0)
            inner = self.best(ASK) if side == BID else self.best(BID)
        else:
            outer, inner = self._px_at(side, r), self._px_at(side, r - 1)
        lo, hi = min(outer, inner), max(outer, inner)
        if hi - lo < 2:
            return []
        px = self.rng.randint(lo + 1, hi - 1)
        q = self._random_qty()
        bisect.insort(self.bid_px if side == BID else self.ask_px, px)
        self.qty[(side, px)] = q
        return [(side, px, q)] if self.rank(side, px) < depth else []

    def _delete(self, side: str, r: int, depth: int) -> list[Change]:
        pxs = self.bid_px if side == BID else self.ask_px
        if len(pxs) <= 11:
            return self._modify(side, r, depth)
        px = self._px_at(side, r)
        del pxs[bisect.bisect_left(pxs, px)]
        del self.qty[(side, px)]
        if r >= depth:
            return []
        out: list[Change] = [(side, px, 0)]
        if len(pxs) >= depth:  # the level now at place ``depth`` enters the client's view
            moved = self._px_at(side, depth - 1)
            out.append((side, moved, self.qty[(side, moved)]))
        return out

    def trade(self) -> tuple[str, int, int]:
        """A taker trade at the touch: (taker side ``buy``/``sell``, price, qty); the book is left alone."""
        if self.rng.random() < 0.5:
            return "buy", self.best(ASK), max(1, self._random_qty() // 4)
        return "sell", self.best(BID), max(1, self._random_qty() // 4)
