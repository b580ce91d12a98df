"""A burst of new markets costs round trips per burst, not per market, and each market is still
assigned exactly once when two assigners offer the same burst at the same time."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import nats
import pytest

from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.shard_assign import plan_reservations
from ingest_daemons.shard_keys import ShardLayout
from ingest_daemons.shards import ShardRegistry
from tests.fixtures.tcp_proxy import ProxyFactory

LATENCY_S = 0.1  # added to every answer from the server: one round trip costs at least this
BURST = 300
SHARDS, CAPACITY = 4, 100
# Reads, reservations, claims, re-reads of lost claims, give-backs and membership writes, over a few
# rounds of racing: tens of round trips. A step per market costs the writer that loses the claim
# races one round trip per market it lost (a hundred and more here).
ROUND_TRIP_BUDGET = 40


def test_reservations_take_the_last_shard_with_room_first() -> None:
    layout = ShardLayout(shards=4, capacity=10)
    assert plan_reservations({3: 4, 2: 10, 1: 0}, layout, 12) == {3: 6, 1: 6}
    assert plan_reservations({3: 10, 2: 10, 1: 10, 0: 10}, layout, 1) == {}
    assert plan_reservations({}, layout, 3) == {3: 3}


async def test_a_burst_costs_round_trips_per_burst_not_per_market_and_assigns_each_market_once(
    nats_server: NatsServer, unique_env: str, tcp_proxy: ProxyFactory
) -> None:
    """Two assigners, each behind a link that delays every answer by LATENCY_S, offer the same burst
    of BURST new markets at once. Both must finish within ROUND_TRIP_BUDGET round trips, agree on
    every market's shard, and leave one claim, one membership key and one counted slot per market."""
    admin = await nats.connect(nats_server.url)
    setup = await ShardRegistry.open(admin.jetstream(), unique_env, "kalshi")
    await setup.ensure_layout(shards=SHARDS, capacity=CAPACITY)
    proxies = [await tcp_proxy(nats_server.host, nats_server.port) for _ in range(2)]
    conns = [await nats.connect(p.url) for p in proxies]
    try:
        registries = [await ShardRegistry.open(c.jetstream(), unique_env, "kalshi") for c in conns]
        for proxy in proxies:
            proxy.latency_s = LATENCY_S
        burst = [(f"KXBURST-{i:03d}", "economics") for i in range(BURST)]
        budget_s = ROUND_TRIP_BUDGET * LATENCY_S
        started = time.monotonic()
        try:
            results = await asyncio.wait_for(asyncio.gather(*(r.assign_many(burst) for r in registries)), budget_s)
        except TimeoutError:
            pytest.fail(f"a burst of {BURST} markets took more than {ROUND_TRIP_BUDGET} round trips "
                        f"({budget_s:.1f} s at {LATENCY_S} s each)")
        elapsed = time.monotonic() - started
        for proxy in proxies:
            proxy.latency_s = 0.0

        first, second = results
        assert first == second, "both assigners report the same shard for every market"
        assert set(first) == {t for t, _ in burst} and None not in first.values(), "every market found room"
        counts = Counter(first.values())
        assert all(n <= CAPACITY for n in counts.values()) and sum(counts.values()) == BURST
        for shard in range(SHARDS):
            members = await setup.members(shard)
            assert sorted(members) == sorted(t for t, s in first.items() if s == shard), f"shard {shard}'s members"
            assert set(members.values()) <= {"economics"}
        assert {s.shard: s.load for s in await setup.states()} == {s: counts.get(s, 0) for s in range(SHARDS)}, \
            "the reservation counters match the claims: every lost claim gave its slot back"
        assert elapsed >= LATENCY_S  # the latency was in force
    finally:
        for conn in conns:
            await conn.close()
        await admin.close()


async def test_a_bucket_without_direct_gets_is_read_one_key_at_a_time(nats_server: NatsServer, unique_env: str) -> None:
    """A bucket whose stream answers no direct gets (an old bucket a role without stream administration
    opened first) still assigns correctly: the batched read falls back to one request per key."""
    nc = await nats.connect(nats_server.url)
    try:
        registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
        await registry.ensure_layout(shards=2, capacity=3)
        assert await registry.assign("KXOLD-0") == 1
        info = await nc.jetstream().stream_info(f"KV_{registry.bucket}")
        info.config.allow_direct = False
        await nc.jetstream().update_stream(info.config)
        result = await registry.assign_many([(f"KXOLD-{i}", None) for i in range(7)])
        assert result["KXOLD-0"] == 1, "the existing claim was read"
        assert Counter(result.values()) == {1: 3, 0: 3, None: 1}
        assert {s.shard: s.load for s in await registry.states()} == {0: 3, 1: 3}
    finally:
        await nc.close()
