"""A connector flooding a real 3-node JetStream cluster (R3 streams) while the stream leader is killed and
restarted: every frame the exchange sent is stored exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import nats
import nats.errors
import pytest

from ingest_daemons.nats_client import list_streams, server_list
from tests.fixtures.kalshi import BenchFactory, KalshiBench
from tests.fixtures.nats import NatsCluster
from tests.helpers import wait_until


async def flow(bench: KalshiBench, frames: int, within_s: float = 30.0) -> None:
    target = len(bench.sim.sent_frames) + frames
    await wait_until(lambda: len(bench.sim.sent_frames) >= target, within_s, f"{frames} more frames from the exchange")


async def busiest_stream_leader(cluster: NatsCluster, env: str, timeout_s: float = 30.0) -> tuple[str, str]:
    """(stream, leader's server name) of the environment's Kalshi stream holding the most messages.

    Retried until the deadline: while a killed node's leaderships move, the JetStream API may not answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            nc = await nats.connect(server_list(cluster.url), connect_timeout=2, max_reconnect_attempts=1)
            try:
                infos = [i for i in await list_streams(nc.jetstream())
                         if (i.config.name or "").startswith(env.upper() + "_KALSHI_")]
            finally:
                await nc.close()
            busiest = max(infos, key=lambda i: i.state.messages)
            if busiest.cluster is not None and busiest.cluster.leader:
                assert busiest.config.num_replicas == 3
                return busiest.config.name or "", busiest.cluster.leader
        except (nats.errors.Error, OSError, TimeoutError):
            pass
        assert time.monotonic() < deadline, "no stream leader within the deadline"
        await asyncio.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("victim_role", ["stream leader", "publisher's server"])
async def test_killing_a_node_during_a_flood_loses_and_duplicates_nothing(
    kalshi_bench: BenchFactory, nats_cluster: NatsCluster, victim_role: str
) -> None:
    started = time.monotonic()
    bench = await kalshi_bench(nats_url=nats_cluster.url, rate=1500, markets=12, streams={"replicas": 3})
    await bench.connector.wait_subscribed(20)
    await flow(bench, 1500)
    publisher = bench.connector.publisher
    stream, leader = await busiest_stream_leader(nats_cluster, bench.env.name)
    if victim_role == "stream leader":
        victim = nats_cluster.node(leader)
    else:
        victim = next(node for node in nats_cluster.nodes if node.port == publisher.address.port)
    moves_before = publisher.reconnects
    victim.kill()  # SIGKILL: no lame duck, no flush
    await flow(bench, 3000)  # the flood goes on while a new leader is elected and the publisher moves
    _, new_leader = await busiest_stream_leader(nats_cluster, bench.env.name)
    if victim_role == "stream leader":
        assert new_leader != leader, f"{stream} still led by the killed node {leader}"
    else:
        assert publisher.reconnects > moves_before and publisher.address.port != victim.port
    victim.start()
    await flow(bench, 1500)
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored)
    assert len(frames) >= 6000
    print(f"victim={victim_role} frames={len(frames)} retried={publisher.retried} reconnects={publisher.reconnects} "
          f"streams={dict(Counter(m.stream for m in frames))} took={time.monotonic() - started:.1f}s")
