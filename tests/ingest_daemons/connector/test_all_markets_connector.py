"""The all-markets connector: ticker and trade subscribed once with no market list (protocols A3), every
frame's category from an in-memory map kept current by the secmaster's CDC stream."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from ingest_daemons.connector.directory import build_directory, discover_kalshi_catalog
from ingest_daemons.connector.runner import Connector
from ingest_daemons.naming import UNCATEGORIZED, parse_subject, slug
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher
from ingest_daemons.secmaster.kalshi_sync import sync_kalshi
from tests.fixtures.kalshi import CATEGORIES, BenchFactory, KalshiBench
from tests.helpers import wait_until


async def flow(bench: KalshiBench, frames: int, within_s: float = 10.0) -> None:
    target = len(bench.sim.sent_frames) + frames
    await wait_until(lambda: len(bench.sim.sent_frames) >= target, within_s, f"{frames} more frames from the exchange")


def excluded_markets(bench: KalshiBench) -> frozenset[str]:
    captured = {c.casefold() for c in CATEGORIES}
    return frozenset(m.ticker for m in bench.sim.universe if m.category.casefold() not in captured)


def subscribes(bench: KalshiBench) -> list[dict[str, object]]:
    return [c for _, c in bench.sim.commands if c.get("cmd") == "subscribe"]


async def test_subscribes_without_a_market_list_and_stores_a_new_markets_first_trade(
    kalshi_bench: BenchFactory,
) -> None:
    bench = await kalshi_bench(markets=12, rate=300, all_markets=True)
    await bench.connector.wait_subscribed(10)
    [subscribe] = subscribes(bench)
    params = subscribe["params"]
    assert isinstance(params, dict) and params["channels"] == ["ticker", "trade"]
    assert not {"market_ticker", "market_tickers"} & set(params), "all markets: no market list"
    commands_before = len(bench.sim.commands)

    market = await bench.sim.add_market(series_ticker="KXINXD")
    await wait_until(lambda: any(f.market_ticker == market.ticker and f.type == "trade"
                                 for f in bench.sim.sent_frames), 10, "the new market's first trade")
    assert len(bench.sim.commands) == commands_before, "no command was needed for the new market"
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored, excluded_markets(bench))
    first_trade = next(f.data for f in bench.sim.sent_frames if f.market_ticker == market.ticker and f.type == "trade")
    [mine] = [m for m in frames if m.data == first_trade]
    assert parse_subject(mine.subject).ticker == market.ticker and parse_subject(mine.subject).message_type == "trade"


async def test_excluded_category_is_never_stored_and_is_counted(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench(markets=40, rate=600, all_markets=True, start_connector=False)
    excluded = excluded_markets(bench)
    assert excluded, "the simulator's universe has markets of a category the environment excludes"
    for ticker in excluded:  # Sports markets start scheduled; make them trade, known to the catalog
        bench.sim.set_market_status(ticker, "active")
    bench.connector.catalog = await discover_kalshi_catalog(bench.sim.rest_url)
    await bench.connector.start()
    await bench.connector.wait_subscribed(10)
    await wait_until(lambda: any(f.market_ticker in excluded for f in bench.sim.sent_frames), 10,
                     "frames of an excluded market")
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored, excluded)
    assert not [m for m in frames if parse_subject(m.subject).ticker in excluded]
    sent_excluded = sum(1 for f in bench.sim.sent_frames if f.market_ticker in excluded)
    assert bench.connector.metrics.filtered == {"sports": sent_excluded}
    # The metric is exposed as ssmd_filtered_total{category=...} (the health server still runs until teardown).
    body = bench.connector.metrics.render().decode()
    assert f'ssmd_filtered_total{{category="sports",feed="kalshi",shard="all"}} {float(sent_excluded)}' in body


async def test_unknown_market_goes_to_uncategorized_then_to_its_category_via_cdc(
    kalshi_bench: BenchFactory, nats_server: NatsServer, secmaster_db: str
) -> None:
    bench = await kalshi_bench(markets=12, rate=300, all_markets=True, follow_cdc=True, start_connector=False)
    await sync_kalshi(secmaster_db, bench.sim.rest_url)  # the secmaster before the new market exists
    stop = asyncio.Event()
    cdc = CdcPublisher(CdcOptions(env=bench.env.name, database_url=secmaster_db, nats_url=nats_server.url,
                                  poll_interval_s=0.05))
    cdc_task = asyncio.create_task(cdc.run(stop))
    try:
        await bench.connector.start()
        await bench.connector.wait_subscribed(10)
        market = await bench.sim.add_market(series_ticker="KXINXD")  # Financials: captured
        await wait_until(lambda: sum(1 for f in bench.sim.sent_frames if f.market_ticker == market.ticker) >= 3,
                         10, "frames of the market the secmaster does not know yet")
        assert bench.connector.directory.category_of(market.ticker) == UNCATEGORIZED
        await sync_kalshi(secmaster_db, bench.sim.rest_url)  # its row arrives; CDC carries it
        await wait_until(lambda: bench.connector.directory.category_of(market.ticker) == "financials", 15,
                         "the category map to learn the market from CDC")
        known_at = len(bench.sim.sent_frames)
        await wait_until(lambda: sum(1 for f in bench.sim.sent_frames[known_at:]
                                     if f.market_ticker == market.ticker) >= 3, 10, "later frames of the market")
        stored = await bench.stop_and_collect()
    finally:
        stop.set()
        await asyncio.wait_for(cdc_task, 15)
    frames = bench.assert_exactly_once(stored, excluded_markets(bench))
    sent_order = {f.data: i for i, f in enumerate(bench.sim.sent_frames)}
    mine = sorted((m for m in frames if parse_subject(m.subject).ticker == market.ticker),
                  key=lambda m: sent_order[m.data])
    streams = [m.stream for m in mine]  # in the order the exchange sent them
    prefix = f"{bench.env.name}_KALSHI_".upper()
    assert streams[0] == prefix + "UNCATEGORIZED", "stored (not dropped) while unknown"
    assert streams[-1] == prefix + "FINANCIALS"
    switch = streams.index(prefix + "FINANCIALS")
    assert set(streams[:switch]) == {prefix + "UNCATEGORIZED"} and set(streams[switch:]) == {prefix + "FINANCIALS"}
    category_of = {m.ticker: slug(m.category) for m in bench.sim.universe}
    assert all(parse_subject(m.subject).category == category_of[parse_subject(m.subject).ticker]
               for m in frames if parse_subject(m.subject).ticker != market.ticker)


async def test_exactly_once_through_socket_close_and_stall(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench(all_markets=True, idle_timeout_s=1.0, heartbeat_s=30.0)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    await bench.sim.close_connections(code=1011)
    await wait_until(lambda: bench.connector.sessions[0].sockets_opened == 2, 10, "reconnect after close")
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    bench.sim.stall(30)
    await wait_until(lambda: bench.connector.sessions[0].sockets_opened == 3, 10, "reconnect after stall")
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored, excluded_markets(bench))
    every = subscribes(bench)
    assert len(every) == 3, "one subscribe per socket"
    assert all(c["params"] == {"channels": ["ticker", "trade"]} for c in every), "resubscribed the same way"
    reasons = [json.loads(m.data)["reason"] for m in stored if m.marker == "disconnected"]
    assert any("stalled" in str(r) for r in reasons) and len(reasons) == 2


async def test_exactly_once_through_a_nats_restart(kalshi_bench: BenchFactory, private_nats_server) -> None:  # type: ignore[no-untyped-def]
    bench = await kalshi_bench(nats_url=private_nats_server.url, rate=400, all_markets=True)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    private_nats_server.stop()
    await wait_until(lambda: not bench.connector.publisher.connected, 10, "publisher to notice")
    await flow(bench, 300)
    assert bench.connector.publisher.in_flight > 0
    private_nats_server.start()
    await flow(bench, 200)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored, excluded_markets(bench))


async def test_sharded_connector_runs_only_the_per_shard_channels(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench(markets=12, channel_scope={})  # the feed's own scope
    await bench.connector.wait_subscribed(10)
    assert {tuple(c["params"]["channels"]) for c in subscribes(bench)} == {("orderbook_delta",)}  # type: ignore[index]
    bench.assert_exactly_once(await bench.stop_and_collect())


async def test_a_second_replica_stands_by_on_the_lease_and_takes_over(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench(markets=12, rate=300, all_markets=True, lease_ttl_s=3.0)
    await bench.connector.wait_subscribed(10)
    first = bench.connector
    feed = bench.env.feeds["kalshi"]
    second = Connector(bench.env, feed, [], build_directory(feed.stream_categories(), []),
                       first.venues, dataclasses.replace(first.options, metrics_port=None))
    second.catalog = first.catalog
    starting = asyncio.create_task(second.start())
    second_stopped = False
    try:
        await wait_until(lambda: second.starting is not None and "standing by" in second.starting, 10,
                         "the second replica to stand by")
        await flow(bench, 200)
        assert not second.sessions and len(subscribes(bench)) == 1, "only the lease holder subscribes"
        assert second.ready() == (False, "standing by: another replica holds the all-markets lease")
        assert await first.shutdown(), "the first replica drained"
        await asyncio.wait_for(starting, 10)  # the stand-by took the lease within a retry interval
        await second.wait_subscribed(10)
        await flow(bench, 200)
        bench.sim.pause()
        second_stopped = True
        assert await second.shutdown()
    finally:
        if not second_stopped:  # a failure above: stop the second replica too, whatever state it is in
            second.request_stop()
            await asyncio.wait_for(starting, 10)
            await second.shutdown()
    stored = await bench.stored()
    bench.assert_exactly_once(stored, excluded_markets(bench))  # nothing lost, nothing twice across the takeover
    connected = [json.loads(m.data) for m in stored if m.marker == "connected"]
    # The takeover is marked: the new replica's connection starts with its own `connected` marker.
    assert {str(c["conn"]).split(".")[0] for c in connected} == {first.run_id, second.run_id}
    assert len(subscribes(bench)) == 2
