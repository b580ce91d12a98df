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

FRAME = b"x" * 16 * 1024
MAX_FRAMES = 3 * 1024  # 48 MiB: far more than loopback's socket buffers and the write high-water mark


async def test_the_publisher_takes_frames_again_after_a_connection_whose_writes_backed_up(
    nats_server: NatsServer, nc: Client, tcp_proxy: ProxyFactory, unique_env: str
) -> None:
    stream, subject = f"{unique_env}_STALL", f"{unique_env}.stall"
    await make_stream(nc, stream, subject + ".>")
    proxy = await tcp_proxy("127.0.0.1", nats_server.port)
    # Both in-flight bounds far above what the socket takes: the publisher can only be full because its
    # writes backed up. The silent link is then dropped (frames overdue, no answer to a ping within a
    # second), and no new connection gets through until the proxy reads again.
    publisher = JetStreamPublisher(proxy.url, ack_timeout_s=0.5, ping_timeout_s=1.0, ping_interval_s=2.0,
                                   max_in_flight=10 * MAX_FRAMES, max_in_flight_bytes=256 * 1024 * 1024)
    await publisher.start()
    try:
        async with proxy.client_unread():
            sent = 0
            while not publisher.full and sent < MAX_FRAMES:
                for _ in range(64):
                    publisher.publish_nowait(f"{subject}.a", FRAME, header_block({"Nats-Msg-Id": f"a{sent}"}))
                    sent += 1
                await asyncio.sleep(0)  # the loop turn that writes them
            assert publisher.full, f"{sent} frames written into an unread socket without its writes backing up"
            # (a read the proxy had begun may have carried the first few through, and their acks came back)
            assert 0 < publisher.in_flight <= sent and publisher.in_flight_bytes < publisher.max_in_flight_bytes
            await wait_until(lambda: not publisher.connected, 15, "the publisher dropping the dead connection")
            # the pause belonged to the dropped socket: held frames wait for the next one, callers go on
            assert not publisher.full, "the dropped socket's write pause outlived it"
        await wait_until(lambda: publisher.connected, 15, "the publisher on a new connection")
        assert await publisher.drain(30), f"{publisher.in_flight} frames unacknowledged after the link came back"
        assert not publisher.full, "the publisher is still full with nothing in flight"
        for i in range(10):
            await asyncio.wait_for(publisher.publish(f"{subject}.b", b"{}", header_block({"Nats-Msg-Id": f"b{i}"})), 5)
        assert await publisher.drain(10)
        info = await nc.jetstream().stream_info(stream)
        assert info.state.messages == sent + 10
    finally:
        await publisher.close()
