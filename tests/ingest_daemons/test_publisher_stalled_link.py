"""A link that stops carrying the publisher's writes (a partition under load): its socket fills, the
publisher's writes back up past the high-water mark, the dead connection is dropped, and the next one
takes frames again — the write pause of the dropped socket must not outlive it."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.publisher import JetStreamPublisher, header_block
from tests.fixtures.tcp_proxy import ProxyFactory
from tests.helpers import wait_until
from tests.ingest_daemons.test_publisher import make_stream

FRAME = b"x" * 1024
FRAMES = 1000  # 1 MiB held: less than the write high-water mark, so the next connection never pauses


async def test_the_publisher_takes_frames_again_after_a_connection_whose_writes_backed_up(
    nats_server: NatsServer, nc: Client, tcp_proxy: ProxyFactory, unique_env: str
) -> None:
    stream, subject = f"{unique_env}_STALL", f"{unique_env}.stall"
    await make_stream(nc, stream, subject + ".>")
    proxy = await tcp_proxy("127.0.0.1", nats_server.port)
    # Re-sends every 0.1 s pile up behind the unread socket and pass the high-water mark long before
    # three missed pings (2 s apart) drop the connection.
    publisher = JetStreamPublisher(proxy.url, ack_timeout_s=0.1, ping_interval_s=2.0, max_in_flight=100_000)
    await publisher.start()
    try:
        async with proxy.client_unread():
            for i in range(FRAMES):
                publisher.publish_nowait(f"{subject}.a", FRAME, header_block({"Nats-Msg-Id": f"a{i}"}))
            assert not publisher.full
            await wait_until(lambda: publisher.full, 10, "the publisher's writes backing up")
            assert 0 < publisher.in_flight <= FRAMES  # full from the write pause, far below the in-flight bound
            await wait_until(lambda: not publisher.connected, 15, "the publisher dropping the dead connection")
        await wait_until(lambda: publisher.connected, 10, "the publisher on a new connection")
        assert await publisher.drain(20), f"{publisher.in_flight} frames unacknowledged after the link came back"
        assert not publisher.full, "the publisher is still full with nothing in flight"
        for i in range(10):
            await asyncio.wait_for(publisher.publish(f"{subject}.b", b"{}", header_block({"Nats-Msg-Id": f"b{i}"})), 5)
        assert await publisher.drain(10)
        info = await nc.jetstream().stream_info(stream)
        assert info.state.messages == FRAMES + 10
    finally:
        await publisher.close()
