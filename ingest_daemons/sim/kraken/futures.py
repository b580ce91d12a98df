"""One futures WebSocket v1 connection (protocols §C2): info, subscribe, feeds with ``seq``, heartbeat.

``seq`` counts per (feed family, product): ``book_snapshot``/``book`` share one count, trades
another. Armed faults skip the next ``seq`` of a family. A client that sends nothing (no frame, no
WebSocket ping) for ``idle_timeout`` (60 s by default) is closed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Final

import orjson
from aiohttp import web

from ingest_daemons.sim.kraken.book import ASK, BID, SimBook
from ingest_daemons.sim.kraken.connection import Connection, SimState, log
from ingest_daemons.sim.kraken.universe import FuturesInstrument, text

FEEDS: Final = ("ticker", "ticker_lite", "trade", "book")
BOOK_LEVELS: Final = 60
FULL_DEPTH: Final = 1 << 30  # the futures book is sent whole


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class FuturesConnection(Connection):
    def __init__(
        self,
        conn_id: int,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        state: SimState,
        seed: int,
        instruments: dict[str, FuturesInstrument],
    ) -> None:
        super().__init__(conn_id, ws, transport, state, seed)
        self.instruments = instruments
        # Products this connection has served: a product delisted while subscribed keeps its data until the
        # client unsubscribes it, as a spot pair does.
        self.served: dict[str, FuturesInstrument] = {}
        self.subs: dict[str, set[str]] = {f: set() for f in FEEDS}
        self.heartbeat = False
        self.books: dict[str, SimBook] = {}
        self.seq: dict[tuple[str, str], int] = {}
        self.seq_skips: list[tuple[str, str | None, int]] = []  # (family, product or None, how many)

    def on_connect(self) -> None:
        self.send(b'{"event":"info","version":1}', "control", "info")

    def _instrument(self, product: str) -> FuturesInstrument:
        inst = self.served.get(product)
        if inst is None:
            inst = self.served[product] = self.instruments[product]
        return inst

    def _book(self, product: str) -> SimBook:
        b = self.books.get(product)
        if b is None:
            inst = self._instrument(product)
            b = self.books[product] = SimBook(self.rng, inst.mid, BOOK_LEVELS, 10**inst.lot_decimals)
        return b

    def _next_seq(self, family: str, product: str) -> tuple[int, str | None]:
        key = (family, product)
        seq = self.seq.get(key)
        if seq is None:
            seq = self.rng.randrange(1_000, 5_000_000)
        fault = None
        for i, (fam, target, skip) in enumerate(self.seq_skips):
            if fam == family and (target is None or target == product):
                del self.seq_skips[i]
                seq += skip
                fault = "seq"
                log.info("fault_seq_skip", conn=self.conn_id, feed=family, product=product, skipped=skip)
                break
        seq += 1
        self.seq[key] = seq
        return seq, fault

    # --- inbound -------------------------------------------------------------------------------

    def on_text(self, data: bytes) -> None:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.send(b'{"event":"error","message":"Json Error"}', "control", "error")
            return
        self.state.commands.append((self.conn_id, body))
        if not isinstance(body, dict) or body.get("event") not in ("subscribe", "unsubscribe"):
            self.send(b'{"event":"error","message":"Json Error"}', "control", "error")
            return
        event, feed = body["event"], body.get("feed")
        if feed == "heartbeat":
            self.heartbeat = event == "subscribe"
            reply = {"event": event + "d", "feed": "heartbeat"}
            self.send(orjson.dumps(reply), "control", reply["event"])
            return
        ids = body.get("product_ids")
        if feed not in FEEDS:
            reply = {"event": event + "d_failed" if event == "subscribe" else "error", "feed": feed,
                     "message": "Invalid feed"}
            self.send(orjson.dumps(reply), "control", str(reply["event"]))
            return
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            self.send(b'{"event":"error","message":"Json Error"}', "control", "error")
            return
        wanted = [i.upper() for i in ids]  # a lowercase id is echoed uppercase (§C2)
        # An unsubscribe of a held product succeeds even when it was delisted since.
        held = self.subs[feed] if event == "unsubscribe" else set()
        good = [i for i in wanted if i in self.instruments or i in held]
        bad = [i for i in wanted if i not in good]
        if good:
            reply = {"event": event + "d", "feed": feed, "product_ids": good}
            self.send(orjson.dumps(reply), "control", event + "d", good[0] if len(good) == 1 else None)
        if bad:
            reply = {"event": event + "d_failed", "feed": feed, "product_ids": bad, "message": "Invalid product id"}
            self.send(orjson.dumps(reply), "control", event + "d_failed", bad[0] if len(bad) == 1 else None)
        for p in good:
            if event == "subscribe":
                if p not in self.subs[feed]:
                    self.subs[feed].add(p)
                    self._snapshot(feed, p)
            else:
                self.subs[feed].discard(p)
        self.state.on_change()
        self.wake()

    def _snapshot(self, feed: str, product: str) -> None:
        inst = self._instrument(product)
        if feed == "book":
            book = self._book(product)
            seq, _ = self._next_seq("book", product)
            pd, ld = inst.price_decimals, inst.lot_decimals
            bids = ",".join(f'{{"price":{text(p, pd)},"qty":{text(q, ld)}}}' for p, q in book.top(BID, FULL_DEPTH))
            asks = ",".join(f'{{"price":{text(p, pd)},"qty":{text(q, ld)}}}' for p, q in book.top(ASK, FULL_DEPTH))
            frame = (
                f'{{"feed":"book_snapshot","product_id":"{product}","timestamp":{now_ms()},"seq":{seq},'
                f'"tickSize":null,"bids":[{bids}],"asks":[{asks}]}}'
            ).encode()
            self.send(frame, "data", "book_snapshot", product)
        elif feed == "trade":
            trades = [self._trade_item(product, self._next_seq("trade", product)[0]) for _ in range(5)]
            trades.reverse()  # newest first, as live snapshots are
            frame = orjson.dumps({"feed": "trade_snapshot", "product_id": product, "trades": trades})
            self.send(frame, "data", "trade_snapshot", product)
        else:
            self.send(self._ticker(feed, product), "data", feed, product)

    # --- frames --------------------------------------------------------------------------------

    def _trade_item(self, product: str, seq: int) -> dict[str, Any]:
        inst = self._instrument(product)
        side, px, qty = self._book(product).trade()
        return {
            "feed": "trade", "product_id": product, "uid": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "side": side, "type": "fill", "seq": seq, "time": now_ms(),
            "qty": float(text(qty, inst.lot_decimals)), "price": float(text(px, inst.price_decimals)),
        }

    def _ticker(self, feed: str, product: str) -> bytes:
        inst = self._instrument(product)
        book = self._book(product)
        (bid, bq), (ask, aq) = book.top(BID, 1)[0], book.top(ASK, 1)[0]
        pd, ld = inst.price_decimals, inst.lot_decimals
        base = {"feed": feed, "product_id": product, "bid": float(text(bid, pd)), "ask": float(text(ask, pd))}
        if feed == "ticker_lite":
            base.update({"change": 0.35, "premium": 0.1, "volume": 2375190.0, "tag": "perpetual",
                         "pair": inst.rest_json()["pair"], "dtm": 0, "maturityTime": 0})
            return orjson.dumps(base)
        base = {"time": now_ms(), **base}
        base.update({
            "bid_size": float(text(bq, ld)), "ask_size": float(text(aq, ld)), "volume": 56514.738,
            "index": float(text((bid + ask) // 2, pd)), "last": float(text(bid, pd)),
            "markPrice": float(text((bid + ask) // 2, pd)), "openInterest": 17059.147, "funding_rate": -0.0054,
            "funding_rate_prediction": -0.0145, "next_funding_rate_time": now_ms() + 3_600_000, "premium": 0.0,
            "change": -1.45, "open": float(text(bid, pd)), "high": float(text(ask, pd)), "low": float(text(bid, pd)),
            "tag": "perpetual", "pair": inst.rest_json()["pair"], "suspended": False, "volumeQuote": 1.0e8,
        })
        return orjson.dumps(base)

    # --- generation ----------------------------------------------------------------------------

    def has_data_subscriptions(self) -> bool:
        return any(self.subs.values())

    async def generate_one(self) -> None:
        choices = [(f, p) for f in FEEDS for p in self.subs[f]]
        if not choices:
            return
        feed, product = self.rng.choice(choices)
        if feed == "book":
            inst = self._instrument(product)
            changes = self._book(product).random_change(FULL_DEPTH)
            for side, px, qty in changes:
                seq, fault = self._next_seq("book", product)
                frame = (
                    f'{{"feed":"book","product_id":"{product}","side":"{"buy" if side == BID else "sell"}",'
                    f'"seq":{seq},"price":{text(px, inst.price_decimals)},"qty":{text(qty, inst.lot_decimals)},'
                    f'"timestamp":{now_ms()}}}'
                ).encode()
                await self.send_data(frame, "book", product, fault)
        elif feed == "trade":
            seq, fault = self._next_seq("trade", product)
            await self.send_data(orjson.dumps(self._trade_item(product, seq)), "trade", product, fault)
        else:
            await self.send_data(self._ticker(feed, product), feed, product)

    async def run_heartbeats(self) -> None:
        while not self.ws.closed:
            await asyncio.sleep(self.state.heartbeat_interval)
            if self.heartbeat and self.state.heartbeats:
                self.send(orjson.dumps({"feed": "heartbeat", "time": now_ms()}), "control", "heartbeat")
