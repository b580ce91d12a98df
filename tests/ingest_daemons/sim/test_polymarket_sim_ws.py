"""The Polymarket simulator's market channel over real sockets, with a plain `websockets` client.

Covers protocols.md §B1 (subscribe, add/remove, PING/PONG, idle close, arrays, 500-asset limit) and
§B2 (every event type, both price_change shapes, best level last), plus the faults connector tests
rely on. Everything the client checks is parsed here from the wire, not with the adapter.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ingest_daemons.sim.polymarket import PolymarketSimulator
from tests.fixtures.polymarket import PolymarketSimFactory

DEADLINE_S = 10.0


def events_of(frame: bytes) -> list[dict[str, Any]]:
    body = orjson.loads(frame)
    return body if isinstance(body, list) else [body]


def tokens_in(event: dict[str, Any]) -> set[str]:
    if "price_changes" in event:
        return {c["asset_id"] for c in event["price_changes"]}
    if "assets_ids" in event:
        return set(event["assets_ids"])
    return {event["asset_id"]}


async def subscribe(
    sim: PolymarketSimulator, tokens: list[str], custom: bool = True
) -> ClientConnection:
    # max_queue=None: websockets stops reading once 16 frames wait unread, so under a flood its
    # close() would never see the server's close frame.
    ws = await websockets.connect(sim.ws_url, compression=None, max_size=None, max_queue=None)
    await ws.send(orjson.dumps({"assets_ids": tokens, "type": "market", "custom_feature_enabled": custom}).decode())
    return ws


async def recv_until(ws: ClientConnection, pred: Any, deadline_s: float = DEADLINE_S) -> list[bytes]:
    """Frames received until (and including) the first one for which ``pred(frame)`` holds."""
    out: list[bytes] = []
    async with asyncio.timeout(deadline_s):
        while True:
            frame = await ws.recv(decode=False)
            out.append(frame)
            if pred(frame):
                return out


async def ping_barrier(ws: ClientConnection) -> list[bytes]:
    """Send PING; return the frames before PONG. The server handles messages in order, so every
    frame after the PONG was produced after our earlier messages took effect."""
    await ws.send("PING")
    frames = await recv_until(ws, lambda f: f == b"PONG")
    return frames[:-1]


async def test_subscribe_sends_book_snapshots_best_level_last(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=4, rate=0.0001)
    tokens = sim.trading_tokens()[:5]
    ws = await subscribe(sim, tokens)
    try:
        books: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(DEADLINE_S):
            while len(books) < len(tokens):
                for ev in events_of(await ws.recv(decode=False)):
                    assert ev["event_type"] == "book"
                    books[ev["asset_id"]] = ev
        assert set(books) == set(tokens)
        for token, book in books.items():
            assert isinstance(book["asset_id"], str) and 76 <= len(token) <= 78 and token.isdigit()
            assert book["market"] == sim.market(book["market"]).condition_id and book["market"].startswith("0x")
            bids = [float(level["price"]) for level in book["bids"]]
            asks = [float(level["price"]) for level in book["asks"]]
            assert bids == sorted(bids) and asks == sorted(asks, reverse=True)  # best level last
            assert bids and asks and bids[-1] < asks[-1]
            assert all(isinstance(v, str) for lv in book["bids"] + book["asks"] for v in lv.values())
            assert isinstance(book["timestamp"], str) and book["timestamp"].isdigit()
        # One subscription's snapshots arrive as a JSON array of events (§B1).
        assert any(f.data.startswith(b"[") for f in sim.sent_frames)
    finally:
        await ws.close()


async def test_client_receives_exactly_what_the_simulator_recorded(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=6, rate=2000, array_frames="mixed")
    ws = await subscribe(sim, sim.trading_tokens())
    try:
        got: list[bytes] = []
        async with asyncio.timeout(DEADLINE_S):
            while len(got) < 300:
                got.append(await ws.recv(decode=False))
        sim.pause()
        got += await ping_barrier(ws)
        sent = [f.data for f in sim.sent_frames]
        assert got == sent
        arrays = [f for f in sim.sent_frames if f.data.startswith(b"[")]
        assert arrays and any(len(f.elements) == 1 for f in sim.sent_frames)
        for f in sim.sent_frames:
            assert [orjson.loads(e[0]) for e in f.elements] == events_of(f.data)
            pos = 0
            for e in f.elements:  # each element's bytes are a substring of its frame, in order
                pos = f.data.index(e[0], pos) + len(e[0])
    finally:
        await ws.close()


async def test_every_event_type_and_both_price_change_shapes(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=3, rate=5000, price_change_shape="mixed")
    tokens = sim.trading_tokens()
    ws = await subscribe(sim, tokens)
    try:
        types: Counter[str] = Counter()
        shapes: set[str] = set()
        async with asyncio.timeout(DEADLINE_S):
            while not ({"book", "price_change", "last_trade_price", "best_bid_ask", "tick_size_change"}
                       <= set(types) and len(shapes) == 2):  # fmt: skip
                for ev in events_of(await ws.recv(decode=False)):
                    types[ev["event_type"]] += 1
                    assert tokens_in(ev) <= set(tokens)
                    if ev["event_type"] == "price_change":
                        if "price_changes" in ev:
                            shapes.add("current")
                            assert {"asset_id", "price", "size", "side", "hash", "best_bid", "best_ask"} <= set(
                                ev["price_changes"][0]
                            )
                        else:
                            shapes.add("legacy")
                            assert isinstance(ev["asset_id"], str) and ev["changes"][0]["side"] in ("BUY", "SELL")
                    if ev["event_type"] == "last_trade_price":
                        assert {"price", "side", "size", "fee_rate_bps", "timestamp"} <= set(ev)
                    if ev["event_type"] == "tick_size_change":
                        assert ev["old_tick_size"] != ev["new_tick_size"]
    finally:
        await ws.close()


async def test_custom_events_only_with_custom_feature_enabled(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=3, rate=3000)
    ws = await subscribe(sim, sim.trading_tokens(), custom=False)
    try:
        seen: Counter[str] = Counter()
        async with asyncio.timeout(DEADLINE_S):
            while seen["price_change"] < 300:
                for ev in events_of(await ws.recv(decode=False)):
                    seen[ev["event_type"]] += 1
        await sim.add_market()
        for frame in await ping_barrier(ws):
            for ev in events_of(frame):
                seen[ev["event_type"]] += 1
        assert seen["best_bid_ask"] == 0 and seen["new_market"] == 0
    finally:
        await ws.close()


async def test_operation_subscribe_and_unsubscribe_on_a_live_socket(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=4, rate=2000)
    a, b = sim.markets[0], sim.markets[1]
    ws = await subscribe(sim, list(a.token_ids))
    try:
        await ping_barrier(ws)
        await ws.send(orjson.dumps({"assets_ids": list(b.token_ids), "operation": "subscribe"}).decode())
        frames = await recv_until(
            ws, lambda f: any(e.get("event_type") == "book" and e["asset_id"] == b.token_ids[1] for e in events_of(f))
        )
        assert any(b.token_ids[0] in tokens_in(e) for f in frames for e in events_of(f))
        await ws.send(orjson.dumps({"assets_ids": list(a.token_ids), "operation": "unsubscribe"}).decode())
        await ping_barrier(ws)  # the unsubscribe has taken effect
        after: list[bytes] = []
        async with asyncio.timeout(DEADLINE_S):
            while len(after) < 100:
                after.append(await ws.recv(decode=False))
        evs = [e for f in after for e in events_of(f)]
        assert all(tokens_in(e) <= set(b.token_ids) for e in evs)
        assert sim.subscriptions() == {sim.connection_ids[0]: list(b.token_ids)}
    finally:
        await ws.close()


async def test_ping_pong_and_idle_close(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=2, rate=50, idle_timeout=0.6)
    ws = await subscribe(sim, sim.trading_tokens())
    try:
        # Pinging every 0.2 s keeps the socket past several idle timeouts.
        start = time.monotonic()
        while time.monotonic() - start < 2.0:
            await ping_barrier(ws)
            await asyncio.sleep(0.2)
        assert sim.connection_count == 1
        assert sim.pings_received() >= 5 and all(f.data == b"PONG" for f in sim.control_frames)
        # Then stop: the server closes with 1000 once the idle timeout passes.
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(DEADLINE_S):
                while True:
                    await ws.recv(decode=False)
        assert ws.close_code == 1000 and ws.close_reason == "no PING received"
    finally:
        await ws.close()


async def test_silence_on_ping_keeps_data_flowing(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=2, rate=500, idle_timeout=0)
    ws = await subscribe(sim, sim.trading_tokens())
    try:
        await ping_barrier(ws)
        sim.stop_answering_pings()
        await ws.send("PING")
        frames: list[bytes] = []
        async with asyncio.timeout(DEADLINE_S):
            while len(frames) < 200:
                frames.append(await ws.recv(decode=False))
        assert b"PONG" not in frames
        sim.stop_answering_pings(False)
        await ping_barrier(ws)
    finally:
        await ws.close()


async def test_asset_limit_per_connection(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=251, rate=0.0001, max_assets=500)
    tokens = sim.trading_tokens()
    assert len(tokens) == 502
    ws = await subscribe(sim, tokens[:500])
    try:
        await sim.wait_for_assets(500)
        await ping_barrier(ws)
        assert sim.connection_count == 1
        await ws.send(orjson.dumps({"assets_ids": tokens[500:501], "operation": "subscribe"}).decode())
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(DEADLINE_S):
                while True:
                    await ws.recv(decode=False)
        assert ws.close_code == 1008
    finally:
        await ws.close()
    ws2 = await subscribe(sim, tokens[:501])
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(DEADLINE_S):
            while True:
                await ws2.recv(decode=False)
    assert ws2.close_code == 1008
    assert not any(f.conn_id == 2 for f in sim.sent_frames), "no snapshots for a refused subscription"


async def test_numeric_token_ids_are_refused(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=2, rate=100)
    token = sim.trading_tokens()[0]
    ws = await websockets.connect(sim.ws_url, compression=None)
    try:
        # A token id sent as a JSON number (it exceeds 64 bits: §B2).
        await ws.send('{"assets_ids":[' + token + '],"type":"market","custom_feature_enabled":true}')
        assert await ping_barrier(ws) == []
        assert sim.rejected and sim.rejected[0][2] == "assets_ids must be a list of strings"
        assert sim.subscriptions() == {1: []}
    finally:
        await ws.close()


async def test_new_market_and_market_resolved(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=2, rate=200)
    ws = await subscribe(sim, sim.trading_tokens())
    try:
        await ping_barrier(ws)
        m = await sim.add_market(question="Will the simulator add a market?")
        frames = await recv_until(ws, lambda f: b'"new_market"' in f)
        announce = events_of(frames[-1])[0]
        assert announce["event_type"] == "new_market"
        assert announce["market"] == m.condition_id and announce["assets_ids"] == list(m.token_ids)
        assert announce["outcomes"] == ["Yes", "No"] and announce["event_message"]["id"] == m.event_id
        await ws.send(orjson.dumps({"assets_ids": list(m.token_ids), "operation": "subscribe"}).decode())
        await recv_until(ws, lambda f: any(m.token_ids[0] in tokens_in(e) for e in events_of(f)))
        await sim.resolve_market(m.condition_id, "No")
        frames = await recv_until(ws, lambda f: b'"market_resolved"' in f)
        resolved = events_of(frames[-1])[0]
        assert resolved["winning_asset_id"] == m.token_ids[1] and resolved["winning_outcome"] == "No"
        await ping_barrier(ws)
        later: list[bytes] = []
        async with asyncio.timeout(DEADLINE_S):
            while len(later) < 100:
                later.append(await ws.recv(decode=False))
        assert not any(set(m.token_ids) & tokens_in(e) for f in later for e in events_of(f))
    finally:
        await ws.close()


async def test_close_stall_and_malformed_faults(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=2, rate=300, idle_timeout=0)
    ws = await subscribe(sim, sim.trading_tokens())
    try:
        await ping_barrier(ws)
        await sim.send_malformed(b'[{"event_type":"book"')
        frames = await recv_until(ws, lambda f: f == b'[{"event_type":"book"')
        assert frames[-1] == b'[{"event_type":"book"'
        assert sim.sent_frames[-1].kind == "malformed" or any(f.kind == "malformed" for f in sim.sent_frames)
        sim.stall(0.8)
        stalled_at = time.monotonic()
        await ws.send("PING")
        frames = await recv_until(ws, lambda f: f == b"PONG")
        assert time.monotonic() - stalled_at >= 0.7, "PONG must wait out the stall"
        await sim.close_connections(code=1011)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(DEADLINE_S):
                while True:
                    await ws.recv(decode=False)
        assert ws.close_code == 1011
    finally:
        await ws.close()


async def test_flood_sends_array_wrapped_price_changes(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=10, rate=0, array_frames="always", array_max=20, record=False)
    ws = await subscribe(sim, sim.trading_tokens())
    try:
        n_events = 0
        hashes: set[str] = set()
        async with asyncio.timeout(DEADLINE_S):
            while n_events < 20_000:
                frame = await ws.recv(decode=False)
                evs = events_of(frame)
                if evs[0]["event_type"] == "book":
                    continue
                assert frame.startswith(b"[") and len(evs) == 20
                for ev in evs:
                    assert ev["event_type"] == "price_change"
                    hashes.add(ev["price_changes"][0]["hash"])
                n_events += len(evs)
        assert len(hashes) == n_events, "flood events must be distinct (hashes differ)"
    finally:
        await ws.close()
