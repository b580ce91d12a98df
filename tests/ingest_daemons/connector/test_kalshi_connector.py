"""The Kalshi connector against the simulator and a real nats-server: nothing sent is lost or doubled."""

from __future__ import annotations

import json

import aiohttp
import orjson

from ingest_daemons.naming import parse_subject, slug
from tests.fixtures.kalshi import BenchFactory, KalshiBench, StoredMessage
from tests.helpers import wait_until

# exchange message type -> subject type token, written out independently of the adapter
SUBJECT_TYPE = {"ticker": "ticker", "trade": "trade", "orderbook_snapshot": "orderbook",
                "orderbook_delta": "orderbook"}


async def flow(bench: KalshiBench, frames: int, within_s: float = 10.0) -> None:
    target = len(bench.sim.sent_frames) + frames
    await wait_until(lambda: len(bench.sim.sent_frames) >= target, within_s, f"{frames} more frames from the exchange")


def markers(stored: list[StoredMessage], kind: str) -> list[dict[str, object]]:
    return [orjson.loads(m.data) for m in stored if m.marker == kind]


async def test_frames_land_on_the_right_subject_byte_identical(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench(markets=12)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 400)
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored)
    category_of = {m.ticker: slug(m.category) for m in bench.sim.universe}
    dotted = 0
    for message in frames:
        raw = json.loads(message.data)
        parts = parse_subject(message.subject)
        ticker = raw["msg"]["market_ticker"]
        dotted += "." in ticker
        assert parts.ticker == ticker and parts.message_type == SUBJECT_TYPE[raw["type"]]
        assert parts.category == category_of[ticker] and parts.env == bench.env.name
        assert message.stream == f"{bench.env.name}_KALSHI_{category_of[ticker]}".upper()
        assert int(message.headers["Ssmd-Received-Ns"]) > 0 and message.headers["Ssmd-Shard"] == "0"
    assert dotted, "the simulator's universe has dotted tickers; they must survive as one token"
    assert not markers(stored, "gap")


async def test_exchange_closing_the_socket(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench()
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    await bench.sim.close_connections(code=1011)
    await wait_until(lambda: bench.connector.sessions[0].sockets_opened == 2, 10, "reconnect")
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    kinds = [m.get("ssmd_marker") for m in markers(stored, "disconnected") + markers(stored, "resubscribed")]
    assert "disconnected" in kinds and "resubscribed" in kinds


async def test_stalled_socket_is_detected_and_replaced(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench(idle_timeout_s=1.0, heartbeat_s=30.0)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    bench.sim.stall(30)
    await wait_until(lambda: bench.connector.sessions[0].sockets_opened == 2, 10, "reconnect after stall")
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    [reason] = [m["reason"] for m in markers(stored, "disconnected")][:1]
    assert "stalled" in str(reason)


async def test_malformed_frame_is_kept_as_unparsed(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench()
    await bench.connector.wait_subscribed(10)
    await flow(bench, 50)
    await bench.sim.send_malformed(data=b'{"type":"ticker","msg":{')
    await flow(bench, 50)
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored)
    [unparsed] = [m for m in frames if m.data == b'{"type":"ticker","msg":{']
    assert parse_subject(unparsed.subject).message_type == "unparsed"
    assert unparsed.stream.endswith("_KALSHI_UNCATEGORIZED")
    assert bench.connector.metrics.unparsed._value.get() == 1
    assert bench.connector.sessions[0].sockets_opened == 1, "a malformed frame must not cost a reconnect"


async def test_sequence_gap_is_marked_and_book_resnapshotted(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench()
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    bench.sim.skip_seq(3)
    await flow(bench, 150)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    gaps = markers(stored, "gap")
    assert gaps and all(g["missing"] == 3 and g["got_seq"] == g["expected_seq"] + 3 for g in gaps)
    channels = {g["channel"] for g in gaps}
    assert "orderbook_delta" in channels
    snapshot_requests = [c for _, c in bench.sim.commands
                         if c.get("cmd") == "update_subscription" and c["params"].get("action") == "get_snapshot"]
    assert snapshot_requests


async def test_terminal_error_25_resubscribes(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench()
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    subscribes_before = sum(1 for _, c in bench.sim.commands if c.get("cmd") == "subscribe")
    await bench.sim.send_error(code=25)
    await wait_until(
        lambda: sum(1 for _, c in bench.sim.commands if c.get("cmd") == "subscribe") >= subscribes_before + 3,
        10, "resubscribe of every channel")
    await flow(bench, 100)
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored)
    assert [m for m in markers(stored, "terminal_error") if m["code"] == 25]
    assert bench.connector.sessions[0].sockets_opened == 1
    last = max(f.sent_at_ns for f in bench.sim.sent_frames)
    assert any(json.loads(m.data).get("type") == "trade" for m in frames) and last


async def test_nats_restart_mid_stream(kalshi_bench: BenchFactory, private_nats_server) -> None:  # type: ignore[no-untyped-def]
    bench = await kalshi_bench(nats_url=private_nats_server.url, rate=400)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    private_nats_server.stop()
    await wait_until(lambda: not bench.connector.publisher.connected, 10, "publisher to notice")
    await flow(bench, 300)  # the connector keeps reading and holds frames
    assert bench.connector.publisher.in_flight > 0
    private_nats_server.start()
    await flow(bench, 200)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)


async def test_health_and_metrics_endpoints(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench()
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    assert bench.connector.health is not None
    base = f"http://127.0.0.1:{bench.connector.health.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200 and (await resp.json())["ready"] is True
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
    assert 'ssmd_messages_total{feed="kalshi",shard="0",type="trade"}' in text
    assert "ssmd_publish_latency_seconds_bucket" in text and "ssmd_markets_subscribed" in text
    await bench.stop_and_collect()
