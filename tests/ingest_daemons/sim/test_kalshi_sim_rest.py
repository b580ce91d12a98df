"""The Kalshi simulator's public REST API (protocols.md §A7) over a real socket with aiohttp.

REST needs no auth, so these run with ``auth_required=False``; the universe served here is the one
the WebSocket side streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ingest_daemons.sim.kalshi import KalshiSimulator

# REST `status` values each filter word selects (§A7, KML).
FILTER_STATUSES = {
    "unopened": {"initialized"},
    "open": {"active"},
    "paused": {"inactive"},
    "closed": {"closed", "determined", "disputed", "amended"},
    "settled": {"finalized"},
}


@pytest.fixture
async def sim() -> AsyncIterator[KalshiSimulator]:
    async with KalshiSimulator(auth_required=False, markets=1000, rate=0) as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str, **params: Any) -> tuple[int, Any]:
    async with http.get(url, params={k: str(v) for k, v in params.items()}) as resp:
        return resp.status, await resp.json()


async def all_pages(http: aiohttp.ClientSession, url: str, key: str, **params: Any) -> tuple[list[Any], int]:
    items: list[Any] = []
    pages = 0
    cursor = ""
    while True:
        status, body = await get(http, url, **params, **({"cursor": cursor} if cursor else {}))
        assert status == 200, body
        items.extend(body[key])
        pages += 1
        cursor = body["cursor"]
        assert isinstance(cursor, str)
        if not cursor:
            return items, pages


async def test_markets_pagination_covers_the_universe_once(
    sim: KalshiSimulator, http: aiohttp.ClientSession
) -> None:
    status, first = await get(http, f"{sim.rest_url}/markets")
    assert status == 200 and len(first["markets"]) == 100 and first["cursor"]  # default limit 100
    markets, pages = await all_pages(http, f"{sim.rest_url}/markets", "markets", limit=300)
    assert pages == 4  # 300 + 300 + 300 + 100
    assert [m["ticker"] for m in markets] == [m.ticker for m in sim.universe]
    _, big = await get(http, f"{sim.rest_url}/markets", limit=1000)
    assert len(big["markets"]) == 1000 and big["cursor"] == ""
    for bad in (0, 1001, "x"):
        status, body = await get(http, f"{sim.rest_url}/markets", limit=bad)
        assert status == 400 and "limit" in body["error"]["message"]
    status, _ = await get(http, f"{sim.rest_url}/markets", cursor="not-a-cursor")
    assert status == 400


async def test_market_objects_match_the_universe(sim: KalshiSimulator, http: aiohttp.ClientSession) -> None:
    dotted = next(m for m in sim.universe if "." in m.ticker and m.floor_strike is not None)
    status, body = await get(http, f"{sim.rest_url}/markets", tickers=f"{dotted.ticker},KXBALANCE-29")
    assert status == 200
    by_ticker = {m["ticker"]: m for m in body["markets"]}
    assert set(by_ticker) == {dotted.ticker, "KXBALANCE-29"}
    m = by_ticker[dotted.ticker]
    assert (m["event_ticker"], m["status"], m["strike_type"]) == (
        dotted.event_ticker,
        dotted.status,
        dotted.strike_type,
    )
    assert m["floor_strike"] == pytest.approx(float(dotted.floor_strike or "nan"))
    assert m["open_time"].endswith("Z") and m["close_time"].endswith("Z")
    for field in ("yes_bid_dollars", "yes_ask_dollars", "no_bid_dollars", "last_price_dollars"):
        assert len(m[field]) == 6 and m[field][1] == "."  # "0.4800": fixed-point, 4 dp
    assert m["volume_fp"].endswith(tuple(f".{i:02d}" for i in range(100)))
    assert by_ticker["KXBALANCE-29"]["event_ticker"] == "KXBALANCE-29"  # market ticker == event ticker
    status, one = await get(http, f"{sim.rest_url}/markets/{dotted.ticker}")
    assert status == 200 and one["market"] == m
    assert (await get(http, f"{sim.rest_url}/markets/NOPE-1"))[0] == 404


@pytest.mark.parametrize("word", sorted(FILTER_STATUSES))
async def test_markets_status_filter_maps_to_response_statuses(
    sim: KalshiSimulator, http: aiohttp.ClientSession, word: str
) -> None:
    markets, _ = await all_pages(http, f"{sim.rest_url}/markets", "markets", status=word, limit=1000)
    expected = [m.ticker for m in sim.universe if m.status in FILTER_STATUSES[word]]
    assert expected, f"universe has no {word} markets"
    assert [m["ticker"] for m in markets] == expected
    assert {m["status"] for m in markets} <= FILTER_STATUSES[word]


async def test_markets_filters_and_unknown_status(sim: KalshiSimulator, http: aiohttp.ClientSession) -> None:
    status, body = await get(http, f"{sim.rest_url}/markets", status="active")  # response word, not a filter
    assert status == 400
    event = sim.universe[0].event_ticker
    _, body = await get(http, f"{sim.rest_url}/markets", event_ticker=event)
    assert {m["event_ticker"] for m in body["markets"]} == {event}
    markets, _ = await all_pages(
        http, f"{sim.rest_url}/markets", "markets", series_ticker="KXHIGHNY", limit=50
    )
    assert markets and all(m["ticker"].startswith("KXHIGHNY-") for m in markets)
    assert len(markets) == sum(m.series_ticker == "KXHIGHNY" for m in sim.universe)


async def test_events_pagination_nested_markets_and_filters(
    sim: KalshiSimulator, http: aiohttp.ClientSession
) -> None:
    status, first = await get(http, f"{sim.rest_url}/events")
    assert status == 200 and len(first["events"]) == 200 and first["cursor"]  # default = max = 200
    assert (await get(http, f"{sim.rest_url}/events", limit=201))[0] == 400
    events, pages = await all_pages(http, f"{sim.rest_url}/events", "events")
    assert [e["event_ticker"] for e in events] == list(sim.events) and pages == 2
    assert all("markets" not in e for e in events)
    nested, _ = await all_pages(
        http, f"{sim.rest_url}/events", "events", with_nested_markets="true", limit=50
    )
    assert sum(len(e["markets"]) for e in nested) == len(sim.universe)
    assert all(m["event_ticker"] == e["event_ticker"] for e in nested for m in e["markets"])
    settled, _ = await all_pages(http, f"{sim.rest_url}/events", "events", status="settled")
    assert settled and all(
        any(m.status == "finalized" for m in sim.universe if m.event_ticker == e["event_ticker"])
        for e in settled
    )
    crypto, _ = await all_pages(http, f"{sim.rest_url}/events", "events", series_ticker="KXBTCD")
    assert crypto and {e["series_ticker"] for e in crypto} == {"KXBTCD"}
    assert {e["category"] for e in crypto} == {"Crypto"}


async def test_series_carry_categories_and_tags(sim: KalshiSimulator, http: aiohttp.ClientSession) -> None:
    status, body = await get(http, f"{sim.rest_url}/series")
    assert status == 200
    series = {s["ticker"]: s for s in body["series"]}
    assert {m.series_ticker for m in sim.universe} == set(series)
    assert {"Economics", "Crypto", "Climate and Weather", "Politics", "Financials"} <= {
        s["category"] for s in series.values()
    }
    assert all(isinstance(s["tags"], list) and s["frequency"] and s["title"] for s in series.values())
    _, only = await get(http, f"{sim.rest_url}/series", category="Crypto")
    assert {s["category"] for s in only["series"]} == {"Crypto"}


async def test_orderbook_is_bids_only_ascending(sim: KalshiSimulator, http: aiohttp.ClientSession) -> None:
    m = sim.trading_markets()[0]
    status, body = await get(http, f"{sim.rest_url}/markets/{m.ticker}/orderbook")
    assert status == 200
    for side in ("yes_dollars", "no_dollars"):
        prices = [float(p) for p, _ in body["orderbook_fp"][side]]
        assert prices == sorted(prices) and prices
    best_yes = float(body["orderbook_fp"]["yes_dollars"][-1][0])
    best_no = float(body["orderbook_fp"]["no_dollars"][-1][0])
    assert best_yes < 1 - best_no  # not crossed


async def test_fail_next_rest(sim: KalshiSimulator, http: aiohttp.ClientSession) -> None:
    sim.fail_next_rest(429, count=2)
    sim.fail_next_rest(500)
    results = [await get(http, f"{sim.rest_url}/markets", limit=1) for _ in range(4)]
    assert [s for s, _ in results] == [429, 429, 500, 200]
    assert results[0][1] == {"error": "too many requests"}
    assert len(sim.rest_requests) == 4 and sim.rest_requests[0].startswith("/trade-api/v2/markets")
    with pytest.raises(ValueError):
        sim.fail_next_rest(200)


async def test_status_change_is_visible_over_rest(sim: KalshiSimulator, http: aiohttp.ClientSession) -> None:
    m = sim.trading_markets()[0]
    sim.set_market_status(m.ticker, "closed")
    _, body = await get(http, f"{sim.rest_url}/markets/{m.ticker}")
    assert body["market"]["status"] == "closed"
    closed, _ = await all_pages(http, f"{sim.rest_url}/markets", "markets", status="closed", limit=1000)
    assert m.ticker in {x["ticker"] for x in closed}
    added = await sim.add_market(series_ticker="KXFED", status="initialized")
    _, body = await get(http, f"{sim.rest_url}/markets", status="unopened", tickers=added.ticker)
    assert [x["ticker"] for x in body["markets"]] == [added.ticker]
    _, ex = await get(http, f"{sim.rest_url}/exchange/status")
    assert ex["exchange_active"] is True and ex["trading_active"] is True
