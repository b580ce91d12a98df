"""A connector told to stop while NATS is away: its publisher is full, so its reader is held, and the
exchange's answer to the unsubscribe waits in the socket behind frames the connector cannot publish yet.
Giving up on that answer after the command timeout and closing the socket would drop every frame still
on the wire while the shutdown reported nothing lost; time held by our own backpressure must not count."""

from __future__ import annotations

import asyncio

from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.kalshi import BenchFactory
from tests.helpers import wait_until

COMMAND_TIMEOUT_S = 1.0
HELD_S = 14.0


async def test_stopping_while_the_publisher_is_full_publishes_every_frame_the_exchange_sent(
    kalshi_bench: BenchFactory, private_nats_server: NatsServer
) -> None:
    bench = await kalshi_bench(nats_url=private_nats_server.url, rate=600, max_in_flight=200,
                               command_timeout_s=COMMAND_TIMEOUT_S)
    await bench.connector.wait_subscribed(10)
    await bench.sent_more(300)
    publisher = bench.connector.publisher
    private_nats_server.stop()
    await wait_until(lambda: publisher.full, 10, "the publisher full (the in-flight bound reached)")
    await bench.sent_more(200)  # written into the socket the held reader no longer reads
    bench.sim.pause()
    shutdown = asyncio.create_task(bench.connector.shutdown())
    # NATS stays away longer than every bound of the stop (the command timeout, the 2 s close, the 10 s
    # wait for each task): a duration, not a wait for a condition
    await asyncio.sleep(HELD_S)
    assert not shutdown.done()
    private_nats_server.start()
    assert await asyncio.wait_for(shutdown, 60), "the connector reported frames lost"
    bench.assert_exactly_once(await bench.stored())
