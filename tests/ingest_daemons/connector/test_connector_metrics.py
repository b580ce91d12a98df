"""What a connector's ``/metrics`` says about its shard, read over HTTP from a connector running against
a simulator and a real nats-server."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ingest_daemons.connector.runner import Connector, ConnectorOptions
from tests.fixtures.kalshi import BenchFactory
from tests.fixtures.polymarket import PolymarketBenchFactory
from tests.helpers import wait_until


async def scrape(connector: Connector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) → value, from the connector's own ``/metrics`` endpoint."""
    assert connector.health is not None
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{connector.health.port}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def per_connection_limit(exchanges_dir: Path, feed: str, markets: int) -> None:
    feed_file = exchanges_dir / "feeds" / f"{feed}.yaml"
    config = yaml.safe_load(feed_file.read_text())
    config["limits"].update(markets_per_connection=markets, markets_per_subscription=markets, connections=5000,
                            connection_stagger="0s")
    feed_file.write_text(yaml.safe_dump(config))


async def test_markets_subscribed_is_the_shards_total_over_its_connections(
    polymarket_bench: PolymarketBenchFactory, exchanges_dir: Path,
) -> None:
    per_connection_limit(exchanges_dir, "polymarket", 4)
    bench = await polymarket_bench(markets=5, rate=50)  # 10 token ids, 4 per connection: 4 + 4 + 2
    connector = bench.connector
    assert [len(s.markets) for s in connector.sessions] == [4, 4, 2]
    await connector.wait_subscribed(20)
    key = ("ssmd_markets_subscribed", (("feed", "polymarket"), ("shard", "0")))
    assert (await scrape(connector))[key] == 10

    # A live removal on one connection lowers the shard's total, not the gauge to that connection's count.
    gone = connector.sessions[0].markets[:3]
    assert sorted(await connector.pool.remove_markets(gone)) == sorted(gone)
    assert (await scrape(connector))[key] == 7
    # A live addition goes to the connection with room and counts there, on top of the others.
    added = await connector.pool.add_markets(gone)
    assert sorted(added) == sorted(gone)
    await wait_until(lambda: all(s.subscribed.is_set() for s in connector.sessions), 20, "every connection subscribed")
    assert (await scrape(connector))[key] == 10
    await bench.stop_and_collect()


def test_unsharded_connectors_say_what_they_are_instead_of_shard_0() -> None:
    assert ConnectorOptions(shard=3).shard_label == "3"
    assert ConnectorOptions(all_markets=True).shard_label == "all"
    assert ConnectorOptions(lifecycle=True).shard_label == "lifecycle"


async def test_the_all_markets_connector_is_labelled_all_in_metrics_and_logs(
    kalshi_bench: BenchFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ssmd")
    bench = await kalshi_bench(markets=6, rate=300, all_markets=True)
    connector = bench.connector
    await connector.wait_subscribed(10)
    await wait_until(lambda: connector.metrics.by_type.get("trade", 0) > 0, 10, "a trade published")
    samples = await scrape(connector)
    shards = {dict(labels).get("shard") for name, labels in samples if name.startswith("ssmd_")}
    assert shards == {"all"}, f"metrics name shard(s) {shards}"
    assert samples[("ssmd_messages_total", (("feed", "kalshi"), ("shard", "all"), ("type", "trade")))] > 0
    await bench.stop_and_collect()
    logged = {record.getMessage(): getattr(record, "fields", {}).get("shard") for record in caplog.records
              if "shard" in getattr(record, "fields", {})}
    assert {"connector started", "connected", "subscribed", "draining"} <= set(logged)
    assert set(logged.values()) == {"all"}, f"logs name shard(s) {set(logged.values())}"
