"""A server entering lame-duck mode is left before it goes: the publisher moves on while it still answers."""

from __future__ import annotations

import asyncio
import time

import nats
from nats.aio.client import Client
from nats.js import api as js_api

from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.publisher import HeaderTemplate, JetStreamPublisher
from tests.helpers import wait_until
from tests.ingest_daemons.test_publisher import stream_messages


async def make_stream_on_staying(nc: Client, name: str, subject: str) -> None:
    """Retried until the two-node JetStream cluster has elected its meta leader (about a second)."""
    config = js_api.StreamConfig(name=name, subjects=[subject], duplicate_window=120, num_replicas=1,
                                 placement=js_api.Placement(tags=["staying"]))
    deadline = time.monotonic() + 20
    while True:
        try:
            await nc.jetstream(timeout=2).add_stream(config)
            return
        except (nats.errors.Error, nats.js.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_publisher_moves_to_the_other_server_before_the_lame_duck_leaves(
    lame_duck_pair: tuple[NatsServer, NatsServer], unique_env: str
) -> None:
    leaving, staying = lame_duck_pair
    nc = await nats.connect(staying.url, connect_timeout=5)
    try:
        await make_stream_on_staying(nc, f"{unique_env}_LD", f"{unique_env}.ld.>")
        publisher = JetStreamPublisher(f"{leaving.url},{staying.url}", ack_timeout_s=1.0)
        await publisher.start()
        assert publisher.address.port == leaving.port
        headers = HeaderTemplate("ld:", {"Ssmd-Shard": "0"})
        sent: list[bytes] = []
        stop = asyncio.Event()

        async def keep_publishing() -> None:
            while not stop.is_set():
                frame = b'{"n":%d}' % len(sent)
                await publisher.publish(f"{unique_env}.ld.json.t.K", frame, headers.render(len(sent), 1))
                sent.append(frame)
                await asyncio.sleep(0.002)

        producer = asyncio.create_task(keep_publishing())
        await wait_until(lambda: publisher.acked > 100, 10, "acks through the server about to leave")
        leaving.lame_duck()
        signalled = time.monotonic()
        await wait_until(lambda: publisher.address.port == staying.port and publisher.connected, 10,
                         "the publisher on the staying server")
        moved_after = time.monotonic() - signalled
        # moved while the server still served its clients: it closes them only after its 5 s grace period
        assert leaving.running and moved_after < 5.0
        assert publisher.lame_duck_moves == 1
        await asyncio.to_thread(leaving.stop)  # the server leaves
        acked = publisher.acked
        await wait_until(lambda: publisher.acked > acked + 100, 10, "acks after the lame duck left")
        stop.set()
        await producer
        assert await publisher.drain(10)
        assert publisher.reconnects == 1 and publisher.lame_duck_moves == 1  # one move, no outage after it
        await publisher.close()
        stored = await stream_messages(nc, f"{unique_env}_LD")
        assert [data for _, data, _ in stored] == sent  # nothing lost, nothing doubled, in order
    finally:
        await nc.close()
