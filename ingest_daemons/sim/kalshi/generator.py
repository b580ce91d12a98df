"""Synthetic market data for one connection, and the replay feed that can replace it.

The generator walks a schedule of (channel, market) pairs round-robin, so ``rate`` messages per
second are spread evenly over everything the connection subscribed to. It keeps the data
self-consistent where a consumer could check it: ``seq`` is +1 per data message on each sid, every
orderbook delta applies cleanly to the book this connection was last sent (no negative levels, never
crossed), volumes only grow, and only ``active`` markets trade.

Lifecycle traffic it generates on its own is non-destructive (``close_date_updated`` re-announcing a
market's close time, ``event_lifecycle`` re-announcing an event); state changes (``created``,
``deactivated``, ``determined``, ...) come from the simulator's ``add_market`` /
``set_market_status``, which also change what REST reports.
"""

from __future__ import annotations

import random
from itertools import zip_longest
from pathlib import Path
from typing import Final

import orjson

from ingest_daemons.sim.kalshi import messages, spec
from ingest_daemons.sim.kalshi.commands import Subscription
from ingest_daemons.sim.kalshi.frames import Out
from ingest_daemons.sim.kalshi.universe import SimMarket, Universe

KIND_TICKER: Final = 0
KIND_TRADE: Final = 1
KIND_BOOK: Final = 2
KIND_LIFECYCLE: Final = 3
_KIND_OF: Final = {
    spec.CH_TICKER: KIND_TICKER,
    spec.CH_TRADE: KIND_TRADE,
    spec.CH_ORDERBOOK: KIND_BOOK,
    spec.CH_LIFECYCLE: KIND_LIFECYCLE,
}

Pair = tuple[int, Subscription, SimMarket | None]


def build_schedule(subs: list[Subscription], universe: Universe) -> list[Pair]:
    """All (kind, subscription, market) pairs that produce data, interleaved across subscriptions."""
    per_sub: list[list[Pair]] = []
    for sub in subs:
        kind = _KIND_OF.get(sub.channel)
        if kind is None:
            continue  # accepted but silent channel (private, multivariate, index values)
        if kind == KIND_LIFECYCLE:
            per_sub.append([(kind, sub, None)])
            continue
        markets = universe.trading_markets() if sub.markets is None else sub.markets.values()
        per_sub.append([(kind, sub, m) for m in markets if m.is_trading])
    return [p for group in zip_longest(*per_sub) for p in group if p is not None]


