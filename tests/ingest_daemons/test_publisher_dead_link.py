"""A link that dies without a word (a partition: no FIN, no RST, the peer just stops answering) while the
publisher holds frames. The publisher must notice within an ack timeout and a ping timeout, re-send
nothing into the silent socket, and once the link is back, reconnect and store every frame exactly once.

Server and publisher sit in two network namespaces joined by a veth pair (``tests/fixtures/netns.py``)
whose link the test takes down and brings back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats

from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.publisher import JetStreamPublisher, header_block
from tests.fixtures.netns import VethLink
from tests.helpers import wait_until
from tests.ingest_daemons.test_publisher import make_stream, stream_messages

ACK_TIMEOUT_S = 0.5
PING_TIMEOUT_S = 1.0
PING_INTERVAL_S = 5.0  # the keepalive alone would take three of these to give up on the link
CUT_S = 8.0
BEFORE, DURING = 100, 300
RECOVERED_WITHIN_S = 4.0


async def test_a_silent_link_is_dropped_quickly_without_resends_into_it_and_nothing_is_lost(
    veth_link: VethLink, tmp_path: Path
) -> None:
    with veth_link.inside(veth_link.server_ns):
        server = NatsServer(tmp_path / "nats", host=veth_link.server_address, max_file_store=2**34).start()
    try:
        with veth_link.inside(veth_link.client_ns):
            nc = await nats.connect(server.url, connect_timeout=5)
            await make_stream(nc, "DEADLINK", "dead.>")
            await nc.close()
            publisher = JetStreamPublisher(server.url, ack_timeout_s=ACK_TIMEOUT_S, ping_timeout_s=PING_TIMEOUT_S,
                                           ping_interval_s=PING_INTERVAL_S)
            await publisher.start()
            try:
                for i in range(BEFORE):
                    await publisher.publish("dead.a", b'{"n":%d}' % i, header_block({"Nats-Msg-Id": f"a{i}"}))
                assert await publisher.drain(10)

                veth_link.down()
                cut = time.monotonic()
                retried = publisher.retried
                for i in range(DURING):
                    await publisher.publish("dead.b", b'{"n":%d}' % i, header_block({"Nats-Msg-Id": f"b{i}"}))
                await wait_until(lambda: not publisher.connected, ACK_TIMEOUT_S + PING_TIMEOUT_S + 4.0,
                                 "the publisher dropping the silent connection")
                noticed_s = time.monotonic() - cut
                assert publisher.retried == retried, "frames were re-sent into the silent socket"
                assert publisher.dead_links == 1 and publisher.in_flight == DURING
                # the partition lasts its full length: a duration, not a wait for a condition
                await asyncio.sleep(max(0.0, CUT_S - (time.monotonic() - cut)))
                veth_link.up()
                healed = time.monotonic()
                assert await publisher.drain(15), f"{publisher.in_flight} frames unacked after the link came back"
                recovered_s = time.monotonic() - healed
                # the next attempt comes within the reconnect backoff's cap (2 s); a connection kept across
                # the cut waits for TCP's retransmission timer instead, which has backed off to seconds
                assert recovered_s < RECOVERED_WITHIN_S, f"every frame acked only {recovered_s:.1f}s after the link"
            finally:
                await publisher.close()
            nc = await nats.connect(server.url, connect_timeout=5)
            try:
                stored = await stream_messages(nc, "DEADLINK")
            finally:
                await nc.close()
    finally:
        server.stop()
    ids = [headers["Nats-Msg-Id"] for _, _, headers in stored]
    assert sorted(ids) == sorted([f"a{i}" for i in range(BEFORE)] + [f"b{i}" for i in range(DURING)])
    print(f"dead link noticed after {noticed_s:.1f}s, every frame acked {recovered_s:.1f}s after the link came back, "
          f"reconnects={publisher.reconnects} retried={publisher.retried}")
