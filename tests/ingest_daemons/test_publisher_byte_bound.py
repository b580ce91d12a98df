"""The publisher's in-flight byte bound against a real nats-server that stops answering (SIGSTOP)."""

from __future__ import annotations

import asyncio
import os
import signal

import nats
import pytest

from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.publisher import DEFAULT_MAX_PAYLOAD, HeaderTemplate, JetStreamPublisher, _Protocol
from tests.helpers import wait_until
from tests.ingest_daemons.test_publisher import make_stream, server_bytes_for_acks, stream_messages

BOUND = 3 * 1024 * 1024


def test_a_bound_below_two_of_the_largest_messages_is_raised_to_that() -> None:
    pub = JetStreamPublisher("nats://127.0.0.1:1", max_in_flight_bytes=1)
    assert pub.max_in_flight_bytes >= 2 * DEFAULT_MAX_PAYLOAD
    assert JetStreamPublisher("nats://127.0.0.1:1", max_in_flight_bytes=BOUND).max_in_flight_bytes == BOUND


async def test_in_flight_bytes_stay_under_the_bound_while_nats_is_frozen_and_nothing_is_lost(
    private_nats_server: NatsServer,
) -> None:
    server = private_nats_server
    admin = await nats.connect(server.url)
    await make_stream(admin, "BOUND", "bb.>")
    await admin.close()
    pub = JetStreamPublisher(server.url, max_in_flight_bytes=BOUND, ack_timeout_s=2.0)
    await pub.start()
    headers = HeaderTemplate("bb:", {})
    pad = b"x" * 1000
    total = 8_000  # about 8 MB: far beyond the bound
    highest = 0

    async def produce() -> None:
        nonlocal highest
        for i in range(total):
            await pub.publish("bb.json.t.K", b'{"i":%d,"pad":"%s"}' % (i, pad), headers.render(i, 0))
            highest = max(highest, pub.in_flight_bytes)
            if i % 100 == 0:
                await asyncio.sleep(0)  # a connector yields while reading its socket

    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)  # the server takes no more bytes and acks nothing
    producer = asyncio.create_task(produce())
    try:
        await wait_until(lambda: pub.full or producer.done(), timeout=30, what="publishing to pause")
        done, _ = await asyncio.wait({producer}, timeout=0.5)
        assert not done, "publishing must block at the byte bound while the server is frozen, never drop"
        assert highest <= BOUND, f"{highest} bytes held against a bound of {BOUND}"
        # the bound was really reached (held up to the largest message short of it), not some other limit
        assert pub.in_flight_bytes >= BOUND - 2 * (DEFAULT_MAX_PAYLOAD + 4096)
        assert pub.in_flight < total
    finally:
        os.kill(server.pid, signal.SIGCONT)
    try:
        await asyncio.wait_for(producer, 60)
        assert await pub.drain(60), f"{pub.in_flight} frames never acknowledged"
    finally:
        producer.cancel()
        await pub.close()
    assert highest <= BOUND, f"{highest} bytes held against a bound of {BOUND}"
    admin = await nats.connect(server.url)
    stored = await stream_messages(admin, "BOUND")
    await admin.close()
    ids = [h["Nats-Msg-Id"] for _, _, h in stored]
    assert len(ids) == len(set(ids)), "a retry became a duplicate"
    assert sorted(int(i.split(":")[1]) for i in ids) == list(range(total))


@pytest.mark.parametrize("read_size", [7, 1 << 20])
async def test_held_bytes_follow_acks_and_on_ack_sees_every_nth(read_size: int) -> None:
    sampled: list[str] = []
    pub = JetStreamPublisher("nats://127.0.0.1:1", on_ack=lambda subject, ns, wire: sampled.append(subject),
                             on_ack_every=8)
    headers = HeaderTemplate("a:", {})
    for i in range(100):
        pub.publish_nowait(f"s.json.t.K{i}", b"{}", headers.render(i, 0))  # not connected: held only
    held = pub.in_flight_bytes
    assert held > 0
    protocol = _Protocol(pub)
    stream = server_bytes_for_acks(pub._inbox_b)  # acks all but two (a 503 and an error reply)
    for start in range(0, len(stream), read_size):
        protocol.data_received(stream[start : start + read_size])
    assert pub.acked == 98 and len(sampled) == 98 // 8
    # what is still held is the two unacknowledged HPUB commands, byte for byte
    assert pub.in_flight == 2 and pub.in_flight_bytes == sum(len(entry[0]) for entry in pub._pending.values())
    assert 0 < pub.in_flight_bytes < held / 40
    assert pub.abandon() == 2 and pub.in_flight_bytes == 0