class DataGenerator:
    """Produces data frames for a schedule. One per connection; not thread-safe (nothing here is)."""

    def __init__(self, builder: messages.FrameBuilder, universe: Universe, seed: int) -> None:
        self._builder = builder
        self._universe = universe
        self._rng = random.Random(seed)
        r = self._rng.getrandbits
        # Trade ids are UUID-shaped and unique: a random per-connection prefix plus a counter is
        # far cheaper than uuid4() per trade.
        self._trade_prefix = b"%08x-%04x-4%03x-%04x-" % (r(32), r(16), r(12), 0x8000 | r(14))
        self._trade_n = 0
        self._cursor = 0
        self._lifecycle_n = 0
        self._legacy = builder.era == "legacy"

    def produce(self, schedule: list[Pair], n: int, clock: messages.Clock) -> list[Out]:
        """The next ``n`` data frames (fewer only if ``schedule`` is empty)."""
        if not schedule:
            return []
        out: list[Out] = []
        append = out.append
        rnd = self._rng.random
        b = self._builder
        size = len(schedule)
        i = self._cursor
        for _ in range(n):
            if i >= size:
                i = 0
            kind, sub, m = schedule[i]
            i += 1
            if m is None or kind == KIND_LIFECYCLE:
                append(self._lifecycle(sub, clock))
                continue
            sid = sub.sid
            if kind == KIND_TICKER:
                r = rnd()
                if r < 0.25:
                    bid = m.yes_bid + (1 if r < 0.125 else -1)
                    if 1 <= bid < m.yes_ask:
                        m.yes_bid = bid
                elif r < 0.5:
                    ask = m.yes_ask + (1 if r < 0.375 else -1)
                    if m.yes_bid < ask <= 99:
                        m.yes_ask = ask
                data = b.ticker(
                    sid, m, clock, (1 + int(rnd() * 500)) * 100, (1 + int(rnd() * 500)) * 100,
                    (int(rnd() * 50)) * 100,
                )  # fmt: skip
                append((data, spec.CH_TICKER, "ticker", m.ticker, sid, None))
            elif kind == KIND_TRADE:
                price = m.yes_bid + int(rnd() * (m.yes_ask - m.yes_bid + 1))
                count = (1 + int(rnd() * 200)) * 100
                if not self._legacy and rnd() < 0.125:
                    count += 1 + int(rnd() * 99)  # fractional contracts exist (§A5)
                m.last_price = price
                m.volume_h += count
                m.open_interest_h += count >> 1
                self._trade_n += 1
                sub.seq += 1
                seq = sub.seq
                trade_id = b"%s%012x" % (self._trade_prefix, self._trade_n)
                data = b.trade(sid, seq, m, trade_id, price, count, rnd() < 0.5, clock)
                append((data, spec.CH_TRADE, "trade", m.ticker, sid, seq))
            else:
                book = sub.books[m.ticker]
                yes_side = rnd() < 0.5
                levels, cap = (book.yes, book.yes_cap) if yes_side else (book.no, book.no_cap)
                price = 1 + int(rnd() * cap)
                have = levels.get(price, 0)
                r = rnd()
                if have and r < 0.25:
                    delta = -have
                elif have and r < 0.5:
                    delta = -min(have, (1 + int(rnd() * 50)) * 100)
                else:
                    delta = (1 + int(rnd() * 100)) * 100
                left = have + delta
                if left:
                    levels[price] = left
                else:
                    del levels[price]
                sub.seq += 1
                seq = sub.seq
                shown = price if yes_side or not sub.use_yes_price else 100 - price
                data = b.delta(sid, seq, m, shown, delta, yes_side, clock)
                append((data, spec.CH_ORDERBOOK, "orderbook_delta", m.ticker, sid, seq))
        self._cursor = i
        return out

    def _lifecycle(self, sub: Subscription, clock: messages.Clock) -> Out:
        self._lifecycle_n += 1
        trading = self._universe.trading_markets()
        seq = sub.next_seq()
        if trading and self._lifecycle_n % 2:
            m = trading[(self._lifecycle_n // 2) % len(trading)]
            body = messages.lifecycle_msg("close_date_updated", m, clock.ts)
            data = messages.envelope("market_lifecycle_v2", sub.sid, seq, body)
            return (data, sub.channel, "market_lifecycle_v2", m.ticker, sub.sid, seq)
        events = list(self._universe.events.values())
        if not events:  # an empty universe: nothing to announce, but the seq still must advance once
            data = messages.envelope("event_lifecycle", sub.sid, seq, {})
            return (data, sub.channel, "event_lifecycle", None, sub.sid, seq)
        e = events[(self._lifecycle_n // 2) % len(events)]
        data = messages.envelope("event_lifecycle", sub.sid, seq, messages.event_lifecycle_msg(e))
        return (data, sub.channel, "event_lifecycle", None, sub.sid, seq)


def load_replay(path: str | Path) -> list[Out]:
    """Lines of a JSONL capture as frames to send verbatim (blank lines skipped).

    Each line is parsed once, only to label the recorded ``SentFrame`` (type, channel, sid, seq,
    market); the bytes sent are the line as stored, without its line ending. A line that is not a
    JSON object is still sent, labelled type ``unparsed``.
    """
    frames: list[Out] = []
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                frames.append((line, "unparsed", "unparsed", None, None, None))
                continue
            type_ = str(obj.get("type", ""))
            msg = obj.get("msg")
            ticker = msg.get("market_ticker") if isinstance(msg, dict) else None
            sid, seq = obj.get("sid"), obj.get("seq")
            frames.append(
                (
                    line,
                    spec.TYPE_TO_CHANNEL.get(type_, type_),
                    type_,
                    ticker if isinstance(ticker, str) else None,
                    sid if isinstance(sid, int) else None,
                    seq if isinstance(seq, int) else None,
                )
            )
    return frames
