"""Publishing a frame's many messages in one call: the same bytes as one ``publish_nowait`` per message.

``publish_numbered`` formats each header block into the ``HPUB`` command itself (the counter's digits
tracked as it grows), so its wire must equal ``publish_nowait(subject, payload, headers.render(...))``
byte for byte, across digit boundaries and oversized frames; it stops when a bound is reached and says
where, and what it published is stored with the ids and receive times ``render`` gives.
"""

from __future__ import annotations

from nats.aio.client import Client

from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.publisher import HeaderTemplate, JetStreamPublisher
from tests.ingest_daemons.test_publisher import make_stream, stream_messages

RECEIVED_NS = 1_733_000_000_123_456_789


def held_wires(pub: JetStreamPublisher) -> list[bytes]:
    """What the publisher holds, in order, with its own inbox written as a fixed one."""
    return [entry[0].replace(pub._inbox_b, b"_INBOX.fixed.") for entry in pub._pending.values()]


async def test_the_wire_is_publish_nowaits_byte_for_byte(nats_server: NatsServer) -> None:
    headers = HeaderTemplate("run.0:", {"Ssmd-Shard": "0", "Ssmd-Conn": "run.0"})
    oversized = b'{"p":"' + b"x" * (1024 * 1024) + b'"}'
    messages = [(f"e.polymarket.json.price_change.T{i % 3}", b'{"i":%d}' % i) for i in range(1200)]
    messages[500] = ("e.polymarket.json.price_change.T9", oversized)  # chunked, as publish_nowait does
    one_by_one = JetStreamPublisher(nats_server.url, max_in_flight=1 << 30, max_in_flight_bytes=1 << 40)
    numbered = JetStreamPublisher(nats_server.url, max_in_flight=1 << 30, max_in_flight_bytes=1 << 40)
    await one_by_one.start()
    await numbered.start()
    try:
        # No await in between: nothing is acknowledged (there is no stream) or flushed while comparing.
        for start, counter in ((0, 4), (7, 95)):  # the counter crosses 9 -> 10, 99 -> 100, 999 -> 1000
            for k, (subject, payload) in enumerate(messages[start:]):
                one_by_one.publish_nowait(subject, payload, headers.render(counter + k + 1, RECEIVED_NS))
            assert numbered.publish_numbered(messages, start, headers, counter, RECEIVED_NS) == len(messages)
        assert numbered.chunked_frames == one_by_one.chunked_frames == 2
        assert held_wires(numbered) == held_wires(one_by_one)
    finally:
        await one_by_one.close()
        await numbered.close()


async def test_it_stops_at_the_bound_and_what_it_published_is_stored_as_rendered(
    nc: Client, nats_server: NatsServer, unique_env: str,
) -> None:
    await make_stream(nc, f"{unique_env}_N", f"{unique_env}.n.>")
    headers = HeaderTemplate("c:", {"Ssmd-Shard": "1"})
    messages = [(f"{unique_env}.n.json.t.K{i % 5}", b'{"n":%d}' % i) for i in range(300)]
    pub = JetStreamPublisher(nats_server.url, max_in_flight=64)
    await pub.start()
    done, counter, runs = 0, 0, 0
    while done < len(messages):
        published = pub.publish_numbered(messages, done, headers, counter, RECEIVED_NS)
        assert published > done and (published == len(messages) or (pub.full and pub.in_flight == 64))
        counter += published - done
        done = published
        runs += 1
        if pub.full:
            await pub.wait_room()
    assert runs > 300 // 64, "it stopped at the bound"
    assert await pub.drain(10)
    await pub.close()
    stored = await stream_messages(nc, f"{unique_env}_N")
    assert [(subject, data) for subject, data, _ in stored] == messages
    assert [(h["Nats-Msg-Id"], h["Ssmd-Received-Ns"], h["Ssmd-Shard"]) for _, _, h in stored] == [
        (f"c:{i + 1}", str(RECEIVED_NS), "1") for i in range(300)]
