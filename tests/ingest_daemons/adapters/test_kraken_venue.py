"""KrakenSpotVenue and KrakenFuturesVenue, pure: bytes in, engine decisions out (no servers)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from ingest_daemons.adapters.kraken_futures_venue import KrakenFuturesVenue
from ingest_daemons.adapters.kraken_venue import STATUS_EXCHANGE, STATUS_SUBSCRIBE_REFUSED, KrakenSpotVenue
from ingest_daemons.adapters.venues import venue_factory
from ingest_daemons.config import Settings
from ingest_daemons.config.loader import load_exchanges
from ingest_daemons.connector.venue import CommandRefused, FrameKind, Message, VenueProtocol

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "kraken_golden.jsonl"
CHANNELS = ("ticker", "trade", "book")
# Kraken message type -> subject type token, written out independently of the venue and the config.
SUBJECT = {"book": "book", "book_snapshot": "book", "trade": "trade", "trade_snapshot": "trade",
           "ticker": "ticker", "ticker_lite": "ticker_lite"}


def kraken_feed():  # type: ignore[no-untyped-def]
    return load_exchanges(Settings.from_env().exchanges_dir).feeds["kraken"]


def venues() -> tuple[VenueProtocol, VenueProtocol]:
    feed = kraken_feed()
    return venue_factory(feed)(CHANNELS), venue_factory(feed, market="futures")(CHANNELS)


def messages(venue: VenueProtocol, frame: bytes) -> list[Message]:
    """What the engine does with a frame: route first, classify what route declines."""
    routed = venue.route(frame)
    if routed is not None:
        subject_type, market, _, _ = routed
        return [Message(FrameKind.DATA, subject_type, market, None, None, frame)]
    return list(venue.classify(frame))


def test_golden_replay_through_the_venues_gives_the_expected_subject_type_and_symbol(samples_dir: Path) -> None:
    """Every recorded spot v2 and futures line, through the venue the config builds: data to the
    subject type and symbol of the golden table, control to the engine, nothing unparsed, no gap."""
    spot, futures = venues()
    rows = [orjson.loads(x) for x in GOLDEN.read_bytes().splitlines()]
    seen = 0
    for row in rows:
        if row["protocol"] not in ("spot_v2", "futures_v1"):
            continue  # the legacy v1 socket is never subscribed
        line = (samples_dir / row["file"]).read_bytes().splitlines()[row["line"] - 1]
        venue = spot if row["protocol"] == "spot_v2" else futures
        [m] = messages(venue, line)
        if row["kind"] == "control":
            assert m.kind is FrameKind.CONTROL, row
        else:
            assert (m.kind, m.subject_type, m.market, m.gap) == (FrameKind.DATA, SUBJECT[row["type"]],
                                                                 row["symbol"], None), row
            assert m.payload is line, "the frame is published as received"
        seen += 1
    assert seen == sum(r["protocol"] in ("spot_v2", "futures_v1") for r in rows) > 800


def test_every_recorded_book_frame_routes_verified_and_a_changed_digit_is_a_checksum_gap(samples_dir: Path) -> None:
    spot = KrakenSpotVenue(CHANNELS)
    frames = (samples_dir / "kraken_book.jsonl").read_bytes().splitlines()
    for frame in frames[:200]:
        assert spot.route(frame) == ("book", "BTC/USD", None, None)
        assert spot.books.book("BTC/USD") is not None, "verified: the book is kept"
    checksum = int(re.search(rb'"checksum":(\d+)', frames[200]).group(1))  # type: ignore[union-attr]
    bad = frames[200].replace(b'"checksum":%d' % checksum, b'"checksum":%d' % (checksum ^ 1))
    assert spot.route(bad) is None, "a mismatch is declined by the hot path"
    [m] = spot.classify(bad)
    assert (m.kind, m.subject_type, m.market, m.payload) == (FrameKind.DATA, "book", "BTC/USD", bad)
    assert m.gap is not None
    assert m.gap.fields["reason"] == "checksum" and m.gap.fields["expected"] == checksum ^ 1
    assert m.gap.fields["computed"] == checksum, "our book was right: the exchange's number was altered"
    unsub, sub = m.gap.resync
    assert orjson.loads(unsub.frame)["method"] == "unsubscribe"
    assert orjson.loads(sub.frame)["params"] == {"channel": "book", "symbol": ["BTC/USD"], "depth": 25}
    # Until a fresh snapshot the symbol has no book: updates are published without a second marker.
    for frame in frames[201:210]:
        assert spot.route(frame) == ("book", "BTC/USD", None, None)
    assert spot.books.book("BTC/USD") is None
    snapshot = frames[0]
    assert spot.route(snapshot) == ("book", "BTC/USD", None, None)
    assert spot.books.book("BTC/USD") is not None, "the snapshot is verified and kept again"


def test_a_book_frame_in_another_layout_is_still_verified() -> None:
    spot = KrakenSpotVenue(CHANNELS, depth=10)
    frame = (b'{"channel": "book", "type": "snapshot", "data": [{"symbol": "A/B", "bids": [{"price": 1.0, '
             b'"qty": 2.00}], "asks": [{"price": 1.5, "qty": 3.0}], "checksum": 1, "timestamp": "t"}]}')
    assert spot.route(frame) is None
    [m] = spot.classify(frame)
    assert m.kind is FrameKind.DATA and m.gap is not None and m.gap.fields["reason"] == "checksum"


def test_spot_acks_one_per_symbol_and_an_unknown_symbol_is_reported_not_fatal() -> None:
    spot = KrakenSpotVenue(CHANNELS, markets_per_command=2)
    commands = spot.subscribe(["BTC/USD", "NOPE/USD", "ETH/USD"])
    assert [orjson.loads(c.frame)["params"]["channel"] for c in commands] == ["ticker", "ticker", "trade", "trade",
                                                                              "book", "book"]
    assert [c.replies for c in commands] == [2, 1, 2, 1, 2, 1], "one ack per symbol"
    assert len({c.reply_key for c in commands}) == 6
    book = commands[4]
    req = orjson.loads(book.frame)["req_id"]
    assert book.reply_key == req
    ok = spot.classify(orjson.dumps({"method": "subscribe", "result": {"channel": "book", "depth": 25,
                                     "snapshot": True, "symbol": "BTC/USD"}, "success": True, "req_id": req}))[0]
    nope = spot.classify(orjson.dumps({"error": "Currency pair not supported NOPE/USD", "method": "subscribe",
                                       "success": False, "symbol": "NOPE/USD", "req_id": req}))[0]
    outcome = spot.on_control(ok)
    assert (outcome.reply_to, outcome.failed, outcome.status) == (req, False, None)
    refused = spot.on_control(nope)
    assert (refused.reply_to, refused.failed, refused.status) == (req, False, STATUS_SUBSCRIBE_REFUSED)
    assert refused.live_error is not None
    assert (refused.live_error["symbol"], refused.live_error["channel"]) == ("NOPE/USD", "book")
    summary = spot.on_replies(book, [ok, nope])
    assert summary == {"refused": [{"symbol": "NOPE/USD", "error": "Currency pair not supported NOPE/USD"}]}
    assert spot.symbols["book"] == {"BTC/USD"}
    assert spot.subscription_summary()["refused"] == ["NOPE/USD"]
    # An error that names no symbol refuses the whole command.
    whole = spot.classify(orjson.dumps({"error": "EGeneral:Invalid arguments:depth", "method": "subscribe",
                                        "success": False, "req_id": req}))[0]
    assert spot.on_control(whole).failed
    with pytest.raises(CommandRefused):
        spot.on_replies(book, [whole])
    [end] = [c for c in spot.unsubscribe_all()]
    assert orjson.loads(end.frame)["params"] == {"channel": "book", "symbol": ["BTC/USD"], "depth": 25}


def test_spot_keepalive_status_and_heartbeat() -> None:
    spot = KrakenSpotVenue(CHANNELS)
    first, second = orjson.loads(spot.keepalive() or b""), orjson.loads(spot.keepalive() or b"")
    assert first["method"] == second["method"] == "ping" and second["req_id"] > first["req_id"]
    [pong] = spot.classify(b'{"method":"pong","req_id":1,"time_in":"t","time_out":"t"}')
    [beat] = spot.classify(b'{"channel":"heartbeat"}')
    assert pong.kind is beat.kind is FrameKind.CONTROL
    assert spot.on_control(beat).status is None and spot.on_control(pong).reply_to is None
    status = (b'{"channel":"status","type":"update","data":[{"version":"2.0.10","system":"maintenance",'
              b'"api_version":"v2","connection_id":12345678901234567890}]}')
    [m] = spot.classify(status)
    outcome = spot.on_control(m)
    assert outcome.status == STATUS_EXCHANGE
    assert outcome.status_fields is not None and outcome.status_fields["system"] == "maintenance"
    assert outcome.status_fields["connection_id"] == 12345678901234567890, "beyond 2^53, kept exact"


def test_spot_trade_id_jump_is_a_gap_without_resync() -> None:
    spot = KrakenSpotVenue(CHANNELS)

    def trade(*ids: int) -> bytes:
        items = ",".join(f'{{"symbol":"ETH/USD","side":"buy","price":1.0,"qty":1.0,"ord_type":"limit",'
                         f'"trade_id":{i},"timestamp":"t"}}' for i in ids)
        return f'{{"channel":"trade","type":"update","data":[{items}]}}'.encode()

    assert [m.gap for f in (trade(5, 6), trade(7)) for m in messages(spot, f)] == [None, None]
    [m] = messages(spot, trade(10, 11))
    assert (m.kind, m.subject_type, m.market) == (FrameKind.DATA, "trade", "ETH/USD")
    assert m.gap is not None and m.gap.resync == ()
    assert {k: m.gap.fields[k] for k in ("reason", "expected", "got", "missing")} == {
        "reason": "trade_id", "expected": 8, "got": 10, "missing": 2}


def test_futures_commands_acks_and_seq_gaps(samples_dir: Path) -> None:
    fut = KrakenFuturesVenue(CHANNELS)
    assert fut.keepalive() is None, "a WebSocket ping"
    commands = fut.subscribe(["PF_XBTUSD", "pi_ethusd"])
    assert [orjson.loads(c.frame) for c in commands][2] == {"event": "subscribe", "feed": "book",
                                                           "product_ids": ["PF_XBTUSD", "PI_ETHUSD"]}
    [beat] = fut.subscribe_unfiltered()
    assert orjson.loads(beat.frame) == {"event": "subscribe", "feed": "heartbeat"}
    [ack] = fut.classify(b'{"event":"subscribed","feed":"book","product_ids":["PI_ETHUSD"]}')
    assert fut.on_control(ack).reply_to == commands[2].reply_key, "matched by feed and product, no id on the wire"
    [hb_ack] = fut.classify(b'{"event":"subscribed","feed":"heartbeat"}')
    assert fut.on_control(hb_ack).reply_to == beat.reply_key
    [failed] = fut.classify(b'{"event":"subscribed_failed","feed":"trade","product_ids":["PF_XBTUSD"],'
                            b'"message":"Invalid product id"}')
    outcome = fut.on_control(failed)
    assert outcome.reply_to == commands[1].reply_key and outcome.status == STATUS_SUBSCRIBE_REFUSED
    assert fut.on_replies(commands[2], [ack]) == {} and fut.products["book"] == {"PI_ETHUSD"}
    assert fut.on_replies(commands[1], [failed]) == {"refused": ["PF_XBTUSD"]}

    lines = (samples_dir / "kraken_futures_book.jsonl").read_bytes().splitlines()
    gaps = [m.gap for x in lines if b'"seq":26660860,' not in x for m in messages(fut, x) if m.gap is not None]
    [gap] = gaps
    assert {k: gap.fields[k] for k in ("reason", "symbol", "expected", "got")} == {
        "reason": "seq", "symbol": "PI_ETHUSD", "expected": 26660860, "got": 26660861}
    unsub, sub = gap.resync
    assert orjson.loads(unsub.frame) == {"event": "unsubscribe", "feed": "book", "product_ids": ["PI_ETHUSD"]}
    assert orjson.loads(sub.frame) == {"event": "subscribe", "feed": "book", "product_ids": ["PI_ETHUSD"]}


def test_a_new_socket_forgets_books_and_sequences(samples_dir: Path) -> None:
    spot = KrakenSpotVenue(CHANNELS)
    frames = (samples_dir / "kraken_book.jsonl").read_bytes().splitlines()
    spot.route(frames[0])
    spot.reset()
    assert spot.books.book("BTC/USD") is None
    assert spot.route(frames[1]) == ("book", "BTC/USD", None, None), "an update before the snapshot: no marker"


def test_unknown_channels_and_markets_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="spot has no channel"):
        KrakenSpotVenue(("ticker_lite",))
    with pytest.raises(ValueError, match="markets spot, futures"):
        venue_factory(kraken_feed(), market="options")
