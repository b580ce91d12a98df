"""The Kraken spot v2 simulator over real sockets, with a plain `websockets` client (protocols §C1).

The simulator computes its checksums from integer books of its own; the client verifies them with
the connector's decimal-text book (:mod:`ingest_daemons.adapters.kraken_book`). Agreement at every
depth cross-checks two independent readings of the checksum rules; the injected faults must be found.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from ingest_daemons.adapters.kraken import DATA, IntegrityFinding, SpotIntegrity, classify, spot_ping, spot_subscribe
from ingest_daemons.sim.kraken import KrakenSimulator
from ingest_daemons.sim.kraken.universe import V2_ASSET_NAMES
from tests.fixtures.kraken import KrakenSimFactory

DEADLINE_S = 10.0


async def connect(sim: KrakenSimulator) -> ClientConnection:
    return await websockets.connect(sim.ws_url, compression=None, max_size=None, max_queue=None)


async def recv_until(
    ws: ClientConnection, pred: Callable[[bytes], bool], deadline_s: float = DEADLINE_S
) -> list[bytes]:
    """Frames received until (and including) the first one for which ``pred(frame)`` holds."""
    out: list[bytes] = []
    async with asyncio.timeout(deadline_s):
        while True:
            frame = await ws.recv(decode=False)
            out.append(frame)
            if pred(frame):
                return out


async def ping_barrier(ws: ClientConnection, req_id: int) -> list[bytes]:
    """Frames before the pong to a ping sent now: the server answers commands in order."""
    await ws.send(spot_ping(req_id).decode())
    frames = await recv_until(ws, lambda f: b'"pong"' in f and orjson.loads(f).get("req_id") == req_id)
    return frames[:-1]


class Checker:
    """Feeds every frame to the connector's pure checks; collects findings and counts verified books."""

    def __init__(self, depth: int) -> None:
        self.integrity = SpotIntegrity(depth)
        self.findings: list[IntegrityFinding] = []
        self.books = 0
        self.types: Counter[str] = Counter()

    def feed(self, frame: bytes) -> None:
        m = classify(frame)
        self.types[m.msg_type] += 1
        f = self.integrity.check(frame, m)
        if f is not None:
            self.findings.append(f)
        if m.kind == DATA and m.msg_type == "book":
            self.books += 1

    def until(self, done: Callable[[], bool]) -> Callable[[bytes], bool]:
        """A ``recv_until`` predicate: feed the frame, then ask ``done()``."""

        def pred(frame: bytes) -> bool:
            self.feed(frame)
            return done()

        return pred


async def test_connect_status_then_one_ack_per_symbol_and_a_refusal_that_keeps_the_socket(
    kraken_sim: KrakenSimFactory,
) -> None:
    sim = await kraken_sim("spot", rate=0)
    sim.pause()
    async with await connect(sim) as ws:
        first = orjson.loads(await ws.recv(decode=False))
        assert first["channel"] == "status" and first["data"][0]["system"] == "online"
        assert first["data"][0]["connection_id"] > 2**53  # §C1: beyond a double's exact range
        await ws.send(spot_subscribe("ticker", ["BTC/USD", "NOPE/USD", "ETH/USD"], req_id=7).decode())
        frames = await ping_barrier(ws, 8)
        replies = [orjson.loads(f) for f in frames if b'"method"' in f]
        assert [(r["success"], r.get("result", r).get("symbol"), r["req_id"]) for r in replies] == [
            (True, "BTC/USD", 7), (False, "NOPE/USD", 7), (True, "ETH/USD", 7)
        ]
        assert replies[1]["error"] == "Currency pair not supported NOPE/USD"
        assert replies[0]["result"] == {"channel": "ticker", "snapshot": True, "event_trigger": "trades",
                                        "symbol": "BTC/USD"}
        snapshots = [orjson.loads(f) for f in frames if f.startswith(b'{"channel":"ticker"')]
        assert sorted(s["data"][0]["symbol"] for s in snapshots) == ["BTC/USD", "ETH/USD"]
        assert all(s["type"] == "snapshot" for s in snapshots)
        # Unsubscribe: one ack per symbol, an error for one not subscribed.
        await ws.send(orjson.dumps({"method": "unsubscribe", "params": {"channel": "ticker",
                                    "symbol": ["BTC/USD", "SOL/USD"]}, "req_id": 9}).decode())
        replies = [orjson.loads(f) for f in await ping_barrier(ws, 10) if b'"method"' in f]
        assert [(r["method"], r["success"]) for r in replies] == [("unsubscribe", True), ("unsubscribe", False)]
        assert sim.subscriptions() == {1: {"ticker": ["ETH/USD"]}}


