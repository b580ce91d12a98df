"""PolymarketVenue, pure: bytes in, engine decisions out (no servers)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ingest_daemons.adapters.polymarket import AssetLimitExceeded
from ingest_daemons.adapters.polymarket_venue import PolymarketVenue
from ingest_daemons.adapters.venues import venue_factory
from ingest_daemons.config import Settings
from ingest_daemons.config.loader import load_exchanges
from ingest_daemons.connector.venue import FrameKind

A, B, C = "1" * 77, "2" * 76, "3" * 78
CONDITION = "0x" + "ab" * 32

# The subject type of each event type, written out independently of the venue.
SUBJECT = {"book": "book", "price_change": "price_change", "last_trade_price": "trade",
           "tick_size_change": "tick_size_change", "best_bid_ask": "best_bid_ask",
           "new_market": "lifecycle", "market_resolved": "lifecycle"}


def lines(samples_dir: Path) -> list[bytes]:
    out = []
    for path in sorted(samples_dir.glob("polymarket_*.jsonl")):
        if path.name != "polymarket_subscribe.jsonl":
            out += [line for line in path.read_bytes().splitlines() if line.strip()]
    return out


def test_first_subscribe_then_operations_and_a_new_socket_starts_over() -> None:
    venue = PolymarketVenue()
    [first] = venue.subscribe([A, B])
    assert orjson.loads(first.frame) == {"assets_ids": [A, B], "type": "market", "custom_feature_enabled": True}
    assert first.reply_key is None, "the exchange never answers: done once written"
    [later] = venue.subscribe([C])
    assert orjson.loads(later.frame)["operation"] == "subscribe"
    assert venue.add([A]) == [], "a token the socket holds is not sent again"
    [gone] = venue.remove([B])
    assert orjson.loads(gone.frame) == {"assets_ids": [B], "operation": "unsubscribe"}
    [end] = venue.unsubscribe_all()
    assert set(orjson.loads(end.frame)["assets_ids"]) == {A, C}
    venue.reset()
    [again] = venue.subscribe([A])
    assert orjson.loads(again.frame)["type"] == "market"
    assert venue.keepalive() == b"PING"


def test_asset_limit_per_socket_is_enforced() -> None:
    venue = PolymarketVenue(assets_per_connection=2)
    venue.subscribe([A, B])
    with pytest.raises(AssetLimitExceeded):
        venue.add([C])


def test_token_ids_stay_strings_in_commands() -> None:
    [command] = PolymarketVenue().subscribe([A])
    assert f'"{A}"'.encode() in command.frame


def test_every_sample_routes_or_classifies_to_its_type_and_token(samples_dir: Path) -> None:
    venue = PolymarketVenue()
    for line in lines(samples_dir):
        body = orjson.loads(line)
        event_type = body.get("event_type", "book")
        token = body.get("asset_id") or (body.get("price_changes") or [{}])[0].get("asset_id")
        key = token or body["market"]
        routed = venue.route(line)
        assert routed == (SUBJECT[event_type], key, None, None)
        [message] = venue.classify(line)
        assert (message.kind, message.subject_type, message.market, message.seq) == (
            FrameKind.DATA, SUBJECT[event_type], key, None)
        assert message.payload == line


def test_array_frames_split_into_sliced_elements(samples_dir: Path) -> None:
    venue = PolymarketVenue()
    elements = lines(samples_dir)
    frame = b"[" + b" ,\n ".join(elements) + b"]"
    assert venue.route(frame) is None, "arrays go through classify"
    messages = venue.classify(frame)
    assert [m.payload for m in messages] == elements
    assert all(m.kind is FrameKind.DATA and m.payload in frame for m in messages)


def test_pong_is_control_and_broken_frames_are_unparsed() -> None:
    venue = PolymarketVenue()
    assert venue.route(b"PONG") is None
    [pong] = venue.classify(b"PONG")
    assert pong.kind is FrameKind.CONTROL
    for frame in (b'{"event_type":"book","asset_id":"1', b"[1, 2]", b'{"event_type":"book"}'):
        assert venue.route(frame) is None
        [message] = venue.classify(frame)
        assert message.kind is FrameKind.UNPARSED and message.payload == frame


def test_the_feed_protocol_picks_the_venue() -> None:
    exchanges = load_exchanges(Settings.from_env().exchanges_dir)
    venue = venue_factory(exchanges.feeds["polymarket"])(("market",))
    assert isinstance(venue, PolymarketVenue)
    assert venue.markets_per_command == 500 and venue.limit == 500
    assert venue.types["last_trade_price"] == "trade"
