"""A network partition between a connector and its NATS server: the two sit in their own network
namespaces joined by a veth pair, and the link goes down for 30 s. The connector holds what it read
up to its in-flight bound, then stops reading the exchange (backpressure) instead of dropping or
growing without bound, reconnects when the link returns, and every frame is stored exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.kalshi import BenchFactory, KalshiBench
from tests.fixtures.netns import VethLink
from tests.helpers import wait_until

PARTITION_S = 30.0
MAX_IN_FLIGHT = 2000


async def flow(bench: KalshiBench, frames: int, within_s: float = 30.0) -> None:
    target = len(bench.sim.sent_frames) + frames
    await wait_until(lambda: len(bench.sim.sent_frames) >= target, within_s, f"{frames} more frames from the exchange")


async def wait_stalled(bench: KalshiBench, quiet_s: float, within_s: float) -> int:
    """Until the exchange has sent nothing new for ``quiet_s`` (its socket to the connector is full);
    returns how many frames it had sent by then."""
    deadline = time.monotonic() + within_s
    count, since = len(bench.sim.sent_frames), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, (
            f"the exchange kept sending for {within_s}s with the link down ({count} frames): no backpressure")
        await asyncio.sleep(0.1)
        if len(bench.sim.sent_frames) != count:
            count, since = len(bench.sim.sent_frames), time.monotonic()
    return count


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_30s_partition_loses_nothing(kalshi_bench: BenchFactory, veth_link: VethLink, tmp_path: Path) -> None:
    started = time.monotonic()
    # The simulator and the connector share the client namespace's loopback: with small socket buffers
    # there, the exchange feels the connector's backpressure within seconds.
    veth_link.cap_socket_buffers(veth_link.client_ns, 256 * 1024)
    with veth_link.inside(veth_link.server_ns):
        server = NatsServer(tmp_path / "nats", host=veth_link.server_address, max_file_store=2**34).start()
    try:
        with veth_link.inside(veth_link.client_ns):
            bench = await kalshi_bench(nats_url=server.url, rate=1500, markets=12, max_in_flight=MAX_IN_FLIGHT)
            await bench.connector.wait_subscribed(20)
            await flow(bench, 1000)
            publisher = bench.connector.publisher
            reconnects = publisher.reconnects
            veth_link.down()
            cut = time.monotonic()
            await wait_until(lambda: publisher.in_flight >= MAX_IN_FLIGHT, 10, "the in-flight bound reached")
            await wait_until(lambda: not publisher.connected, PARTITION_S, "the publisher noticing the dead link")
            noticed_s = time.monotonic() - cut
            stalled_at = await wait_stalled(bench, quiet_s=3.0, within_s=PARTITION_S - noticed_s)
            stalled_s = time.monotonic() - cut
            # the partition lasts its full 30 s: a duration, not a wait for a condition
            await asyncio.sleep(max(0.0, PARTITION_S - (time.monotonic() - cut)))
            assert len(bench.sim.sent_frames) == stalled_at, "the connector read frames it could not hold"
            assert publisher.in_flight == MAX_IN_FLIGHT
            veth_link.up()
            healed = time.monotonic()
            await wait_until(lambda: publisher.connected and publisher.reconnects > reconnects, 30,
                             "the publisher reconnected")
            reconnected_s = time.monotonic() - healed
            await flow(bench, 1000)
            stored = await bench.stop_and_collect()
            frames = bench.assert_exactly_once(stored)
    finally:
        server.stop()
    print(f"partition: dead link noticed after {noticed_s:.1f}s, exchange stalled after {stalled_s:.1f}s "
          f"({stalled_at} frames sent), reconnected {reconnected_s:.1f}s after the link came back, "
          f"frames={len(frames)} retried={publisher.retried} took={time.monotonic() - started:.1f}s")
