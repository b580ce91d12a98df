"""The Polymarket connector (the engine with PolymarketVenue) against the simulator and a real nats-server:
every event the exchange sent is stored exactly once, byte-identical, whatever happens to the socket."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import orjson
import pytest

from ingest_daemons.naming import parse_subject
from tests.fixtures.kalshi import StoredMessage
from tests.fixtures.polymarket import PolymarketBench, PolymarketBenchFactory
from tests.helpers import wait_until

# exchange event type -> subject type token, written out independently of the venue
SUBJECT_TYPE = {"book": "book", "price_change": "price_change", "last_trade_price": "trade",
                "tick_size_change": "tick_size_change", "best_bid_ask": "best_bid_ask",
                "new_market": "lifecycle", "market_resolved": "lifecycle"}

# the simulator's broad (first) event tag -> the stream polymarket.yaml's category_tags sends it to
BROAD_TAG_STREAM = {"Politics": "politics", "Sports": "sports", "Crypto": "crypto", "Economics": "economics",
                    "Science": "science", "Pop Culture": "culture", "Business": "business"}


async def flow(bench: PolymarketBench, events: int, within_s: float = 10.0) -> None:
    target = len(bench.sim.sent_elements) + events
    await wait_until(lambda: len(bench.sim.sent_elements) >= target, within_s, f"{events} more events")


def markers(stored: list[StoredMessage], kind: str) -> list[dict[str, Any]]:
    return [orjson.loads(m.data) for m in stored if m.marker == kind]


async def reconnected(bench: PolymarketBench) -> None:
    await wait_until(lambda: bench.connector.sessions[0].sockets_opened == 2, 10, "reconnect")
    await bench.connector.wait_subscribed(10)
    await bench.sim.wait_for_assets(len(bench.connector.sessions[0].markets), 10)


async def kept_as_unparsed_on_one_socket(bench: PolymarketBench, frame: bytes) -> None:
    """``frame`` sent among normal events: stored once as ``unparsed``, everything else exactly once, and
    the socket never replaced."""
    await bench.connector.wait_subscribed(10)
    await flow(bench, 50)
    await bench.sim.send_malformed(frame)
    await flow(bench, 50)
    stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    [kept] = [m for m in data if m.data == frame]
    assert parse_subject(kept.subject).message_type == "unparsed"
    assert bench.connector.sessions[0].sockets_opened == 1, "an unreadable frame must not cost a reconnect"


async def test_events_land_on_their_token_subject_as_byte_slices(polymarket_bench: PolymarketBenchFactory) -> None:
    # Several events per 2 ms tick, so "always" arrays really hold several events (at 300/s a tick holds one).
    bench = await polymarket_bench(rate=3000, sim_kwargs={"array_frames": "always", "price_change_shape": "mixed"})
    await bench.connector.wait_subscribed(10)
    await flow(bench, 400)
    stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    frames = {f.data for f in bench.sim.sent_frames}
    assert sum(len(f.elements) > 1 for f in bench.sim.sent_frames) >= 10, "array frames of several events"
    category_of = {t: BROAD_TAG_STREAM[bench.sim.events[m.event_id].tags[0].label]
                   for m in bench.sim.markets for t in m.token_ids}
    for message in data:
        assert any(message.data in frame for frame in frames), "an element is a byte slice of its frame"
        body = orjson.loads(message.data)
        parts = parse_subject(message.subject)
        token = body.get("asset_id") or body["price_changes"][0]["asset_id"]
        assert parts.ticker == token and parts.message_type == SUBJECT_TYPE[body["event_type"]]
        assert parts.category == category_of[token]
    assert {"book", "price_change"} <= {parse_subject(m.subject).message_type for m in data}
    commands = [c for _, c in bench.sim.commands]
    assert commands[0]["type"] == "market" and all(isinstance(t, str) for t in commands[0]["assets_ids"])


async def test_exchange_closing_the_socket(polymarket_bench: PolymarketBenchFactory) -> None:
    bench = await polymarket_bench()
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    await bench.sim.close_connections(code=1011)
    await reconnected(bench)
    await flow(bench, 200)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    assert markers(stored, "disconnected") and markers(stored, "resubscribed")


async def test_stalled_socket_is_detected_and_replaced(polymarket_bench: PolymarketBenchFactory) -> None:
    bench = await polymarket_bench(idle_timeout_s=1.0, heartbeat_s=30.0)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    bench.sim.stall(30)
    await reconnected(bench)
    await flow(bench, 100)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    assert any("stalled" in str(m["reason"]) for m in markers(stored, "disconnected"))


async def test_unanswered_ping_replaces_the_socket(polymarket_bench: PolymarketBenchFactory) -> None:
    bench = await polymarket_bench(heartbeat_s=0.4, idle_timeout_s=30.0)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    await wait_until(lambda: bench.sim.pings_received() >= 1, 5, "a text PING")
    bench.sim.pause()  # a silent exchange: no data, and PING unanswered
    bench.sim.stop_answering_pings()
    await wait_until(lambda: bench.connector.sessions[0].sockets_opened == 2, 10, "reconnect after the missed PONG")
    bench.sim.stop_answering_pings(False)
    bench.sim.resume()
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    assert any("no pong" in str(m["reason"]) for m in markers(stored, "disconnected"))
    assert not any(m.data == b"PONG" for m in stored), "keep-alive answers are not market data"


async def test_malformed_frame_is_kept_as_unparsed(polymarket_bench: PolymarketBenchFactory) -> None:
    await kept_as_unparsed_on_one_socket(await polymarket_bench(), b'[{"event_type":"book","asset_id":"1')


DEEP = b"[" * 300 + b"]" * 300  # valid JSON nested deeper than orjson.dumps writes (254 levels)


async def test_a_valid_frame_nested_deeper_than_orjson_writes_is_kept_without_a_reconnect(
    polymarket_bench: PolymarketBenchFactory,
) -> None:
    frame = b'[{"event_type":"book","asset_id":"1","x":' + DEEP + b"},5]"  # a non-object element: unparsed whole
    await kept_as_unparsed_on_one_socket(await polymarket_bench(), frame)


@pytest.mark.parametrize("failing", ["route", "classify"])
async def test_a_frame_the_venue_fails_on_is_kept_as_unparsed_and_the_socket_stays(
    polymarket_bench: PolymarketBenchFactory, monkeypatch: pytest.MonkeyPatch, failing: str,
) -> None:
    from ingest_daemons.adapters.polymarket_venue import PolymarketVenue

    poison = b'{"event_type":"book","asset_id":"1","poison":true}'
    original = getattr(PolymarketVenue, failing)

    def fails_on_poison(self: PolymarketVenue, frame: bytes) -> Any:
        if frame == poison:
            raise RuntimeError("a venue bug on one frame")
        return original(self, frame)

    monkeypatch.setattr(PolymarketVenue, failing, fails_on_poison)
    if failing == "classify":
        monkeypatch.setattr(PolymarketVenue, "route", lambda self, frame: None)  # every frame classified
    await kept_as_unparsed_on_one_socket(await polymarket_bench(), poison)


async def test_nats_restart_mid_stream(polymarket_bench: PolymarketBenchFactory, private_nats_server) -> None:  # type: ignore[no-untyped-def]
    bench = await polymarket_bench(nats_url=private_nats_server.url, rate=400)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    private_nats_server.stop()
    await wait_until(lambda: not bench.connector.publisher.connected, 10, "publisher to notice")
    await flow(bench, 300)  # the connector keeps reading and holds the events
    assert bench.connector.publisher.in_flight > 0
    private_nats_server.start()
    await flow(bench, 200)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)


async def test_cli_connector_discovers_gamma_tokens_and_drains_on_sigterm(
    polymarket_bench: PolymarketBenchFactory,
) -> None:
    """``ssmd connector --feed polymarket``: every trading token from Gamma, no credentials, SIGTERM drains."""
    bench = await polymarket_bench(rate=1500, start_connector=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHI_")}
    env.update(SSMD_EXCHANGES_DIR=str(bench.env.settings.exchanges_dir), SSMD_DATA_DIR=str(bench.env.data_dir))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest_daemons.cli", "connector", "--env", bench.env.name, "--feed", "polymarket",
        "--metrics-port", "0", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await bench.sim.wait_for_assets(len(bench.sim.trading_tokens()), timeout=20)
        await wait_until(lambda: len(bench.sim.sent_elements) > 1500, 20, "events flowing")
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    text = output.decode()
    assert proc.returncode == 0, text[-3000:]
    assert "every frame acknowledged" in text
    [(_, first)] = bench.sim.commands[:1]
    assert isinstance(first, dict) and sorted(first["assets_ids"]) == sorted(bench.sim.trading_tokens())
    bench.sim.pause()
    bench.assert_exactly_once(await bench.stored())


async def lifecycle_tokens(bench: PolymarketBench, event_type: str, condition: str) -> list[str]:
    """The token ids a stored ``new_market`` / ``market_resolved`` message of ``condition`` names."""
    for message in await bench.stored():
        if message.marker is None and parse_subject(message.subject).message_type == "lifecycle":
            body = orjson.loads(message.data)
            if body.get("event_type") == event_type and body.get("market") == condition:
                return [str(t) for t in body["assets_ids"]]
    return []


async def test_new_market_joins_the_live_socket_and_resolved_market_leaves(
    polymarket_bench: PolymarketBenchFactory,
) -> None:
    """A ``new_market`` announcement's tokens, added through the connector's pool, are subscribed on the
    open socket with no reconnect; ``market_resolved`` takes them off it again."""
    bench = await polymarket_bench(markets=4)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 50)
    session = bench.connector.sessions[0]
    market = await bench.sim.add_market()

    async def announced(event_type: str, count: int) -> list[str]:
        by_type = bench.connector.metrics.by_type
        await wait_until(lambda: by_type.get("lifecycle", 0) >= count, 10, f"{event_type} published")
        found: list[str] = []
        for _ in range(100):  # published; stored once JetStream has acknowledged it
            found = await lifecycle_tokens(bench, event_type, market.condition_id)
            if found:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"{event_type} of {market.condition_id} never stored")

    tokens = await announced("new_market", 1)
    assert sorted(tokens) == sorted(market.token_ids)
    assert await bench.connector.pool.add_markets(tokens) == tokens
    await bench.sim.wait_for(lambda: set(tokens) <= {t for a in bench.sim.subscriptions().values() for t in a}, 10)
    assert [c for _, c in bench.sim.commands][-1] == {"assets_ids": tokens, "operation": "subscribe",
                                                      "custom_feature_enabled": True}
    await wait_until(lambda: sum(e[2] in tokens for e in bench.sim.sent_elements) >= 5, 10, "the new tokens' events")

    await bench.sim.resolve_market(market.condition_id)
    resolved = await announced("market_resolved", 2)
    assert sorted(resolved) == sorted(tokens)
    assert await bench.connector.pool.remove_markets(resolved) == sorted(resolved)
    await bench.sim.wait_for(lambda: not set(tokens) & {t for a in bench.sim.subscriptions().values() for t in a}, 10)
    assert [c for _, c in bench.sim.commands][-1] == {"assets_ids": sorted(resolved), "operation": "unsubscribe"}
    assert session.sockets_opened == 1 and len(bench.connector.sessions) == 1, "no reconnect, no new socket"
    await flow(bench, 50)
    stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    assert {parse_subject(m.subject).ticker for m in data} >= set(tokens), "the new tokens' events are stored"
