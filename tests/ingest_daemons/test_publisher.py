"""The acknowledged publisher against a real nats-server: exactly once, byte-identical, through outages."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.client import Client
from nats.js import api as js_api

from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.publisher import HeaderTemplate, JetStreamPublisher, _Protocol, header_block
from tests.helpers import wait_until


async def stream_messages(nc: Client, stream: str) -> list[tuple[str, bytes, dict[str, str]]]:
    js = nc.jetstream()
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        out.append((msg.subject, msg.data or b"", dict(msg.headers or {})))
    return out


async def make_stream(nc: Client, name: str, subject: str) -> None:
    await nc.jetstream().add_stream(
        js_api.StreamConfig(name=name, subjects=[subject], duplicate_window=120, storage=js_api.StorageType.FILE)
    )


def test_server_list_parsing() -> None:
    pub = JetStreamPublisher("nats://bob:s3cret-pw@127.0.0.1:4333,tls://h:1")
    assert [a.url for a in pub.addresses] == ["nats://127.0.0.1:4333", "tls://h:1"]
    assert pub.settings.password == "s3cret-pw" and "s3cret-pw" not in pub.url
    with pytest.raises(ValueError, match="scheme"):
        JetStreamPublisher("http://h:1")


def test_header_template_matches_slow_path() -> None:
    fast = HeaderTemplate("run1.0:", {"Ssmd-Shard": "3", "Ssmd-Conn": "run1.0"}).render(42, 1_700_000_000_000_000_000)
    slow = header_block({"Ssmd-Shard": "3", "Ssmd-Conn": "run1.0", "Nats-Msg-Id": "run1.0:42",
                         "Ssmd-Received-Ns": "1700000000000000000"})
    assert fast == slow


async def test_every_frame_acked_once_and_byte_identical(nc: Client, nats_server: NatsServer, unique_env: str) -> None:
    await make_stream(nc, f"{unique_env}_P", f"{unique_env}.p.>")
    acks: list[int] = []
    pub = JetStreamPublisher(nats_server.url, on_ack=lambda subject, ns, wire: acks.append(ns))
    await pub.start()
    headers = HeaderTemplate("x:", {"Ssmd-Shard": "0"})
    frames = [b'{"n":%d,"price":0.10}' % i for i in range(2000)] + [b"not json \xff"]
    for i, frame in enumerate(frames):
        await pub.publish(f"{unique_env}.p.json.t.K{i % 7}", frame, headers.render(i, 1))
    assert await pub.drain(10)
    await pub.close()
    stored = await stream_messages(nc, f"{unique_env}_P")
    assert [data for _, data, _ in stored] == frames
    assert [h["Nats-Msg-Id"] for _, _, h in stored] == [f"x:{i}" for i in range(len(frames))]
    assert len(acks) == len(frames) and all(ns > 0 for ns in acks)
    assert pub.acked == len(frames) and pub.in_flight == 0


async def test_frames_survive_a_nats_restart(private_nats_server: NatsServer) -> None:
    server = private_nats_server
    admin = await nats.connect(server.url)
    await make_stream(admin, "OUTAGE", "o.>")
    await admin.close()
    pub = JetStreamPublisher(server.url, ack_timeout_s=1.0, max_in_flight=10_000)
    await pub.start()
    headers = HeaderTemplate("o:", {})
    total = 3000
    for i in range(total):
        if i == 1000:
            server.stop()  # outage: frames are held, publish keeps accepting up to the bound
            await wait_until(lambda: not pub.connected, what="publisher to notice the outage")
        if i == 2000:
            assert pub.in_flight >= 1000
            server.start()
        await pub.publish("o.json.t.K", b'{"i":%d}' % i, headers.render(i, 0))
        if i % 100 == 0:
            await asyncio.sleep(0)  # a connector yields while reading its socket
    assert await pub.drain(20), f"{pub.in_flight} frames never acknowledged"
    await pub.close()
    admin = await nats.connect(server.url)
    stored = await stream_messages(admin, "OUTAGE")
    await admin.close()
    ids = [h["Nats-Msg-Id"] for _, _, h in stored]
    assert len(ids) == len(set(ids)), "a retry became a duplicate"
    assert sorted(int(i.split(":")[1]) for i in ids) == list(range(total))
    assert pub.reconnects >= 1


async def test_backpressure_when_nats_is_down(private_nats_server: NatsServer) -> None:
    pub = JetStreamPublisher(private_nats_server.url, max_in_flight=50)
    await pub.start()
    private_nats_server.stop()
    headers = HeaderTemplate("b:", {})
    for i in range(50):
        await pub.publish("b.json.t.K", b"{}", headers.render(i, 0))
    blocked = asyncio.create_task(pub.publish("b.json.t.K", b"{}", headers.render(50, 0)))
    done, _ = await asyncio.wait({blocked}, timeout=0.5)
    assert not done, "publish must block at the in-flight bound, never drop"
    assert pub.in_flight == 50
    blocked.cancel()
    await pub.close()


async def test_an_error_ack_from_jetstream_keeps_the_frame(
    nc: Client, nats_server: NatsServer, unique_env: str
) -> None:
    """A JSON error reply (here: a full stream that discards new messages) is a rejection, never an ack."""
    stream = f"{unique_env}_FULL"
    await nc.jetstream().add_stream(js_api.StreamConfig(
        name=stream, subjects=[f"{unique_env}.full.>"], max_msgs=1, discard=js_api.DiscardPolicy.NEW))
    pub = JetStreamPublisher(nats_server.url, ack_timeout_s=0.3)
    await pub.start()
    try:
        for i in range(2):
            await pub.publish(f"{unique_env}.full.a", b'{"n":%d}' % i, header_block({"Nats-Msg-Id": f"full-{i}"}))
        assert not await pub.drain(1.0)
        assert pub.acked == 1 and pub.in_flight == 1 and pub.errors >= 1
        assert pub.rejection is not None and "maximum messages" in pub.rejection
        await nc.jetstream().purge_stream(stream)  # room again: the held frame is re-sent and stored
        assert await pub.drain(5)
    finally:
        await pub.close()
    assert [d for _, d, _ in await stream_messages(nc, stream)] == [b'{"n":1}']


async def test_frame_without_a_stream_is_kept_until_one_exists(
    nc: Client, nats_server: NatsServer, unique_env: str
) -> None:
    pub = JetStreamPublisher(nats_server.url, ack_timeout_s=0.3)
    await pub.start()
    await pub.publish(f"{unique_env}.late.json.t.K", b'{"kept":true}', header_block({"Nats-Msg-Id": "late-1"}))
    assert not await pub.drain(1.0)
    assert pub.in_flight == 1 and pub.errors >= 1
    await make_stream(nc, f"{unique_env}_LATE", f"{unique_env}.late.>")
    assert await pub.drain(5)
    await pub.close()
    assert [d for _, d, _ in await stream_messages(nc, f"{unique_env}_LATE")] == [b'{"kept":true}']


def server_bytes_for_acks(inbox: bytes) -> bytes:
    """What nats-server sends back on the inbox: runs of acks with a ping, a 503 and an error reply among them."""

    def ack(token: int, body: bytes) -> bytes:
        return b"MSG %s%d 1 %d\r\n%s\r\n" % (inbox, token, len(body), body)

    parts = [ack(t, b'{"stream":"S","seq":%d}' % (t + 1)) for t in range(0, 40)]
    parts.append(ack(3, b'{"stream":"S","seq":4,"duplicate": true}'))  # a late ack for a re-sent frame
    parts.append(b"PING\r\n")
    parts += [ack(t, b'{"stream":"S","domain":"hub","seq":%d}' % (t + 1)) for t in range(40, 60)]
    parts.append(b"HMSG %s60 1 34 34\r\nNATS/1.0 503\r\nNats-Subject: zz\r\n\r\n\r\n" % inbox)
    parts.append(ack(61, b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}'))
    parts += [ack(t, b'{"stream":"S","seq":%d}' % (t + 1)) for t in range(62, 100)]
    return b"".join(parts)


@pytest.mark.parametrize("read_size", [1, 7, 64, 1000, 1 << 20])
async def test_acks_are_matched_for_any_split_of_the_server_stream(read_size: int) -> None:
    acked: list[str] = []
    pub = JetStreamPublisher("nats://127.0.0.1:1", on_ack=lambda subject, ns, wire: acked.append(subject))
    headers = HeaderTemplate("a:", {})
    for i in range(100):
        pub.publish_nowait(f"s.json.t.K{i}", b"{}", headers.render(i, 0))  # not connected: held only
    protocol = _Protocol(pub)
    stream = server_bytes_for_acks(pub._inbox_b)
    for start in range(0, len(stream), read_size):
        protocol.data_received(stream[start : start + read_size])
    assert not protocol.buf, "every message consumed"
    assert sorted(acked) == sorted(f"s.json.t.K{i}" for i in range(100) if i not in (60, 61))
    assert pub.acked == 98 and pub.in_flight == 2 and pub.errors == 2


async def test_a_ping_before_an_unfinished_ack_is_still_answered_and_nothing_acked_early() -> None:
    pub = JetStreamPublisher("nats://127.0.0.1:1")
    headers = HeaderTemplate("a:", {})
    for i in range(2):
        pub.publish_nowait("s.json.t.K", b"{}", headers.render(i, 0))
    protocol = _Protocol(pub)
    inbox = pub._inbox_b
    error = b'{"error":{"code":503,"description":"no"}}'
    first = b'MSG %s0 1 22\r\n{"stream":"S","seq":1}\r\nPING\r\nMSG %s1 1 %d\r\n' % (inbox, inbox, len(error))
    protocol.data_received(first)
    assert pub.acked == 1 and pub.in_flight == 1, "the second frame's reply has not arrived yet"
    protocol.data_received(error + b"\r\n")
    assert pub.acked == 1 and pub.in_flight == 1 and pub.errors == 1 and not protocol.buf
