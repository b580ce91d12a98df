"""One spot WebSocket v2 connection (protocols §C1): commands, acks, status, heartbeats, data.

Per symbol the connection keeps a :class:`SimBook` deeper than the largest depth, a ``trade_id``
counter and the subscribed depth. Faults armed on the connection apply to the next matching frame:
a wrong checksum on a book update, a ``trade_id`` jump on a trade.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from ingest_daemons.sim.kraken.book import ASK, BID, Change, SimBook
from ingest_daemons.sim.kraken.connection import Connection, SimState, log
from ingest_daemons.sim.kraken.universe import SpotPair, text

DEPTHS: Final = (10, 25, 100, 500, 1000)
DEFAULT_DEPTH: Final = 10  # Kraken's own default when a subscribe names none
BOOK_LEVELS: Final = 1040  # per side, so depth 1000 has levels to move into view
CHANNELS: Final = ("ticker", "trade", "book")
API_VERSION: Final = "v2"
_CHECKSUM: Final = re.compile(rb'"checksum":([0-9]+)')
ENGINE_VERSION: Final = "2.0.10"


def rfc3339(ns: int | None = None) -> str:
    t = datetime.now(UTC) if ns is None else datetime.fromtimestamp(ns / 1e9, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status_frame(system: str, connection_id: int) -> bytes:
    return orjson.dumps(
        {
            "channel": "status",
            "type": "update",
            "data": [
                {
                    "version": ENGINE_VERSION,
                    "system": system,
                    "api_version": API_VERSION,
                    "connection_id": connection_id,
                }
            ],
        }
    )


@dataclass(slots=True)
class SymbolState:
    pair: SpotPair
    book: SimBook
    next_trade_id: int
    depth: int = 0  # subscribed book depth, 0 = no book subscription


class SpotConnection(Connection):
    def __init__(
        self,
        conn_id: int,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        state: SimState,
        seed: int,
        pairs: dict[str, SpotPair],
    ) -> None:
        super().__init__(conn_id, ws, transport, state, seed)
        self.pairs = pairs
        self.symbols: dict[str, SymbolState] = {}
        self.subs: dict[str, set[str]] = {c: set() for c in CHANNELS}  # channel -> symbols
        self.connection_id = (1 << 63) | self.rng.getrandbits(62)  # beyond 2^53 (§C1)
        self.bad_checksums: list[str | None] = []  # armed faults: symbol, or None for any
        self.trade_id_skips: list[tuple[str | None, int]] = []
        self.subscribed_once = False
        self.cycles: dict[str, list[bytes]] = {}  # book_cycle mode: per symbol, snapshot + updates
        self.cycle_pos: dict[str, int] = {}
        self._choices: list[tuple[str, str]] | None = None  # (channel, symbol) to draw events from

    # --- inbound -------------------------------------------------------------------------------

    def on_connect(self) -> None:
        self.send(status_frame("online", self.connection_id), "control", "status")

    def on_text(self, data: bytes) -> None:
        time_in = rfc3339()
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._error(None, "EGeneral:Invalid arguments", None, time_in)
            return
        self.state.commands.append((self.conn_id, body))
        if not isinstance(body, dict):
            self._error(None, "EGeneral:Invalid arguments", None, time_in)
            return
        method, req_id = body.get("method"), body.get("req_id")
        if method == "ping":
            self.pings += 1
            if self.state.answer_pings:
                reply = {"method": "pong", "req_id": req_id, "time_in": time_in, "time_out": rfc3339()}
                if req_id is None:
                    del reply["req_id"]
                self.send(orjson.dumps(reply), "control", "pong")
            return
        if method not in ("subscribe", "unsubscribe"):
            self._error(method, "Method not found", req_id, time_in)
            return
        params = body.get("params")
        if not isinstance(params, dict) or params.get("channel") not in CHANNELS:
            self._error(method, "Channel not supported", req_id, time_in)
            return
        symbols = params.get("symbol")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            self._error(method, "EGeneral:Invalid arguments:symbol", req_id, time_in)
            return
        channel = params["channel"]
        depth = params.get("depth", DEFAULT_DEPTH)
        if channel == "book" and depth not in DEPTHS:
            self._error(method, "EGeneral:Invalid arguments:depth", req_id, time_in)
            return
        if method == "subscribe":
            for s in symbols:
                self._subscribe_one(channel, s, depth, params, req_id, time_in)
        else:
            for s in symbols:
                self._unsubscribe_one(channel, s, depth, req_id, time_in)
        self._choices = None
        self.state.on_change()
        self.wake()

    def _error(self, method: Any, error: str, req_id: Any, time_in: str, symbol: str | None = None) -> None:
        body: dict[str, Any] = {"error": error, "method": method, "success": False}
        if symbol is not None:
            body["symbol"] = symbol
        body["time_in"], body["time_out"] = time_in, rfc3339()
        if req_id is not None:
            body["req_id"] = req_id
        self.send(orjson.dumps(body), "control", str(method or "error"), symbol)

    def _ack(self, method: str, result: dict[str, Any], req_id: Any, time_in: str) -> None:
        body: dict[str, Any] = {"method": method, "result": result, "success": True, "time_in": time_in,
                                "time_out": rfc3339()}
        if req_id is not None:
            body["req_id"] = req_id
        self.send(orjson.dumps(body), "control", method, result["symbol"])

    def _state(self, symbol: str) -> SymbolState:
        st = self.symbols.get(symbol)
        if st is None:
            pair = self.pairs[symbol]
            book = SimBook(self.rng, pair.mid, BOOK_LEVELS, 10**pair.lot_decimals)
            st = self.symbols[symbol] = SymbolState(pair, book, self.rng.randrange(1_000_000, 90_000_000))
        return st

    def _subscribe_one(
        self, channel: str, symbol: str, depth: int, params: dict[str, Any], req_id: Any, time_in: str
    ) -> None:
        if symbol not in self.pairs:
            self._error("subscribe", f"Currency pair not supported {symbol}", req_id, time_in, symbol)
            return
        if symbol in self.subs[channel]:
            self._error("subscribe", "Already subscribed", req_id, time_in, symbol)
            return
        st = self._state(symbol)
        default_snapshot = channel != "trade"
        snapshot = bool(params.get("snapshot", default_snapshot))
        result: dict[str, Any] = {"channel": channel}
        if channel == "book":
            result["depth"] = depth
            st.depth = depth
            self.cycles.pop(symbol, None)
        result["snapshot"] = snapshot
        if channel == "ticker":
            result["event_trigger"] = params.get("event_trigger", "trades")
        result["symbol"] = symbol
        self._ack("subscribe", result, req_id, time_in)
        self.subs[channel].add(symbol)
        self.subscribed_once = True
        if not snapshot:
            return
        if channel == "book":
            self.send(self._book_frame(st, "snapshot", self._snapshot_levels(st), st.book.checksum()),
                      "data", "book", symbol)
        elif channel == "ticker":
            self.send(self._ticker_frame(st, "snapshot"), "data", "ticker", symbol)
        else:
            trades = [self._next_trade(st) for _ in range(5)]
            self.send(self._trade_frame(st, "snapshot", trades), "data", "trade", symbol)

    def _unsubscribe_one(self, channel: str, symbol: str, depth: int, req_id: Any, time_in: str) -> None:
        if symbol not in self.subs[channel]:
            self._error("unsubscribe", "Subscription Not Found", req_id, time_in, symbol)
            return
        self.subs[channel].discard(symbol)
        result: dict[str, Any] = {"channel": channel}
        if channel == "book":
            result["depth"] = self.symbols[symbol].depth
            self.symbols[symbol].depth = 0
            self.cycles.pop(symbol, None)
        result["symbol"] = symbol
        self._ack("unsubscribe", result, req_id, time_in)

    # --- frames --------------------------------------------------------------------------------

    def _snapshot_levels(self, st: SymbolState) -> list[Change]:
        book = st.book
        return [(BID, p, q) for p, q in book.top(BID, st.depth)] + [(ASK, p, q) for p, q in book.top(ASK, st.depth)]

    def _book_frame(self, st: SymbolState, kind: str, changes: list[Change], checksum: int) -> bytes:
        # Numbers are written as fixed-point text (§C1: the text carries the precision).
        pd, ld = st.pair.price_decimals, st.pair.lot_decimals
        bids = ",".join(f'{{"price":{text(p, pd)},"qty":{text(q, ld)}}}' for s, p, q in changes if s == BID)
        asks = ",".join(f'{{"price":{text(p, pd)},"qty":{text(q, ld)}}}' for s, p, q in changes if s == ASK)
        return (
            f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{st.pair.symbol}","bids":[{bids}],'
            f'"asks":[{asks}],"checksum":{checksum},"timestamp":"{rfc3339()}"}}]}}'
        ).encode()

    def _ticker_frame(self, st: SymbolState, kind: str) -> bytes:
        pd, ld = st.pair.price_decimals, st.pair.lot_decimals
        (bid, bq), (ask, aq) = st.book.top(BID, 1)[0], st.book.top(ASK, 1)[0]
        last = (bid + ask) // 2
        vol = 10**ld * 1234 + self.rng.randrange(10**ld)
        return (
            f'{{"channel":"ticker","type":"{kind}","data":[{{"symbol":"{st.pair.symbol}",'
            f'"bid":{text(bid, pd)},"bid_qty":{text(bq, ld)},"ask":{text(ask, pd)},"ask_qty":{text(aq, ld)},'
            f'"last":{text(last, pd)},"volume":{text(vol, ld)},"vwap":{text(last, pd)},'
            f'"low":{text(bid - bid // 50, pd)},"high":{text(ask + ask // 50, pd)},"change":{text(ask - bid, pd)},'
            f'"change_pct":0.01,"timestamp":"{rfc3339()}"}}]}}'
        ).encode()

    def _next_trade(self, st: SymbolState) -> tuple[int, str, int, int]:
        side, px, qty = st.book.trade()
        tid = st.next_trade_id
        st.next_trade_id += 1
        return tid, side, px, qty

    def _trade_frame(self, st: SymbolState, kind: str, trades: list[tuple[int, str, int, int]]) -> bytes:
        pd, ld = st.pair.price_decimals, st.pair.lot_decimals
        ts = rfc3339()
        items = ",".join(
            f'{{"symbol":"{st.pair.symbol}","side":"{side}","price":{text(px, pd)},"qty":{text(q, ld)},'
            f'"ord_type":"{"market" if tid % 3 == 0 else "limit"}","trade_id":{tid},"timestamp":"{ts}"}}'
            for tid, side, px, q in trades
        )
        return f'{{"channel":"trade","type":"{kind}","data":[{items}]}}'.encode()

    # --- generation ----------------------------------------------------------------------------

    def has_data_subscriptions(self) -> bool:
        return any(self.subs.values())

    async def generate_one(self) -> None:
        choices = self._choices
        if choices is None:
            choices = self._choices = [(c, s) for c in CHANNELS for s in sorted(self.subs[c])]
        if not choices:
            return
        channel, symbol = self.rng.choice(choices)
        st = self.symbols[symbol]
        if channel == "book":
            await self._book_update(st)
        elif channel == "trade":
            await self._trade(st)
        else:
            await self.send_data(self._ticker_frame(st, "update"), "ticker", symbol)

    def _cycle(self, st: SymbolState) -> list[bytes]:
        """``book_cycle`` mode: the snapshot the client holds now, then that many updates, made once.

        Replayed in a loop, each pass after the first starts with the snapshot again, so every
        frame still verifies; only the timestamps repeat. It makes a flood cost a queue and a write
        per frame instead of a book change and its formatting."""
        cycle = self.cycles.get(st.pair.symbol)
        if cycle is None:
            frames = [self._book_frame(st, "snapshot", self._snapshot_levels(st), st.book.checksum())]
            while len(frames) <= self.state.book_cycle:
                changes: list[Change] = []
                for _ in range(self.rng.randint(1, 3)):
                    changes += st.book.random_change(st.depth)
                if changes:
                    frames.append(self._book_frame(st, "update", changes, st.book.checksum()))
            cycle = self.cycles[st.pair.symbol] = frames
            self.cycle_pos[st.pair.symbol] = 1  # the client already holds the snapshot
        return cycle

    async def _book_update(self, st: SymbolState) -> None:
        if self.state.book_cycle > 0:
            await self._book_update_from_cycle(st)
            return
        changes: list[Change] = []
        for _ in range(self.rng.randint(1, 3)):
            changes += st.book.random_change(st.depth)
        if not changes:
            return
        checksum = st.book.checksum()
        fault = None
        sym = st.pair.symbol
        for i, target in enumerate(self.bad_checksums):
            if target is None or target == sym:
                del self.bad_checksums[i]
                checksum ^= 0x5A5A5A5A
                fault = "checksum"
                log.info("fault_bad_checksum", conn=self.conn_id, symbol=sym)
                break
        await self.send_data(self._book_frame(st, "update", changes, checksum), "book", sym, fault)

    async def _book_update_from_cycle(self, st: SymbolState) -> None:
        sym = st.pair.symbol
        frames = self._cycle(st)
        pos = self.cycle_pos[sym]
        frame = frames[pos]
        self.cycle_pos[sym] = (pos + 1) % len(frames)
        fault = None
        for i, target in enumerate(self.bad_checksums):
            if pos > 0 and (target is None or target == sym):
                del self.bad_checksums[i]
                frame = _CHECKSUM.sub(lambda m: b'"checksum":%d' % (int(m.group(1)) ^ 0x5A5A5A5A), frame, count=1)
                fault = "checksum"
                break
        await self.send_data(frame, "book", sym, fault)

    async def _trade(self, st: SymbolState) -> None:
        fault = None
        sym = st.pair.symbol
        for i, (target, skip) in enumerate(self.trade_id_skips):
            if target is None or target == sym:
                del self.trade_id_skips[i]
                st.next_trade_id += skip
                fault = "trade_id"
                log.info("fault_trade_id_skip", conn=self.conn_id, symbol=sym, skipped=skip)
                break
        trades = [self._next_trade(st) for _ in range(self.rng.randint(1, 3))]
        await self.send_data(self._trade_frame(st, "update", trades), "trade", sym, fault)

    async def run_heartbeats(self) -> None:
        """§C1: ``{"channel":"heartbeat"}`` about once a second after the first subscription."""
        while not self.ws.closed:
            await asyncio.sleep(self.state.heartbeat_interval)
            if self.subscribed_once and self.state.heartbeats:
                self.send(b'{"channel":"heartbeat"}', "control", "heartbeat")

    def status(self, system: str) -> None:
        self.send(status_frame(system, self.connection_id), "control", "status")
