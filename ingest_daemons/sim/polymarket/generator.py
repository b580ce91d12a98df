"""What a connection streams: market-channel events for its subscribed tokens, framed.

An *element* is one event; a *frame* is what one WebSocket text message carries: a single event
object or a JSON array of events (§B1). Frames are built by joining the elements' bytes, so each
element's bytes are a byte substring of its frame and a test can compare either.

Generated mode keeps the books consistent (a ``price_change`` moves the level it reports, a
``book`` shows the result). Flood mode (``rate <= 0`` on the simulator) sends only pre-rendered
current-shape ``price_change`` events, array-wrapped, for throughput benchmarks.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Literal

from ingest_daemons.sim.polymarket import messages, spec
from ingest_daemons.sim.polymarket.universe import SimMarket, Universe

# (bytes, event_type, asset_id, market): one event as written.
Element = tuple[bytes, str, str | None, str | None]
ArrayMode = Literal["never", "mixed", "always"]
ShapeMode = Literal["current", "legacy", "mixed"]


@dataclass(slots=True)
class GeneratorOptions:
    array_frames: ArrayMode = "mixed"
    array_max: int = 5  # events per array frame (at most)
    price_change_shape: ShapeMode = "current"
    snapshot_array_max: int = 50  # book snapshots per array frame after a subscribe
    snapshot_event_type: bool = True  # False: subscribe snapshots lack event_type, as seen live (§B1)


def frame_of(elements: list[Element]) -> bytes:
    """One element alone is sent as an object; more as a compact JSON array."""
    if len(elements) == 1:
        return elements[0][0]
    return b"[" + b",".join(e[0] for e in elements) + b"]"


class DataGenerator:
    """Per-connection event source; market state is shared through the universe."""

    def __init__(self, universe: Universe, seed: int, options: GeneratorOptions) -> None:
        self.universe = universe
        self.options = options
        self.rng = random.Random(seed)
        self.seq = seed * 1_000_000_007 % (1 << 40)  # makes hashes differ between connections
        self._flood: list[messages.FloodTemplate] = []
        self._flood_key: tuple[int, int] = (-1, -1)
        self._flood_pos = 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    # --- snapshots -----------------------------------------------------------------------------

    def snapshots(self, tokens: list[str]) -> list[list[Element]]:
        """``book`` for every known token, batched into array frames (§B1: initial bursts)."""
        ts = messages.now_ms()
        out: list[Element] = []
        for t in tokens:
            m = self.universe.by_token.get(t)
            if m is None or not m.trading:
                continue
            outcome = m.outcome_of(t)
            data = messages.book(m, outcome, ts, self._next(), with_type=self.options.snapshot_event_type)
            out.append((data, spec.BOOK, t, m.condition_id))
        size = max(1, self.options.snapshot_array_max)
        return [out[i : i + size] for i in range(0, len(out), size)]

    # --- generated data ------------------------------------------------------------------------

    def produce(self, tokens: list[str], n: int, custom: bool) -> list[list[Element]]:
        """About ``n`` events for ``tokens`` (trading ones only), grouped into frames."""
        live = [t for t in tokens if (m := self.universe.by_token.get(t)) is not None and m.trading]
        if not live:
            return []
        rng = self.rng
        ts = messages.now_ms()
        elements = [self._event(rng.choice(live), ts, custom) for _ in range(n)]
        return self._group(elements)

    def _group(self, elements: list[Element]) -> list[list[Element]]:
        mode = self.options.array_frames
        if mode == "never":
            return [[e] for e in elements]
        rng, k = self.rng, max(1, self.options.array_max)
        frames: list[list[Element]] = []
        i = 0
        while i < len(elements):
            if mode == "always" or rng.random() < 0.3:
                size = rng.randint(1 if mode == "always" else 2, max(k, 2))
            else:
                size = 1
            frames.append(elements[i : i + size])
            i += size
        return frames

    def _event(self, token: str, ts: str, custom: bool) -> Element:
        m = self.universe.by_token[token]
        outcome = m.outcome_of(token)
        r = self.rng.random()
        if r < 0.6:
            return self._price_change(m, outcome, ts)
        if r < 0.75:
            return self._trade(m, outcome, ts)
        if r < 0.88 and custom:
            return (messages.best_bid_ask(m, outcome, ts), spec.BEST_BID_ASK, token, m.condition_id)
        if r < 0.99:
            return (messages.book(m, outcome, ts, self._next()), spec.BOOK, token, m.condition_id)
        old = m.tick
        m.tick = 1 if old == 10 else 10
        data = messages.tick_size_change(m, outcome, old, m.tick, ts)
        return (data, spec.TICK_SIZE_CHANGE, token, m.condition_id)

    def _price_change(self, m: SimMarket, outcome: int, ts: str) -> Element:
        rng = self.rng
        side = "BUY" if rng.random() < 0.5 else "SELL"
        book = m.bids if side == "BUY" else m.asks
        best_bid, best_ask = m.best_bid(), m.best_ask()
        if book and rng.random() < 0.3:
            price = rng.choice(list(book))
            size = 0 if rng.random() < 0.5 else rng.randrange(100, 500_000)
        else:
            lo, hi = (max(m.tick, best_ask - 20 * m.tick), best_ask - m.tick) if side == "BUY" else (
                best_bid + m.tick, min(spec.PRICE_UNITS - m.tick, best_bid + 20 * m.tick))
            if lo > hi:
                lo, hi = hi, lo
            price = max(m.tick, min(spec.PRICE_UNITS - m.tick, rng.randint(lo, hi) // m.tick * m.tick))
            if (side == "BUY" and price >= best_ask) or (side == "SELL" and price <= best_bid):
                price = best_bid if side == "BUY" else best_ask
            size = rng.randrange(100, 500_000)
        if size:
            book[price] = size
        else:
            book.pop(price, None)
        seq = self._next()
        shape = self.options.price_change_shape
        if shape == "legacy" or (shape == "mixed" and rng.random() < 0.5):
            # Old shape: one token per message; report the level as the subscriber's token sees it.
            if outcome == 0:
                data = messages.price_change_legacy(m, 0, price, side, size, ts, seq)
            else:
                mirror_side = "SELL" if side == "BUY" else "BUY"
                data = messages.price_change_legacy(m, 1, spec.PRICE_UNITS - price, mirror_side, size, ts, seq)
        else:
            data = messages.price_change(m, price, side, size, ts, seq, first=outcome)
        return (data, spec.PRICE_CHANGE, m.token_ids[outcome], m.condition_id)

    def _trade(self, m: SimMarket, outcome: int, ts: str) -> Element:
        rng = self.rng
        side = "BUY" if rng.random() < 0.5 else "SELL"
        price = m.best_ask() if side == "BUY" else m.best_bid()
        price = min(max(price, m.tick), spec.PRICE_UNITS - m.tick)
        size = rng.randrange(1, 10_000)
        m.last_price = price
        m.volume += size
        if outcome == 1:
            price = spec.PRICE_UNITS - price
            side = "SELL" if side == "BUY" else "BUY"
        data = messages.last_trade_price(m, outcome, price, side, size, ts, self._next())
        return (data, spec.LAST_TRADE_PRICE, m.token_ids[outcome], m.condition_id)

    # --- flood ---------------------------------------------------------------------------------

    def flood(self, tokens: list[str], n: int, subs_version: int) -> list[list[Element]]:
        """``n`` pre-rendered ``price_change`` events, ``array_max`` to a frame (1 when arrays are off)."""
        key = (subs_version, self.universe.version)
        if key != self._flood_key:
            seen: dict[str, SimMarket] = {}
            for t in tokens:
                m = self.universe.by_token.get(t)
                if m is not None and m.trading:
                    seen.setdefault(m.condition_id, m)
            self._flood = [messages.FloodTemplate(m) for m in seen.values()]
            self._flood_key = key
            self._flood_pos = 0
        templates = self._flood
        if not templates:
            return []
        k = 1 if self.options.array_frames == "never" else max(1, self.options.array_max)
        n = max(k, n // k * k)  # whole frames only
        ts = str(time.time_ns() // 1_000_000).encode()
        count = len(templates)
        pos, seq = self._flood_pos, self.seq
        elements: list[Element] = []
        for _ in range(n):
            tpl = templates[pos]
            pos = pos + 1 if pos + 1 < count else 0
            seq += 1
            elements.append((tpl.render(seq, ts), spec.PRICE_CHANGE, tpl.token, tpl.market))
        self._flood_pos, self.seq = pos, seq
        return [elements[i : i + k] for i in range(0, n, k)]
