"""A minute of sustained flow with every fault in turn: still exactly once (marked slow; `-m slow`).

The default suite proves each fault on a few hundred frames; this runs them back to back on a
hundred thousand, where batching in the reader and whole-buffer ack handling in the publisher
are actually exercised.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ingest_daemons.logs import get_logger
from tests.fixtures.kalshi import BenchFactory
from tests.helpers import wait_until

log = get_logger("tests.soak")

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
async def test_a_minute_of_faults_under_load_loses_and_doubles_nothing(
    kalshi_bench: BenchFactory, private_nats_server  # type: ignore[no-untyped-def]
) -> None:
    bench = await kalshi_bench(markets=40, rate=2500, nats_url=private_nats_server.url, idle_timeout_s=2.0)
    await bench.connector.wait_subscribed(10)
    started = time.monotonic()

    async def run_for(seconds: float) -> None:
        await asyncio.sleep(seconds)
        log.info("soak", elapsed_s=round(time.monotonic() - started), sent=len(bench.sim.sent_frames),
                 acked=bench.connector.publisher.acked, in_flight=bench.connector.publisher.in_flight)

    await run_for(8)
    await bench.sim.close_connections(code=1011)
    await run_for(8)
    bench.sim.skip_seq(3)
    await bench.sim.send_malformed()
    await run_for(8)
    private_nats_server.stop()  # the connector keeps reading and holds what it read
    await run_for(5)
    assert bench.connector.publisher.in_flight > 0
    private_nats_server.start()
    await run_for(8)
    bench.sim.stall(3 * bench.connector.options.idle_timeout_s)
    await wait_until(lambda: bench.connector.sessions[0].sockets_opened >= 3, 60, "the stall to be replaced")
    await bench.connector.wait_subscribed(20)
    await run_for(10)
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored)
    log.info("soak done", frames=len(frames), seconds=round(time.monotonic() - started))
    assert len(frames) > 50_000
