"""The Kraken futures v1 simulator over real sockets, with a plain `websockets` client (protocols §C2).

Sequence numbers are followed with the connector's pure tracker; the injected skips must be found and
nothing else may be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from ingest_daemons.adapters.kraken import FuturesIntegrity, IntegrityFinding, classify, futures_subscribe
from ingest_daemons.sim.kraken import KrakenSimulator
from tests.fixtures.kraken import KrakenSimFactory

DEADLINE_S = 10.0


async def connect(sim: KrakenSimulator, **kwargs: object) -> ClientConnection:
    return await websockets.connect(sim.ws_url, compression=None, max_size=None, max_queue=None, **kwargs)  # type: ignore[arg-type]


async def recv_until(
    ws: ClientConnection, pred: Callable[[bytes], bool], deadline_s: float = DEADLINE_S
) -> list[bytes]:
    out: list[bytes] = []
    async with asyncio.timeout(deadline_s):
        while True:
            frame = await ws.recv(decode=False)
            out.append(frame)
            if pred(frame):
                return out


async def test_info_subscribed_and_subscribed_failed(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("futures", rate=0)
    sim.pause()
    async with await connect(sim) as ws:
        assert orjson.loads(await ws.recv(decode=False)) == {"event": "info", "version": 1}
        await ws.send(orjson.dumps({"event": "subscribe", "feed": "book",
                                    "product_ids": ["pf_xbtusd", "PF_NOPE"]}).decode())
        frames = await recv_until(ws, lambda f: b"book_snapshot" in f)
        replies = [orjson.loads(f) for f in frames if b'"event"' in f]
        assert {"event": "subscribed", "feed": "book", "product_ids": ["PF_XBTUSD"]} in replies  # echoed upper-case
        failed = next(r for r in replies if r["event"] == "subscribed_failed")
        assert failed["product_ids"] == ["PF_NOPE"] and failed["message"] == "Invalid product id"
        snap = orjson.loads(frames[-1])
        assert snap["product_id"] == "PF_XBTUSD" and isinstance(snap["seq"], int) and snap["bids"] and snap["asks"]
        assert snap["bids"][0]["price"] < snap["asks"][0]["price"]
        await ws.send(b'{"event":"subscribe","feed":"nope","product_ids":["PF_XBTUSD"]}'.decode())
        reply = orjson.loads(await ws.recv(decode=False))
        assert reply["event"] == "subscribed_failed" and reply["message"] == "Invalid feed"
        await ws.send("not json")
        assert orjson.loads(await ws.recv(decode=False)) == {"event": "error", "message": "Json Error"}


async def test_every_feed_flows_with_per_product_seq_and_no_gap(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("futures", rate=3000)
    checks = FuturesIntegrity()
    findings: list[IntegrityFinding] = []
    types: dict[str, int] = {}

    def enough(frame: bytes) -> bool:
        m = classify(frame)
        types[m.msg_type] = types.get(m.msg_type, 0) + 1
        if (f := checks.check(m)) is not None:
            findings.append(f)
        return types.get("book", 0) >= 500 and types.get("trade", 0) >= 200

    async with await connect(sim) as ws:
        for feed in ("book", "trade", "ticker", "ticker_lite"):
            await ws.send(futures_subscribe(feed, ["PF_XBTUSD", "PI_ETHUSD"]).decode())
        await recv_until(ws, enough, deadline_s=30)
    assert findings == []
    assert types["book_snapshot"] == 2 and types["trade_snapshot"] == 2
    assert types["ticker"] > 0 and types["ticker_lite"] > 0
    trade = next(orjson.loads(f.data) for f in sim.sent_frames if f.msg_type == "trade")
    assert {"feed", "product_id", "uid", "side", "type", "seq", "time", "qty", "price"} <= set(trade)
    snapshot = next(orjson.loads(f.data) for f in sim.sent_frames if f.msg_type == "trade_snapshot")
    seqs = [t["seq"] for t in snapshot["trades"]]
    assert seqs == sorted(seqs, reverse=True)  # newest first


@pytest.mark.parametrize("feed", ["book", "trade"])
async def test_a_skipped_seq_is_detected(kraken_sim: KrakenSimFactory, feed: str) -> None:
    sim = await kraken_sim("futures", rate=2000)
    checks = FuturesIntegrity()
    findings: list[IntegrityFinding] = []

    def feed_check(frame: bytes) -> bool:
        if (f := checks.check(classify(frame))) is not None:
            findings.append(f)
        return bool(findings)

    async with await connect(sim) as ws:
        await ws.send(futures_subscribe(feed, ["PF_XBTUSD", "PF_ETHUSD"]).decode())
        frames = 0

        def warm(frame: bytes) -> bool:
            nonlocal frames
            frames += 1
            return feed_check(frame) or frames >= 150

        await recv_until(ws, warm)
        assert findings == []
        sim.skip_seq(feed, "PF_ETHUSD", skip=2)
        await recv_until(ws, feed_check)
    f = findings[0]
    assert (f.reason, f.symbol, f.channel, (f.got or 0) - (f.expected or 0), f.resync) == (
        "seq", "PF_ETHUSD", feed, 2, feed == "book"
    )
    assert len([x for x in sim.sent_frames if x.fault == "seq"]) == 1


async def test_heartbeat_feed_and_the_60_s_ping_rule(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("futures", rate=0, heartbeat_interval=0.05, idle_timeout=0.6)
    sim.pause()
    # A client that pings (WebSocket ping frames, every 0.2 s) stays; a silent one is closed.
    async with await connect(sim, ping_interval=0.2) as alive, await connect(sim, ping_interval=None) as silent:
        await alive.send(futures_subscribe("heartbeat").decode())
        frames = await recv_until(alive, lambda f: f.startswith(b'{"feed":"heartbeat"'))
        assert orjson.loads(frames[-1])["time"] > 0
        with pytest.raises(websockets.ConnectionClosed):
            await recv_until(silent, lambda f: False, deadline_s=5)
        assert silent.close_code == 1000
        # The pinging client outlives the silent one's timeout several times over.
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5
        await recv_until(alive, lambda f: loop.time() > until)
        assert sim.connection_count == 1 and sim.pings_received() > 0


async def test_rest_instruments_match_the_socket_universe(kraken_sim: KrakenSimFactory) -> None:
    sim = await kraken_sim("futures", instruments=7)
    async with aiohttp.ClientSession() as http, http.get(sim.rest_url + "/derivatives/api/v3/instruments") as r:
        body = await r.json()
    assert body["result"] == "success"
    symbols = [i["symbol"] for i in body["instruments"]]
    assert symbols == sim.symbols and len(symbols) == 7 and "PF_XBTUSD" in symbols
    async with await connect(sim) as ws:
        await ws.send(futures_subscribe("ticker", symbols).decode())
        reply = orjson.loads((await recv_until(ws, lambda f: b'"subscribed"' in f))[-1])
    assert reply["product_ids"] == symbols


async def test_a_delisted_product_keeps_its_data_until_unsubscribed(kraken_sim: KrakenSimFactory) -> None:
    """As on spot: delisting takes a product off REST and refuses new subscriptions; an open one keeps
    flowing until the client unsubscribes it, and that unsubscribe succeeds."""
    sim = await kraken_sim("futures", rate=2000)
    async with await connect(sim) as ws:
        assert b'"info"' in await ws.recv(decode=False)
        await ws.send(futures_subscribe("trade", ["PF_XBTUSD"]).decode())
        await recv_until(ws, lambda f: b'"trade_snapshot"' in f)
        sim.delist("PF_XBTUSD")
        await recv_until(ws, lambda f: b'"feed":"trade"' in f and b"PF_XBTUSD" in f)  # still flowing
        await ws.send(orjson.dumps({"event": "unsubscribe", "feed": "trade", "product_ids": ["PF_XBTUSD"]}).decode())
        frames = await recv_until(ws, lambda f: b'"event":"unsubscribe' in f)
        assert orjson.loads(frames[-1]) == {"event": "unsubscribed", "feed": "trade", "product_ids": ["PF_XBTUSD"]}
        await sim.wait_for(lambda: not any(s for subs in sim.subscriptions().values() for s in subs.values()), 5)
        await ws.send(futures_subscribe("trade", ["PF_XBTUSD"]).decode())
        frames = await recv_until(ws, lambda f: b'"event":"subscribe' in f)
        assert orjson.loads(frames[-1])["event"] == "subscribed_failed", "a new subscription is refused"
