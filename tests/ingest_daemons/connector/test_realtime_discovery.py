"""Real-time discovery end to end: the exchange announces a market (market_lifecycle_v2 `created`), the
lifecycle connector captures it, the lifecycle consumer writes the secmaster row, CDC carries the change,
and the sharded connector subscribes the market — no REST sync involved."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats

from ingest_daemons.adapters.kalshi_auth import load_credentials
from ingest_daemons.adapters.venues import venue_factory
from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.connector.directory import build_directory, discover_kalshi_catalog
from ingest_daemons.connector.runner import Connector, ConnectorOptions
from ingest_daemons.logs import get_logger
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher
from ingest_daemons.secmaster.kalshi_sync import sync_kalshi
from ingest_daemons.secmaster.lifecycle import LifecycleConsumer, LifecycleOptions
from ingest_daemons.sim.kalshi import KalshiSimulator
from ingest_daemons.streams import reconcile
from tests.fixtures.config import WriteEnv
from tests.fixtures.kalshi import CATEGORIES, PER_SHARD_SCOPE
from tests.fixtures.keys import KeyPair
from tests.helpers import wait_until

log = get_logger("tests.realtime_discovery")


async def test_created_event_to_subscription(
    nats_server: NatsServer, write_env: WriteEnv, unique_env: str, kalshi_keys: KeyPair, secmaster_db: str
) -> None:
    sim = KalshiSimulator(public_key_pem=kalshi_keys.public_pem, markets=8, rate=50, seed=3)
    await sim.start()
    root = write_env(unique_env, nats_url=nats_server.url, streams={"max_age": "1h", "max_bytes": "128MiB"},
                     feeds={"kalshi": {"categories": CATEGORIES, "channel_scope": PER_SHARD_SCOPE,
                                       "endpoint": {"ws": sim.ws_url, "rest": sim.rest_url}}})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=Path(root).parent), unique_env)
    nc = await nats.connect(nats_server.url)
    await reconcile(nc.jetstream(), env, apply=True)
    await nc.close()
    await sync_kalshi(secmaster_db, sim.rest_url)  # the baseline; from here on only lifecycle events
    feed = env.feeds["kalshi"]
    credentials = load_credentials(kalshi_keys.key_id, kalshi_keys.pkcs8_path)
    catalog = await discover_kalshi_catalog(sim.rest_url)
    quick = {"metrics_port": None, "backoff_initial_s": 0.05, "backoff_max_s": 0.5, "ack_timeout_s": 1.0}
    venues = venue_factory(feed.feed, credentials)
    lifecycle = Connector(env, feed, [], build_directory([], []), venues, ConnectorOptions(lifecycle=True, **quick))
    market_data = Connector(env, feed, [m.ticker for m in catalog.markets if m.category],
                            build_directory(feed.stream_categories(), catalog.markets), venues,
                            ConnectorOptions(use_registry=True, follow_cdc=True, **quick))
    market_data.catalog = catalog
    stop = asyncio.Event()
    consumer = LifecycleConsumer(LifecycleOptions(env=unique_env, database_url=secmaster_db, nats_url=nats_server.url,
                                                  fetch_timeout_s=0.2))
    cdc = CdcPublisher(CdcOptions(env=unique_env, database_url=secmaster_db, nats_url=nats_server.url))
    tasks = [asyncio.create_task(consumer.run(stop)), asyncio.create_task(cdc.run(stop))]
    try:
        await lifecycle.start()
        await market_data.start()
        await lifecycle.wait_subscribed(10)
        await market_data.wait_subscribed(10)

        created_at = time.monotonic()
        market = await sim.add_market(series_ticker="KXINXD")  # Financials: captured

        def subscribed() -> bool:
            return any(c.get("cmd") == "update_subscription" and c["params"].get("action") == "add_markets"
                       and market.ticker in c["params"].get("market_tickers", []) for _, c in sim.commands)

        await wait_until(subscribed, 15, "the sharded connector to add the announced market")
        log.info("announced market subscribed", latency_s=round(time.monotonic() - created_at, 3))
        await wait_until(lambda: any(f.market_ticker == market.ticker and f.type == "trade" for f in sim.sent_frames),
                         10, "trades of the new market")
        assert market.ticker in market_data.sessions[0].markets
    finally:
        stop.set()
        sim.pause()
        await market_data.shutdown()
        await lifecycle.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sim.stop()
