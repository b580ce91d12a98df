"""Polymarket's markets follow the secmaster like Kalshi's: the exchange announces a market (new_market), the
connector stores the announcement, the lifecycle consumer writes the rows, CDC carries them, the assigner
puts the tokens on a shard, and the shard's live socket subscribes them — no reconnect, no REST sync. A
resolution takes them off again. Real nats-server, PostgreSQL and the Polymarket simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ingest_daemons.connector.secmaster_catalog import load_catalog
from ingest_daemons.connector.secmaster_view import POLYMARKET_STATES
from ingest_daemons.naming import parse_subject
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher
from ingest_daemons.secmaster.lifecycle import LifecycleConsumer, LifecycleOptions
from ingest_daemons.secmaster.polymarket_lifecycle import parse_polymarket_frame
from ingest_daemons.secmaster.polymarket_sync import PolymarketSyncOptions, sync_polymarket
from tests.fixtures.polymarket import PolymarketBench, PolymarketBenchFactory
from tests.helpers import wait_until


def held_tokens(bench: PolymarketBench) -> set[str]:
    return {t for assets in bench.sim.subscriptions().values() for t in assets}


@contextlib.asynccontextmanager
async def secmaster_pipeline(bench: PolymarketBench, database_url: str) -> AsyncIterator[None]:
    """The CDC publisher and Polymarket's lifecycle consumer, running until the block ends."""
    stop = asyncio.Event()
    cdc = CdcPublisher(CdcOptions(env=bench.env.name, database_url=database_url, nats_url=bench.nats_url,
                                  poll_interval_s=0.05))
    lifecycle = LifecycleConsumer(LifecycleOptions(
        env=bench.env.name, database_url=database_url, nats_url=bench.nats_url, feed="polymarket",
        parser=parse_polymarket_frame, fetch_timeout_s=0.2, backoff_initial_s=0.05, backoff_max_s=0.2))
    tasks = [asyncio.create_task(cdc.run(stop)), asyncio.create_task(lifecycle.run(stop))]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def test_announced_market_reaches_the_live_socket_and_leaves_when_resolved(
    polymarket_bench: PolymarketBenchFactory, secmaster_db: str
) -> None:
    bench = await polymarket_bench(markets=4, start_connector=False, use_registry=True, follow_cdc=True)
    feed = bench.env.feeds["polymarket"]
    await sync_polymarket(secmaster_db, bench.sim.rest_url, feed.feed.category_for_tags,
                          PolymarketSyncOptions(apply_migrations=False))
    bench.connector.catalog = None  # the assigner's view comes from the secmaster, not from Gamma
    bench.connector.catalog_loader = lambda: load_catalog(secmaster_db, "polymarket", POLYMARKET_STATES)
    async with secmaster_pipeline(bench, secmaster_db):
        await bench.connector.start()
        await bench.connector.wait_subscribed(10)
        registry = bench.connector.registry
        assert registry is not None and bench.connector.follower is not None
        session = bench.connector.sessions[0]
        assert sorted(await registry.members(0)) == sorted(session.markets)

        existing = bench.sim.markets[0]
        category = bench.connector.directory.category_of(existing.token_ids[0])
        assert category != "uncategorized"
        market = await bench.sim.add_market(event_id=existing.event_id)  # announced; not in Gamma's listing yet
        tokens = list(market.token_ids)
        await bench.sim.wait_for(lambda: set(tokens) <= held_tokens(bench), 15)
        assert any(c.get("operation") == "subscribe" and set(tokens) <= set(c["assets_ids"])
                   for _, c in bench.sim.commands), "added on the open socket"
        await wait_until(lambda: sum(e[2] in tokens for e in bench.sim.sent_elements) >= 4, 10,
                         "the new tokens' first frames")
        assert {await registry.shard_of(t) for t in tokens} == {0}

        await bench.sim.resolve_market(market.condition_id)
        await bench.sim.wait_for(lambda: not set(tokens) & held_tokens(bench), 15)
        assert {await registry.shard_of(t) for t in tokens} == {None}, "the slots are given back"
        assert session.sockets_opened == 1 and len(bench.connector.sessions) == 1, "no reconnect, no new socket"
        stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    first = [m for m in data if parse_subject(m.subject).ticker in tokens]
    assert first, "the new tokens' frames are stored"
    assert {parse_subject(m.subject).category for m in first} == {category}, "in the event's category stream"