@pytest.mark.parametrize("depth", [10, 25, 100, 500, 1000])
async def test_every_checksum_the_simulator_sends_verifies_with_the_connector_book(
    kraken_sim: KrakenSimFactory, depth: int
) -> None:
    sim = await kraken_sim("spot", rate=3000)
    checker = Checker(depth)
    async with await connect(sim) as ws:
        await ws.send(spot_subscribe("book", ["BTC/USD", "XRP/USD", "DOGE/USD"], depth=depth, req_id=1).decode())
        snapshots: dict[str, dict[str, Any]] = {}

        def enough(frame: bytes) -> bool:
            checker.feed(frame)
            if b'"type":"snapshot"' in frame:
                d = orjson.loads(frame)["data"][0]
                snapshots[d["symbol"]] = d
            return checker.books >= 1500

        await recv_until(ws, enough, deadline_s=30)
    assert checker.findings == []
    # The snapshot holds exactly the subscribed depth; the simulator's book is deeper than 1000.
    assert {s: (len(d["bids"]), len(d["asks"])) for s, d in snapshots.items()} == {
        s: (depth, depth) for s in ("BTC/USD", "XRP/USD", "DOGE/USD")
    }
    # Decimal text as Kraken writes it: fixed precision with trailing zeros kept.
    assert any(b'"qty":0.' in f.data and b'0,' in f.data for f in sim.sent_frames if f.msg_type == "book")
    for sym in ("BTC/USD", "XRP/USD", "DOGE/USD"):
        book = checker.integrity.books.book(sym)
        assert book is not None and len(book.bids) == depth and len(book.asks) == depth


