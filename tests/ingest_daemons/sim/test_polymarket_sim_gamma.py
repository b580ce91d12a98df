"""Gamma REST on the Polymarket simulator (protocols.md §B3), over real HTTP, and its agreement
with the market channel's universe."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import orjson
import websockets

from ingest_daemons.sim.polymarket import PolymarketSimulator
from tests.fixtures.polymarket import PolymarketSimFactory


async def get(sim: PolymarketSimulator, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.get(sim.rest_url + path) as r:
        return r.status, await r.read()


async def get_all(sim: PolymarketSimulator, path: str, limit: int) -> list[dict[str, Any]]:
    """Offset pagination: pages until one comes back shorter than ``limit``."""
    out: list[dict[str, Any]] = []
    offset = 0
    sep = "&" if "?" in path else "?"
    while True:
        status, body = await get(sim, f"{path}{sep}limit={limit}&offset={offset}")
        assert status == 200
        page = orjson.loads(body)
        assert isinstance(page, list) and len(page) <= limit
        out += page
        if len(page) < limit:
            return out
        offset += limit


async def test_markets_paginate_by_offset_and_match_the_universe(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=23, rate=1)
    markets = await get_all(sim, "/markets", limit=5)
    assert [m["id"] for m in markets] == [m.id for m in sim.markets]
    assert len({m["conditionId"] for m in markets}) == 23
    status, body = await get(sim, "/markets")
    assert status == 200 and len(orjson.loads(body)) == 23  # default limit 100
    assert (await get(sim, "/markets?limit=501"))[0] == 400
    assert (await get(sim, "/markets?offset=-1"))[0] == 400
    assert orjson.loads((await get(sim, "/markets?limit=5&offset=20"))[1])[-1]["id"] == sim.markets[-1].id


async def test_stringified_arrays_and_token_ids_as_strings(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=6, rate=1)
    status, raw = await get(sim, "/markets")
    assert status == 200
    for m in orjson.loads(raw):
        for key in ("clobTokenIds", "outcomes", "outcomePrices"):
            assert isinstance(m[key], str), key  # JSON text inside a JSON string (§B3)
        tokens = orjson.loads(m["clobTokenIds"])
        outcomes = orjson.loads(m["outcomes"])
        prices = orjson.loads(m["outcomePrices"])
        assert outcomes == ["Yes", "No"] and len(tokens) == 2 and len(prices) == 2
        assert all(isinstance(t, str) and t.isdigit() and 76 <= len(t) <= 78 for t in tokens)
        assert sim.market(m["conditionId"]).token_ids == tuple(tokens)  # clobTokenIds[i] <-> outcomes[i]
        assert re.fullmatch(r"0x[0-9a-f]{64}", m["conditionId"])
        assert m["category"] is None and m["active"] is True and m["closed"] is False
    # Nowhere in the raw body does a token id appear unquoted (as a JSON number).
    text = raw.decode()
    for t in sim.trading_tokens():
        assert f'\\"{t}\\"' in text and f"[{t}" not in text and f",{t}" not in text


async def test_events_carry_tags_and_markets_and_filter_by_tag(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=30, rate=1)
    events = await get_all(sim, "/events", limit=4)
    assert {e["id"] for e in events} == set(sim.events)
    nested = [m["conditionId"] for e in events for m in e["markets"]]
    assert sorted(nested) == sorted(m.condition_id for m in sim.markets)
    for e in events:
        assert e["tags"] and all(set(t) == {"id", "label", "slug"} for t in e["tags"])
    slug = events[0]["tags"][0]["slug"]
    tagged = await get_all(sim, f"/events?tag_slug={slug}", limit=100)
    assert tagged and all(any(t["slug"] == slug for t in e["tags"]) for e in tagged)
    assert {e["id"] for e in tagged} == {e["id"] for e in events if any(t["slug"] == slug for t in e["tags"])}
    tag_id = events[0]["tags"][0]["id"]
    tagged_markets = await get_all(sim, f"/markets?tag_id={tag_id}", limit=100)
    assert {m["conditionId"] for m in tagged_markets} == {
        m["conditionId"] for e in events if any(t["id"] == tag_id for t in e["tags"]) for m in e["markets"]
    }


async def test_new_and_resolved_markets_show_on_gamma_and_the_socket(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=3, rate=50, idle_timeout=0)
    m = await sim.add_market(tags=["Crypto", "Bitcoin"])
    listed = orjson.loads((await get(sim, "/markets?closed=false"))[1])
    assert listed[-1]["conditionId"] == m.condition_id
    events = orjson.loads((await get(sim, f"/events?id={m.event_id}"))[1])
    assert [t["label"] for t in events[0]["tags"]] == ["Crypto", "Bitcoin"]
    # The tokens Gamma lists stream on the socket.
    tokens = orjson.loads(listed[-1]["clobTokenIds"])
    async with websockets.connect(sim.ws_url, compression=None, max_queue=None) as ws:
        await ws.send(orjson.dumps({"assets_ids": tokens, "type": "market"}).decode())
        async with asyncio.timeout(10):
            first = orjson.loads(await ws.recv(decode=False))
        books = first if isinstance(first, list) else [first]
        assert {b["asset_id"] for b in books} == set(tokens)
    await sim.resolve_market(m.condition_id, "Yes")
    open_ids = {x["conditionId"] for x in orjson.loads((await get(sim, "/markets?closed=false"))[1])}
    closed = orjson.loads((await get(sim, "/markets?closed=true"))[1])
    assert m.condition_id not in open_ids
    assert [x["conditionId"] for x in closed] == [m.condition_id]
    assert orjson.loads(closed[0]["outcomePrices"]) == ["1", "0"] and closed[0]["acceptingOrders"] is False


async def test_fail_next_and_bad_parameters(polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=2, rate=1)
    sim.fail_next_rest(429, count=2)
    assert (await get(sim, "/markets"))[0] == 429
    assert (await get(sim, "/events"))[0] == 429
    assert (await get(sim, "/events"))[0] == 200
    assert (await get(sim, "/markets?closed=maybe"))[0] == 400
    assert sim.rest_requests[-1] == "/markets?closed=maybe"
