"""The session engine on a venue shaped like Polymarket, with no engine change: text ``PING``/``PONG``
keep-alive, subscriptions that get no reply, JSON-array frames split into one message per element
by slicing the original bytes, no sequence numbers (a reconnect's status markers and fresh snapshots
are the resync). The venue below is a deliberately small stand-in written for this test."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nats
import orjson

from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.connector.directory import MarketDirectory
from ingest_daemons.connector.runner import Connector, ConnectorOptions
from ingest_daemons.connector.venue import NOTHING, Command, ControlOutcome, FrameKind, Gap, Message, Routed
from ingest_daemons.naming import parse_subject, slug
from ingest_daemons.nats_client import list_streams
from ingest_daemons.streams import reconcile
from ingest_daemons.wire import HDR_MARKER
from tests.fixtures.array_exchange import ArrayExchange
from tests.fixtures.config import WriteEnv
from tests.helpers import wait_until

# Token ids are 76-78 digit strings (protocols B2).
TOKENS = {"1" * 77: "Politics", "2" * 76: "Crypto", "3" * 78: "Sports"}


def array_elements(frame: bytes) -> list[bytes]:
    """The objects of a top-level JSON array as slices of ``frame`` (strings and nesting respected)."""
    parts: list[bytes] = []
    depth, start, in_string, escaped = 0, 0, False, False
    for i, byte in enumerate(frame):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            if depth == 2:
                start = i
        elif byte in b"]}":
            if depth == 2:
                parts.append(frame[start : i + 1])
            depth -= 1
    return parts


class ArrayVenue:
    feed = "polymarket"
    channels: tuple[str, ...] = ("market",)
    markets_per_command = 500
    auth_hint = "no credentials are used"

    def __init__(self) -> None:
        self.opened = False

    def reset(self) -> None:
        self.opened = False  # the first subscription on a socket has its own shape

    def connect_request(self, url: str) -> tuple[str, Mapping[str, str]]:
        return url, {}

    def keepalive(self) -> bytes | None:
        return b"PING"

    def _assets(self, markets: Sequence[str], operation: str) -> Command:
        if not self.opened:
            self.opened = True
            body: dict[str, Any] = {"assets_ids": list(markets), "type": "market", "custom_feature_enabled": True}
        else:
            body = {"assets_ids": list(markets), "operation": operation, "custom_feature_enabled": True}
        return Command(orjson.dumps(body))  # no reply_key: the exchange never answers

    def subscribe(self, markets: Sequence[str]) -> list[Command]:
        return [self._assets(markets, "subscribe")]

    def subscribe_unfiltered(self) -> list[Command]:
        return []

    def add(self, markets: Sequence[str]) -> list[Command]:
        return [self._assets(markets, "subscribe")]

    def remove(self, markets: Sequence[str]) -> list[Command]:
        return [self._assets(markets, "unsubscribe")]

    def unsubscribe_all(self) -> list[Command]:
        return []

    def on_replies(self, command: Command, replies: Sequence[Message]) -> dict[str, Any]:
        return {}

    def subscription_summary(self) -> dict[str, Any]:
        return {}

    def route(self, frame: bytes) -> Routed | None:
        if frame[:1] != b"{":
            return None
        try:
            body = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return None
        return body["event_type"], body["asset_id"], None, None

    def classify(self, frame: bytes) -> list[Message]:
        if frame == b"PONG":
            return [Message(FrameKind.CONTROL, "pong", None, None, None, frame)]
        try:
            orjson.loads(frame)
        except orjson.JSONDecodeError:
            return [Message(FrameKind.UNPARSED, "unparsed", None, None, None, frame)]
        out = []
        for element in array_elements(frame):
            body = orjson.loads(element)
            out.append(Message(FrameKind.DATA, body["event_type"], body["asset_id"], None, None, element))
        return out

    def on_control(self, message: Message) -> ControlOutcome:
        return NOTHING

    def on_gap(self, seq_key: Hashable, expected: int, got: int, market: str | None) -> Gap | None:
        return None


def event(event_type: str, token: str, n: int) -> dict[str, Any]:
    return {"event_type": event_type, "asset_id": token, "market": "0x" + "ab" * 32, "price": "0.5", "n": n,
            "note": "a \"quoted\" ] bracket } inside"}


async def stored(nats_url: str, env: str) -> list[tuple[str, bytes, dict[str, str]]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        out = []
        for info in await list_streams(js):
            name = info.config.name or ""
            if name.startswith(f"{env.upper()}_POLYMARKET_") and info.state.messages:
                for seq in range(info.state.first_seq, info.state.last_seq + 1):
                    msg = await js.get_msg(name, seq)
                    out.append((msg.subject or "", msg.data or b"", dict(msg.headers or {})))
        return out
    finally:
        await nc.close()


async def test_polymarket_shaped_venue_runs_on_the_engine_unchanged(
    array_exchange: ArrayExchange, nats_server: Any, write_env: WriteEnv, unique_env: str
) -> None:
    root = write_env(unique_env, endpoint_set="prod", nats_url=nats_server.url,
                     streams={"max_age": "1h", "max_bytes": "64MiB", "duplicate_window": "2m"},
                     feeds={"kalshi": {"enabled": False},
                            "polymarket": {"categories": sorted(set(TOKENS.values())),
                                           "endpoint": {"ws": array_exchange.ws_url}}})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=Path(root).parent), unique_env)
    nc = await nats.connect(nats_server.url)
    await reconcile(nc.jetstream(), env, apply=True)
    await nc.close()
    feed = env.feeds["polymarket"]
    directory = MarketDirectory(stream_categories={slug(c) for c in feed.stream_categories()})
    for token, category in TOKENS.items():
        directory.assign(token, category)
    first, second, third = TOKENS
    connector = Connector(env, feed, [first, second], directory, lambda channels: ArrayVenue(),
                          ConnectorOptions(metrics_port=None, heartbeat_s=0.3, idle_timeout_s=10, ack_timeout_s=1.0,
                                           backoff_initial_s=0.05, backoff_max_s=0.2))
    await connector.start()
    session = connector.sessions[0]
    frames: list[bytes] = []

    async def push(frame: bytes) -> None:
        assert await array_exchange.send(frame) == 1
        frames.append(frame)

    try:
        await connector.wait_subscribed(10)
        await wait_until(lambda: len(array_exchange.commands) == 1, 5, "the initial subscription")
        assert array_exchange.commands[0]["assets_ids"] == [first, second]
        assert array_exchange.commands[0]["type"] == "market"
        await push(orjson.dumps([event("book", first, 1), event("book", second, 2)]))
        await push(orjson.dumps(event("last_trade_price", first, 3)))
        await wait_until(lambda: array_exchange.pings >= 2, 5, "text PINGs from the engine")

        assert await session.add_markets([third]) == [third]
        await wait_until(lambda: len(array_exchange.commands) == 2, 5, "the live addition")
        assert array_exchange.commands[-1] == {"assets_ids": [third], "operation": "subscribe",
                                               "custom_feature_enabled": True}
        await push(orjson.dumps([event("price_change", third, 4), event("price_change", first, 5),
                                 event("tick_size_change", second, 6)]))
        await wait_until(lambda: connector.publisher.acked >= 6, 10, "the elements acknowledged")
        assert session.sockets_opened == 1, "answered PINGs keep the socket; a live add needs no reconnect"

        array_exchange.answer_pings = False  # a silent exchange: PING unanswered, nothing else either
        await wait_until(lambda: session.sockets_opened == 2, 10, "reconnect after the unanswered PING")
        array_exchange.answer_pings = True
        await connector.wait_subscribed(10)
        await wait_until(lambda: len(array_exchange.commands) == 3, 5, "the new socket's subscription")
        assert array_exchange.commands[-1]["type"] == "market", "a new socket starts with the initial shape"
        assert set(array_exchange.commands[-1]["assets_ids"]) == {first, second, third}
        await push(orjson.dumps([event("book", third, 7)]))
        await wait_until(lambda: connector.publisher.acked >= 7 + 2, 10, "the last element")
    finally:
        connector.request_stop()
        assert await connector.shutdown()

    messages = await stored(nats_server.url, unique_env)
    data = [(subject, payload) for subject, payload, headers in messages if HDR_MARKER not in headers]
    expected = [element for frame in frames for element in (array_elements(frame) if frame[:1] == b"[" else [frame])]
    assert sorted(payload for _, payload in data) == sorted(expected), "every element once, byte-identical"
    for subject, payload in data:
        assert any(payload in frame for frame in frames), "an element is a byte slice of its frame"
        body = orjson.loads(payload)
        parts = parse_subject(subject)
        assert parts.ticker == body["asset_id"] and parts.message_type == body["event_type"]
        assert parts.category == slug(TOKENS[body["asset_id"]])
    assert all(payload != b"PONG" for _, payload in data), "keep-alive answers are not market data"
    kinds = [orjson.loads(payload)["ssmd_marker"] for _, payload, headers in messages if HDR_MARKER in headers]
    assert {"connected", "disconnected", "resubscribed"} <= set(kinds)
    reasons = [orjson.loads(p).get("reason", "") for _, p, h in messages if h.get(HDR_MARKER) == "disconnected"]
    assert any("no pong" in r for r in reasons)