async def test_book_cycle_mode_loops_pre_made_updates_that_still_verify(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("spot", rate=0, book_cycle=150)
    checker = Checker(25)
    async with await connect(sim) as ws:
        await ws.send(spot_subscribe("book", ["BTC/USD", "SOL/USD"], req_id=1).decode())
        await recv_until(ws, checker.until(lambda: checker.books >= 1000), deadline_s=30)
        assert checker.findings == []
        # Several passes, each after the first opening with the snapshot again.
        assert sum(1 for f in sim.sent_frames if b'"type":"snapshot"' in f.data) >= 6
        sim.bad_checksum("SOL/USD")
        await recv_until(ws, checker.until(lambda: bool(checker.findings)))
    f = checker.findings[0]
    assert (f.reason, f.symbol) == ("checksum", "SOL/USD")
    assert [x.fault for x in sim.sent_frames if x.fault] == ["checksum"]


async def test_levels_pushed_out_of_range_are_never_deleted(kraken_sim: KrakenSimFactory) -> None:
    """§C1: the client must truncate itself. Without truncation the simulator's updates stop verifying."""
    sim = await kraken_sim("spot", rate=3000)
    truncating, hoarding = Checker(10), Checker(10)
    async with await connect(sim) as ws:
        await ws.send(spot_subscribe("book", ["BTC/USD"], depth=10).decode())

        def enough(frame: bytes) -> bool:
            truncating.feed(frame)
            book = hoarding.integrity.books.book("BTC/USD")
            if book is not None:
                book.depth = 1000  # a client that forgets to truncate at 10
            hoarding.feed(frame)
            return truncating.books >= 600

        await recv_until(ws, enough, deadline_s=30)
    assert truncating.findings == []
    assert any(f.reason == "checksum" for f in hoarding.findings)


async def test_wrong_checksum_fault_is_detected_and_a_resubscribe_verifies_again(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("spot", rate=1000)
    checker = Checker(25)
    async with await connect(sim) as ws:
        await ws.send(spot_subscribe("book", ["BTC/USD", "ETH/USD"], req_id=1).decode())
        await recv_until(ws, checker.until(lambda: checker.books >= 50))
        sim.bad_checksum("ETH/USD")
        await recv_until(ws, checker.until(lambda: bool(checker.findings)))
        f = checker.findings[0]
        assert (f.reason, f.symbol, f.channel, f.resync) == ("checksum", "ETH/USD", "book", True)
        faulty = [x for x in sim.sent_frames if x.fault == "checksum"]
        assert len(faulty) == 1 and orjson.loads(faulty[0].data)["data"][0]["checksum"] == f.expected
        assert f.expected != f.got
        # The resync the finding asks for: unsubscribe + subscribe brings a snapshot that verifies.
        await ws.send(orjson.dumps({"method": "unsubscribe", "params": {"channel": "book", "symbol": ["ETH/USD"],
                                    "depth": 25}}).decode())
        await ws.send(spot_subscribe("book", ["ETH/USD"], req_id=2).decode())
        before = checker.books
        await recv_until(ws, checker.until(lambda: checker.books >= before + 200))
    assert len(checker.findings) == 1
    book = checker.integrity.books.book("ETH/USD")
    assert book is not None and len(book.bids) == 25


async def test_trades_are_sequential_and_a_skipped_trade_id_is_detected(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("spot", rate=2000)
    checker = Checker(25)
    async with await connect(sim) as ws:
        await ws.send(spot_subscribe("trade", ["BTC/USD", "SOL/USD"], snapshot=True, req_id=1).decode())
        await recv_until(ws, checker.until(lambda: checker.types["trade"] >= 200))
        assert checker.findings == []
        sim.skip_trade_id("SOL/USD", skip=3)
        await recv_until(ws, checker.until(lambda: bool(checker.findings)))
    f = checker.findings[0]
    assert (f.reason, f.symbol, (f.got or 0) - (f.expected or 0), f.resync) == ("trade_id", "SOL/USD", 3, False)
    assert len([x for x in sim.sent_frames if x.fault == "trade_id"]) == 1


async def test_heartbeats_ping_pong_and_maintenance(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("spot", rate=200, heartbeat_interval=0.1)
    async with await connect(sim) as ws:
        await recv_until(ws, lambda f: b'"status"' in f)
        await ws.send(spot_subscribe("ticker", ["BTC/USD"]).decode())
        await recv_until(ws, lambda f: f == b'{"channel":"heartbeat"}')
        await ws.send(spot_ping(42).decode())
        pong = orjson.loads((await recv_until(ws, lambda f: b'"pong"' in f))[-1])
        assert pong["req_id"] == 42 and "time_in" in pong and "time_out" in pong
        sim.maintenance(0.5)
        frames = await recv_until(ws, lambda f: b'"system":"online"' in f)
        statuses = [orjson.loads(f)["data"][0]["system"] for f in frames if b'"channel":"status"' in f]
        assert statuses == ["maintenance", "online"]
        i = next(n for n, f in enumerate(frames) if b'"maintenance"' in f)
        assert not any(b'"channel":"ticker"' in f for f in frames[i + 1 :])  # no data while in maintenance
        await recv_until(ws, lambda f: b'"channel":"ticker"' in f)  # and data again once online
        # Heartbeats stop on request while data flows; pings go unanswered on request.
        sim.stop_heartbeats()
        await ping_barrier(ws, 43)  # a heartbeat queued before the stop arrives before this pong
        sim.stop_answering_pings()
        await ws.send(spot_ping(44).decode())
        # Frames received over five heartbeat intervals: data, but no heartbeat and no pong.
        seen: list[bytes] = []
        loop = asyncio.get_running_loop()
        until = loop.time() + 0.5
        while loop.time() < until:
            try:
                async with asyncio.timeout(until - loop.time()):
                    seen.append(await ws.recv(decode=False))
            except TimeoutError:
                break
        assert any(f.startswith(b'{"channel":"ticker"') for f in seen)
        assert not any(f == b'{"channel":"heartbeat"}' or b'"pong"' in f for f in seen)


async def test_replies_and_status_keep_flowing_under_a_flood(kraken_sim: KrakenSimFactory) -> None:
    """Control frames never wait behind the data bound: pongs and a maintenance status arrive while the
    simulator floods a client that reads slowly."""
    sim = await kraken_sim("spot", rate=0)
    checker = Checker(10)
    async with await connect(sim) as ws:
        await ws.send(spot_subscribe("book", ["BTC/USD", "ETH/USD"], depth=10).decode())
        await recv_until(ws, checker.until(lambda: checker.books >= 200))
        for i in range(20):
            await ws.send(spot_ping(100 + i).decode())
        sim.maintenance(0.2)
        frames = await recv_until(ws, checker.until(lambda: checker.types["status"] >= 3), deadline_s=30)
        pongs = sorted(orjson.loads(f)["req_id"] for f in frames if b'"pong"' in f)
        assert pongs == list(range(100, 120))
        i = next(n for n, f in enumerate(frames) if b'"maintenance"' in f)
        j = next(n for n, f in enumerate(frames) if b'"system":"online"' in f and n > i)
        assert not any(f.startswith(b'{"channel":"book"') for f in frames[i + 1 : j])
    assert checker.findings == []


async def test_close_stall_and_malformed_faults(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("spot", rate=500)
    async with await connect(sim) as ws:
        await ws.send(spot_subscribe("book", ["BTC/USD"]).decode())
        await recv_until(ws, lambda f: b'"type":"update"' in f)
        sim.send_malformed()
        await recv_until(ws, lambda f: classify(f).kind == "unparsed")
        sim.stall(0.5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ping_barrier(ws, 1)
        assert loop.time() - t0 >= 0.4  # the pong waited behind the stall
        await sim.close_connections(code=1011)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv_until(ws, lambda f: False)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    # abort: TCP dropped without a close frame.
    async with await connect(sim) as ws:
        await recv_until(ws, lambda f: b'"status"' in f)
        await sim.close_connections(abort=True)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv_until(ws, lambda f: False)
        assert info.value.rcvd is None


async def test_rest_asset_pairs_match_the_socket_universe(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("spot", pairs=9)
    async with aiohttp.ClientSession() as http, http.get(sim.rest_url + "/0/public/AssetPairs") as r:
        body = await r.json()
    assert body["error"] == []
    pairs = body["result"]
    assert pairs["XXBTZUSD"]["wsname"] == "XBT/USD"  # REST keeps the legacy names (§D8)

    def v2(wsname: str) -> str:
        return "/".join(V2_ASSET_NAMES.get(a, a) for a in wsname.split("/"))

    assert sorted(v2(p["wsname"]) for p in pairs.values()) == sorted(sim.symbols)
    assert len(sim.symbols) == 9
    # Every listed pair subscribes; its book's text carries the listed decimals.
    async with await connect(sim) as ws:
        await ws.send(spot_subscribe("book", sim.symbols, depth=10, req_id=1).decode())
        acks: list[dict[str, Any]] = []

        def collect(frame: bytes) -> bool:
            if b'"method"' in frame:
                acks.append(orjson.loads(frame))
            return len(acks) == 9

        await recv_until(ws, collect)
    assert all(a["success"] for a in acks)
    assert sorted(a["result"]["symbol"] for a in acks) == sorted(sim.symbols)


def test_the_simulator_never_imports_the_venue_code() -> None:
    """The cross-check above is worth something only if the two sides share no protocol code."""
    import ast
    from pathlib import Path

    import ingest_daemons.sim.kraken as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.startswith(("ingest_daemons.adapters", "ingest_daemons.connector")) for n in names), path
