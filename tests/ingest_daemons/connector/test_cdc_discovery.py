"""Real-time discovery: a secmaster change reaches the running connector through CDC (real PostgreSQL,
real nats-server, the simulator), with shard assignment in NATS KV."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace

import nats

from ingest_daemons.connector.directory import discover_kalshi_catalog
from ingest_daemons.connector.runner import Connector
from ingest_daemons.logs import get_logger
from ingest_daemons.naming import parse_subject
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher
from ingest_daemons.secmaster.kalshi_sync import sync_kalshi
from ingest_daemons.shards import ShardRegistry
from tests.fixtures.kalshi import BenchFactory
from tests.helpers import wait_until

log = get_logger("tests.cdc_discovery")


def commands_for(bench, ticker: str, action: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    return [c for _, c in bench.sim.commands
            if c.get("cmd") == "update_subscription" and c["params"].get("action") == action
            and ticker in c["params"].get("market_tickers", [])]


async def test_secmaster_changes_drive_subscriptions(kalshi_bench: BenchFactory, secmaster_db: str) -> None:
    bench = await kalshi_bench(markets=10, rate=100, start_connector=False, use_registry=True, follow_cdc=True)
    await sync_kalshi(secmaster_db, bench.sim.rest_url)
    stop = asyncio.Event()
    cdc = CdcPublisher(CdcOptions(env=bench.env.name, database_url=secmaster_db, nats_url=bench.nats_url))
    cdc_task = asyncio.create_task(cdc.run(stop))
    try:
        bench.connector.catalog = await discover_kalshi_catalog(bench.sim.rest_url)
        await bench.connector.start()
        await bench.connector.wait_subscribed(10)
        assert bench.connector.registry is not None
        assigned = sorted(await bench.connector.registry.members(0))
        assert assigned == sorted(bench.connector.sessions[0].markets)

        passing = await bench.sim.add_market(series_ticker="KXCPI")  # Economics: captured
        excluded = await bench.sim.add_market(series_ticker="KXMLBGAME")  # Sports: not in the allow-list
        await sync_kalshi(secmaster_db, bench.sim.rest_url)
        committed = time.monotonic()
        await wait_until(lambda: len(commands_for(bench, passing.ticker, "add_markets")) == 3, 15,
                         "add_markets for the new market on each channel")
        log.info("discovered", latency_s=round(time.monotonic() - committed, 3))
        await wait_until(lambda: sum(1 for f in bench.sim.sent_frames if f.market_ticker == passing.ticker) >= 5,
                         10, "frames of the new market")
        assert not any(excluded.ticker in str(c) for _, c in bench.sim.commands), "excluded category subscribed"
        assert await bench.connector.registry.shard_of(passing.ticker) == 0
        assert await bench.connector.registry.shard_of(excluded.ticker) is None

        bench.sim.set_market_status(passing.ticker, "finalized")
        await sync_kalshi(secmaster_db, bench.sim.rest_url)
        await wait_until(lambda: len(commands_for(bench, passing.ticker, "delete_markets")) == 3, 15,
                         "delete_markets after settlement")
        assert await bench.connector.registry.shard_of(passing.ticker) is None, "the slot is given back"

        stored = await bench.stop_and_collect()
        frames = bench.assert_exactly_once(stored)
        new = [m for m in frames if parse_subject(m.subject).ticker == passing.ticker]
        assert new and {m.stream for m in new} == {f"{bench.env.name.upper()}_KALSHI_ECONOMICS"}
        assert bench.connector.sessions[0].sockets_opened == 1, "discovery never reconnects"
        assert bench.connector.follower is not None and bench.connector.follower.applied > 0
        metrics = bench.connector.metrics.render().decode()
        assert 'ssmd_markets_waiting{feed="kalshi",shard="0"} 0.0' in metrics
        assert re.search(r'ssmd_assigner_changes_handled\{feed="kalshi",shard="0"\} [1-9]', metrics), metrics
        assert 'ssmd_shard_membership_pending{feed="kalshi",shard="0"} 0.0' in metrics
    finally:
        stop.set()
        await asyncio.wait_for(cdc_task, 30)


async def test_two_shards_only_the_owner_subscribes(kalshi_bench: BenchFactory, secmaster_db: str) -> None:
    bench = await kalshi_bench(markets=10, rate=50, start_connector=False, use_registry=True, follow_cdc=True)
    await sync_kalshi(secmaster_db, bench.sim.rest_url)
    nc = await nats.connect(bench.nats_url)
    registry = await ShardRegistry.open(nc.jetstream(), bench.env.name, "kalshi")
    await registry.ensure_layout(shards=2, capacity=100)  # the last shard (1) has room: new markets go there
    await nc.close()
    stop = asyncio.Event()
    cdc = CdcPublisher(CdcOptions(env=bench.env.name, database_url=secmaster_db, nats_url=bench.nats_url))
    cdc_task = asyncio.create_task(cdc.run(stop))
    catalog = await discover_kalshi_catalog(bench.sim.rest_url)
    shard0 = bench.connector
    shard1 = Connector(bench.env, shard0.feed, shard0.candidates, shard0.directory, shard0.venues,
                             replace(shard0.options, shard=1))
    shard0.catalog = shard1.catalog = catalog
    try:
        await shard0.start()
        await shard1.start()
        await shard0.wait_subscribed(10)
        await shard1.wait_subscribed(10)
        assert shard0.sessions[0].markets == [] and len(shard1.sessions[0].markets) == len(shard0.candidates)
        market = await bench.sim.add_market(series_ticker="KXFED")
        await sync_kalshi(secmaster_db, bench.sim.rest_url)
        await wait_until(lambda: len(commands_for(bench, market.ticker, "add_markets")) == 3, 15,
                         "shard 1 to add the market on each channel")
        assert market.ticker in shard1.sessions[0].markets and market.ticker not in shard0.sessions[0].markets
        assert {conn for conn, c in bench.sim.commands if market.ticker in str(c)} == {
            bench.sim.connection_ids[-1]}, "only the owner's connection subscribes it"
    finally:
        bench.sim.pause()
        await shard1.shutdown()
        stop.set()
        await asyncio.wait_for(cdc_task, 30)


async def test_restarted_connector_resumes_its_shard_and_the_changes_it_missed(
    kalshi_bench: BenchFactory, secmaster_db: str
) -> None:
    bench = await kalshi_bench(markets=6, rate=50, start_connector=False, use_registry=True, follow_cdc=True)
    await sync_kalshi(secmaster_db, bench.sim.rest_url)
    stop = asyncio.Event()
    cdc = CdcPublisher(CdcOptions(env=bench.env.name, database_url=secmaster_db, nats_url=bench.nats_url))
    cdc_task = asyncio.create_task(cdc.run(stop))
    first = bench.connector
    first.catalog = await discover_kalshi_catalog(bench.sim.rest_url)
    second = Connector(bench.env, first.feed, [], first.directory, first.venues, first.options)
    try:
        await first.start()
        await first.wait_subscribed(10)
        before = await bench.sim.add_market(series_ticker="KXCPI")
        await sync_kalshi(secmaster_db, bench.sim.rest_url)
        await wait_until(lambda: before.ticker in first.sessions[0].markets, 15, "the live market to be added")
        assert await first.shutdown()

        during = await bench.sim.add_market(series_ticker="KXCPI")  # committed while the shard is down
        await sync_kalshi(secmaster_db, bench.sim.rest_url)
        second.catalog = first.catalog  # the catalog from before: `during` can only come from CDC
        connections = len(bench.sim.connection_ids)
        await second.start()
        await second.wait_subscribed(10)
        assert before.ticker in second.sessions[0].markets, "the shard's markets come back from KV"
        assert set(first.sessions[0].markets) <= set(second.sessions[0].markets)
        await wait_until(lambda: during.ticker in second.sessions[0].markets, 15,
                         "the change made while down to be assigned on resume")
        new_conn = bench.sim.connection_ids[connections]
        await wait_until(lambda: any(during.ticker in str(c) for conn, c in bench.sim.commands if conn == new_conn),
                         10, "the resumed shard to subscribe it")
        assert await second.registry.shard_of(during.ticker) == 0  # type: ignore[union-attr]
    finally:
        bench.sim.pause()
        await second.shutdown()
        stop.set()
        await asyncio.wait_for(cdc_task, 30)
