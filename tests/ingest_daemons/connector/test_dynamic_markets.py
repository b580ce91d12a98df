"""Markets added and removed on a live connection: update_subscription, no reconnect, nothing lost."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ingest_daemons.naming import parse_subject
from tests.fixtures.kalshi import BenchFactory
from tests.helpers import wait_until


async def test_add_and_remove_markets_without_reconnecting(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench(markets=8, rate=200)
    await bench.connector.wait_subscribed(10)
    session = bench.connector.sessions[0]
    market = await bench.sim.add_market()
    bench.connector.sessions[0].directory.assign(market.ticker, market.category)

    added = await session.add_markets([market.ticker])
    assert added == [market.ticker]
    adds = [c for _, c in bench.sim.commands if c.get("cmd") == "update_subscription"
            and c["params"]["action"] == "add_markets"]
    assert adds and all(c["params"]["market_tickers"] == [market.ticker] for c in adds)
    assert len(adds) == 3, "one update per channel sid (ticker, trade, orderbook_delta)"

    def frames_for(ticker: str) -> int:
        return sum(1 for f in bench.sim.sent_frames if f.market_ticker == ticker)

    await wait_until(lambda: frames_for(market.ticker) >= 10, 10, "frames for the new market")
    assert await session.add_markets([market.ticker]) == [], "adding twice is a no-op"

    removed = await session.remove_markets([market.ticker])
    assert removed == [market.ticker]
    deletes = [c for _, c in bench.sim.commands if c.get("cmd") == "update_subscription"
               and c["params"]["action"] == "delete_markets"]
    assert len(deletes) == 3
    after_removal = frames_for(market.ticker)
    others = len(bench.sim.sent_frames)
    await wait_until(lambda: len(bench.sim.sent_frames) > others + 100, 10, "more frames for other markets")
    assert frames_for(market.ticker) == after_removal, "no frames for a removed market"

    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored)
    new_market = [m for m in frames if json.loads(m.data).get("msg", {}).get("market_ticker") == market.ticker]
    assert new_market and all(parse_subject(m.subject).ticker == market.ticker for m in new_market)
    assert session.sockets_opened == 1


async def test_markets_added_while_disconnected_are_subscribed_on_reconnect(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench(markets=8, rate=200)
    await bench.connector.wait_subscribed(10)
    session = bench.connector.sessions[0]
    market = await bench.sim.add_market()
    await bench.sim.close_connections(code=1011)
    await session.add_markets([market.ticker])
    await wait_until(lambda: session.sockets_opened == 2 and session.subscribed.is_set(), 10, "resubscribed")
    subscribes = [c for _, c in bench.sim.commands if c.get("cmd") == "subscribe"]
    assert any(market.ticker in (c["params"].get("market_tickers") or []) for c in subscribes)
    bench.assert_exactly_once(await bench.stop_and_collect())


async def test_updates_are_paced_per_subscription(kalshi_bench: BenchFactory) -> None:
    """Kalshi limits the command rate per subscription: one pause per sid, not one per command."""
    from dataclasses import replace

    bench = await kalshi_bench(markets=8, rate=50)
    await bench.connector.wait_subscribed(10)
    session = bench.connector.sessions[0]
    session.settings = replace(session.settings, commands_per_second=2.0)  # 0.5 s between commands to one sid
    first, second = await bench.sim.add_market(), await bench.sim.add_market()
    started = time.monotonic()
    assert await session.add_markets([first.ticker]) == [first.ticker]
    across_sids = time.monotonic() - started
    assert await session.add_markets([second.ticker]) == [second.ticker]
    same_sids = time.monotonic() - started - across_sids
    updates = [c for _, c in bench.sim.commands if c.get("cmd") == "update_subscription"]
    assert len(updates) == 6 and len({c["params"]["sids"][0] for c in updates}) == 3
    assert same_sids >= 0.45, "a second update to the same sid waits for the pace"
    assert across_sids < 0.9, f"three sids, no pause between them (paced per connection: >= 1.0 s): {across_sids:.2f}"


async def test_additions_past_the_connection_limit_open_another_connection(
    kalshi_bench: BenchFactory, exchanges_dir: Path
) -> None:
    """A venue's per-socket limit (Polymarket: 500 assets) holds for live additions too."""
    feed_file = exchanges_dir / "feeds" / "kalshi.yaml"
    feed_file.write_text(feed_file.read_text().replace("markets_per_connection: 2000", "markets_per_connection: 10"))
    bench = await kalshi_bench(markets=8, rate=100)
    await bench.connector.wait_subscribed(10)
    connector = bench.connector
    [first] = connector.sessions
    room = 10 - len(first.markets)
    new = [await bench.sim.add_market() for _ in range(room + 3)]
    for market in new:
        first.directory.assign(market.ticker, market.category)
    tickers = [m.ticker for m in new]

    assert await connector.pool.add_markets(tickers) == tickers
    assert len(first.markets) == 10 and first.markets[-room:] == tickers[:room]
    assert len(connector.sessions) == 2 and connector.sessions[1].markets == tickers[room:]
    await connector.wait_subscribed(10)
    await wait_until(lambda: all(any(f.market_ticker == t for f in bench.sim.sent_frames) for t in tickers), 10,
                     "frames for every added market")
    assert await connector.pool.remove_markets([tickers[-1], tickers[0]]) == sorted([tickers[-1], tickers[0]])
    assert tickers[0] not in first.markets and tickers[-1] not in connector.sessions[1].markets
    bench.assert_exactly_once(await bench.stop_and_collect())
    assert first.sockets_opened == 1 and connector.sessions[1].sockets_opened == 1
