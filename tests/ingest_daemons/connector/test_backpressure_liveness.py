"""Backpressure is not a dead exchange: while NATS is away and the publisher is full, the connector
stops reading its exchange socket for longer than the stall watchdog and the keep-alive allow, and
keeps that socket (closing it would lose every frame buffered in it)."""

from __future__ import annotations

import asyncio

from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.kalshi import BenchFactory
from tests.helpers import wait_until

IDLE_TIMEOUT_S = 2.0
HEARTBEAT_S = 1.0  # a keep-alive every second, answered within half a second or the socket is dead


async def test_a_full_publisher_for_longer_than_the_liveness_checks_keeps_the_exchange_socket(
    kalshi_bench: BenchFactory, private_nats_server: NatsServer
) -> None:
    bench = await kalshi_bench(nats_url=private_nats_server.url, rate=600, max_in_flight=200,
                               idle_timeout_s=IDLE_TIMEOUT_S, heartbeat_s=HEARTBEAT_S)
    await bench.connector.wait_subscribed(10)
    await bench.sent_more(300)
    session = bench.connector.sessions[0]
    publisher = bench.connector.publisher
    private_nats_server.stop()
    await wait_until(lambda: publisher.full, 10, "the publisher full (the in-flight bound reached)")
    # held back for twice the watchdog's limit: a duration, not a wait for a condition
    await asyncio.sleep(2 * IDLE_TIMEOUT_S)
    assert publisher.full and session.sockets_opened == 1
    private_nats_server.start()
    await bench.sent_more(300)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    assert session.sockets_opened == 1, "the exchange socket was replaced during backpressure"
