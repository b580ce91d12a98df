"""KalshiVenue without a socket: replies and frames in, commands and decisions out."""

from __future__ import annotations

import orjson
import pytest

from ingest_daemons.adapters.kalshi import KalshiAdapter
from ingest_daemons.adapters.kalshi_venue import KalshiVenue
from ingest_daemons.connector.venue import Command, CommandRefused, ControlOutcome, FrameKind, Message


def venue(channels: tuple[str, ...] = ("ticker", "trade", "orderbook_delta"), size: int = 3) -> KalshiVenue:
    return KalshiVenue(KalshiAdapter(), channels, None, size)


def body(command: Command) -> dict[str, object]:
    parsed = orjson.loads(command.frame)
    assert isinstance(parsed, dict)
    return parsed


def reply(v: KalshiVenue, frame: dict[str, object]) -> tuple[Message, ControlOutcome]:
    [message] = v.classify(orjson.dumps(frame))
    assert message.kind is FrameKind.CONTROL
    return message, v.on_control(message)


def subscribed(v: KalshiVenue, command: Command, first_sid: int) -> list[int]:
    """Answer a subscribe as the exchange does: one ``subscribed`` per channel, each with its own sid."""
    channels = body(command)["params"]["channels"]  # type: ignore[index]
    replies = []
    for i, channel in enumerate(channels):  # type: ignore[arg-type]
        message, outcome = reply(v, {"id": command.reply_key, "type": "subscribed",
                                     "msg": {"channel": channel, "sid": first_sid + i}})
        assert outcome.reply_to == command.reply_key and not outcome.failed
        replies.append(message)
    summary = v.on_replies(command, replies)
    return list(summary["sids"])


def test_subscribe_waits_for_one_reply_per_channel_and_records_the_sids() -> None:
    v = venue()
    [command] = v.subscribe(["A", "B"])
    assert body(command)["params"] == {"channels": ["ticker", "trade", "orderbook_delta"], "market_tickers": ["A", "B"]}
    assert command.replies == 3 and command.pace_key is None
    assert subscribed(v, command, 1) == [1, 2, 3]
    assert v.subscription_summary() == {"sids": [1, 2, 3]}
    v.reset()
    assert v.subscription_summary() == {"sids": []} and v.unsubscribe_all() == []


def test_lifecycle_channel_is_subscribed_once_without_markets() -> None:
    v = venue(("market_lifecycle_v2",))
    assert v.subscribe(["A"]) == [] and v.add(["A"]) == []
    [command] = v.subscribe_unfiltered()
    assert body(command)["params"] == {"channels": ["market_lifecycle_v2"]}


def test_all_markets_venue_subscribes_every_channel_once_without_markets_and_resubscribes_the_same_way() -> None:
    v = KalshiVenue(KalshiAdapter(), ("ticker", "trade"), None, 3, all_markets=True)
    assert v.subscribe(["A"]) == [] and v.add(["A"]) == [] and v.remove(["A"]) == []
    [command] = v.subscribe_unfiltered()
    assert body(command)["params"] == {"channels": ["ticker", "trade"]} and command.replies == 2
    assert subscribed(v, command, 1) == [1, 2]
    _, outcome = reply(v, {"type": "error", "sid": 2, "msg": {"code": 17, "msg": "Internal error"}})
    [again] = outcome.resubscribe
    assert outcome.terminal and body(again)["params"] == {"channels": ["trade"]}
    v.reset()  # a new socket: the same single subscribe again
    [command] = v.subscribe_unfiltered()
    assert body(command)["params"] == {"channels": ["ticker", "trade"]}


def test_add_fills_the_newest_batch_per_sid_then_opens_a_new_one() -> None:
    v = venue(size=3)
    subscribed(v, v.subscribe(["A", "B"])[0], 1)
    commands = v.add(["C", "D", "E"])
    updates, rest = commands[:3], commands[3:]
    assert [body(c)["params"] for c in updates] == [
        {"sids": [sid], "market_tickers": ["C"], "action": "add_markets"} for sid in (1, 2, 3)]
    assert [c.pace_key for c in updates] == [1, 2, 3], "paced per subscription (protocols A6)"
    assert [body(c)["params"]["market_tickers"] for c in rest] == [["D", "E"]]  # type: ignore[index]
    for command in updates:
        message, _ = reply(v, {"id": command.reply_key, "type": "ok", "sid": command.pace_key, "msg": {}})
        v.on_replies(command, [message])
    subscribed(v, rest[0], 4)
    partial = v.remove(["D"])
    assert [body(c)["params"] for c in partial] == [
        {"sids": [sid], "market_tickers": ["D"], "action": "delete_markets"} for sid in (4, 5, 6)]
    emptied = v.remove(["A", "B", "C"])
    assert [(body(c)["cmd"], body(c)["params"]) for c in emptied] == [
        ("unsubscribe", {"sids": [sid]}) for sid in (1, 2, 3)], "sids left empty are unsubscribed"


def test_refused_subscribe_stops_the_plan() -> None:
    v = venue()
    [command] = v.subscribe(["A"])
    error = {"code": 8, "msg": "Unknown channel"}
    message, outcome = reply(v, {"id": command.reply_key, "type": "error", "msg": error})
    assert outcome.failed and outcome.reply_to == command.reply_key
    with pytest.raises(CommandRefused, match="Unknown channel"):
        v.on_replies(command, [message])


def test_orderbook_gap_asks_for_snapshots_and_unknown_sids_are_not_gaps() -> None:
    v = venue()
    subscribed(v, v.subscribe(["A", "B"])[0], 1)
    book = v.on_gap(3, 10, 13, "A")
    assert book is not None and dict(book.fields) == {"sid": 3, "channel": "orderbook_delta"}
    [resync] = book.resync
    assert body(resync)["params"] == {"sids": [3], "market_tickers": ["A", "B"], "action": "get_snapshot"}
    trade = v.on_gap(2, 5, 6, "A")
    assert trade is not None and trade.resync == []
    assert v.on_gap(99, 1, 5, "A") is None


def test_terminal_error_resubscribes_that_channel_and_others_are_only_reported() -> None:
    v = venue()
    subscribed(v, v.subscribe(["A"])[0], 1)
    _, outcome = reply(v, {"type": "error", "sid": 2, "msg": {"code": 25, "msg": "Subscription buffer overflow"}})
    assert outcome.terminal and outcome.live_error == {"sid": 2, "code": 25, "channel": "trade"}
    [again] = outcome.resubscribe
    assert body(again)["params"] == {"channels": ["trade"], "market_tickers": ["A"]}
    assert v.subscription_summary() == {"sids": [1, 3]}
    _, minor = reply(v, {"type": "error", "sid": 1, "msg": {"code": 6, "msg": "Already subscribed"}})
    assert minor.live_error is not None and not minor.terminal


def test_data_frames_route_and_unknown_types_are_kept_without_sequence() -> None:
    v = venue()
    frame = b'{"type":"trade","sid":2,"seq":9,"msg":{"market_ticker":"KXBTCD-26FEB1217-T72749.99"}}'
    assert v.route(frame) == ("trade", "KXBTCD-26FEB1217-T72749.99", 2, 9)
    new_type = b'{"type":"brand_new","sid":2,"seq":10,"msg":{"market_ticker":"X"}}'
    assert v.route(new_type) is None
    [message] = v.classify(new_type)
    assert message.kind is FrameKind.DATA and message.payload is new_type and message.seq is None
    [bad] = v.classify(b'{"type":')
    assert bad.kind is FrameKind.UNPARSED and bad.payload == b'{"type":'
