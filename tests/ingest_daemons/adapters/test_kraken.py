"""Kraken pure code: golden replay of every recorded line, commands, sequence checks, subject escaping."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ingest_daemons.adapters.kraken import (
    CONTROL,
    DATA,
    FuturesIntegrity,
    SpotIntegrity,
    classify,
    futures_subscribe,
    futures_unsubscribe,
    spot_ping,
    spot_subscribe,
    spot_unsubscribe,
)
from ingest_daemons.adapters.kraken_sequence import SeqStatus, SequenceTracker
from ingest_daemons.naming import SubjectBuilder, escape_token, parse_subject, unescape_token

# One row per line of every samples/kraken_* file: file, line, protocol, kind, type, symbol. Reviewed by
# hand against the lines when written; a change to it is a change of classification to review.
GOLDEN = Path(__file__).resolve().parents[2] / "data" / "kraken_golden.jsonl"


def golden() -> list[dict[str, object]]:
    return [orjson.loads(x) for x in GOLDEN.read_bytes().splitlines()]


def test_golden_covers_every_recorded_kraken_line(samples_dir: Path) -> None:
    files = sorted(p.name for p in samples_dir.glob("kraken_*.jsonl"))
    rows = golden()
    assert sorted({str(r["file"]) for r in rows}) == files
    for name in files:
        n = len((samples_dir / name).read_bytes().splitlines())
        assert [r["line"] for r in rows if r["file"] == name] == list(range(1, n + 1)), name


def test_golden_replay_gives_the_expected_type_and_symbol(samples_dir: Path) -> None:
    cache: dict[str, list[bytes]] = {}
    for row in golden():
        name = str(row["file"])
        lines = cache.setdefault(name, (samples_dir / name).read_bytes().splitlines())
        line = lines[int(str(row["line"])) - 1]
        m = classify(line)
        assert (m.protocol, m.kind, m.msg_type, m.symbol) == (
            row["protocol"], row["kind"], row["type"], row["symbol"]
        ), (name, row["line"])
        # Independently of the classifier: a data message's symbol is written in the line as Kraken wrote it.
        if m.kind == DATA:
            assert m.symbol is not None
            assert any(
                f'"{k}":"{m.symbol}"'.encode() in line for k in ("symbol", "product_id")
            ) or line.endswith(f'"{m.symbol}"]'.encode())
        assert m.kind != "unparsed"


def test_golden_counts_by_file() -> None:
    """A reviewer's summary of the golden file, so an accidental regeneration shows up in review."""
    counts: dict[tuple[str, str], int] = {}
    for r in golden():
        key = (str(r["file"]), str(r["type"]))
        counts[key] = counts.get(key, 0) + 1
    assert counts[("kraken_book.jsonl", "book")] == 400
    assert counts[("kraken_futures_book.jsonl", "book_snapshot")] == 10
    assert counts[("kraken_futures_book.jsonl", "book")] == 300
    assert counts[("kraken_futures_trade.jsonl", "trade_snapshot")] == 10
    assert counts[("kraken_futures_control.jsonl", "subscribed")] == 30
    assert counts[("kraken_control.jsonl", "heartbeat")] == 8
    assert counts[("kraken_v1_book.jsonl", "book")] == 286


def test_classify_fields() -> None:
    status = classify(b'{"channel":"status","type":"update","data":[{"connection_id":2950167385101900187,'
                      b'"system":"online"}]}')
    assert (status.kind, status.msg_type) == (CONTROL, "status")
    err = classify(b'{"error":"Currency pair not supported NOPE/USD","method":"subscribe","success":false,'
                   b'"symbol":"NOPE/USD","req_id":3}')
    assert (err.msg_type, err.symbol, err.success, err.req_id) == ("subscribe", "NOPE/USD", False, 3)
    trades = classify(b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","trade_id":7},'
                      b'{"symbol":"BTC/USD","trade_id":8}]}')
    assert (trades.seq, trades.snapshot) == ((7, 8), False)
    fut = classify(b'{"feed":"book","product_id":"PF_XBTUSD","side":"buy","seq":12,"price":1.0,"qty":0.0}')
    assert (fut.protocol, fut.kind, fut.msg_type) == ("futures_v1", DATA, "book")
    assert (fut.symbol, fut.seq) == ("PF_XBTUSD", (12,))
    # A connection id beyond 64 bits still classifies (orjson refuses it; the fallback parser does not).
    huge = b'{"channel":"status","type":"update","data":[{"connection_id":' + b"9" * 25 + b"}]}"
    assert classify(huge).kind == CONTROL
    for junk in (b"", b"nope", b"[1,2]", b'{"channel":5}', b'{"channel":"trade","data":[{"trade_id":"x"}]}'):
        assert classify(junk).kind == "unparsed", junk


def test_commands() -> None:
    assert orjson.loads(spot_subscribe("book", ["BTC/USD"], req_id=4)) == {
        "method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 25}, "req_id": 4
    }
    assert orjson.loads(spot_subscribe("book", ["BTC/USD"], depth=1000))["params"]["depth"] == 1000
    assert orjson.loads(spot_subscribe("trade", ["A/B"], snapshot=True))["params"] == {
        "channel": "trade", "symbol": ["A/B"], "snapshot": True
    }
    with pytest.raises(ValueError, match="depth"):
        spot_subscribe("book", ["BTC/USD"], depth=50)
    with pytest.raises(ValueError, match="book channel only"):
        spot_subscribe("ticker", ["BTC/USD"], depth=10)
    assert orjson.loads(spot_unsubscribe("book", ["BTC/USD"], depth=10, req_id=5)) == {
        "method": "unsubscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10}, "req_id": 5
    }
    assert orjson.loads(spot_ping(9)) == {"method": "ping", "req_id": 9}
    assert orjson.loads(futures_subscribe("book", ["PF_XBTUSD"])) == {
        "event": "subscribe", "feed": "book", "product_ids": ["PF_XBTUSD"]
    }
    assert orjson.loads(futures_subscribe("heartbeat")) == {"event": "subscribe", "feed": "heartbeat"}
    assert orjson.loads(futures_unsubscribe("trade", ["PI_ETHUSD"]))["event"] == "unsubscribe"


def test_sequence_tracker_states() -> None:
    t = SequenceTracker()
    assert t.observe("k", 5).status is SeqStatus.FIRST
    assert t.observe("k", 6).status is SeqStatus.OK
    v = t.observe("k", 9)
    assert (v.status, v.expected, v.got, v.missing) == (SeqStatus.GAP, 7, 9, 2)
    assert t.observe("k", 9).status is SeqStatus.STALE
    assert t.observe("k", 10).status is SeqStatus.OK
    assert t.observe_run("k", [11, 12, 13]).status is SeqStatus.OK
    v = t.observe_run("k", [14, 16])  # a hole inside one message
    assert (v.status, v.expected, v.got) == (SeqStatus.GAP, 15, 16)
    assert t.last("k") == 16
    t.forget("k")
    assert t.observe("k", 100).status is SeqStatus.FIRST


def test_recorded_futures_sequences_have_no_gap_and_a_skip_is_found(samples_dir: Path) -> None:
    for name in ("kraken_futures_book.jsonl", "kraken_futures_trade.jsonl"):
        checks = FuturesIntegrity()
        lines = (samples_dir / name).read_bytes().splitlines()
        assert [f for x in lines if (f := checks.check(classify(x)))] == [], name
    lines = (samples_dir / "kraken_futures_book.jsonl").read_bytes().splitlines()
    checks = FuturesIntegrity()
    findings = []
    for x in lines:
        if b'"seq":26660860,' in x:  # drop one recorded PI_ETHUSD update: the next one is a gap
            continue
        if (f := checks.check(classify(x))) is not None:
            findings.append(f)
    assert len(findings) == 1
    f = findings[0]
    assert (f.reason, f.symbol, f.channel, f.expected, f.got, f.resync) == ("seq", "PI_ETHUSD", "book", 26660860,
                                                                            26660861, True)


def test_spot_trade_id_gap() -> None:
    checks = SpotIntegrity()

    def trade(kind: str, *ids: int) -> bytes:
        items = ",".join(f'{{"symbol":"BTC/USD","trade_id":{i}}}' for i in ids)
        return f'{{"channel":"trade","type":"{kind}","data":[{items}]}}'.encode()

    for frame, expect in [
        (trade("snapshot", 10, 11, 12), None),
        (trade("update", 13), None),
        (trade("update", 14, 15), None),
        (trade("update", 17), ("trade_id", "BTC/USD", "trade", 16, 17, False)),
        (trade("update", 18), None),
    ]:
        f = checks.check(frame, classify(frame))
        assert (None if f is None else tuple(f)) == expect


@pytest.mark.parametrize("symbol", ["BTC/USD", "PF_XBTUSD", "FI_XBTUSD_210924", "Metal.XAU/USD", "ETH/BTC"])
def test_kraken_symbols_escape_reversibly(symbol: str) -> None:
    token = escape_token(symbol)
    assert "." not in token and "/" not in token and unescape_token(token) == symbol
    subject = SubjectBuilder("dev", "kraken").subject("spot", "trade", symbol)
    assert parse_subject(subject).ticker == symbol
    assert escape_token("BTC/USD") == "BTC%2FUSD" and escape_token("PF_XBTUSD") == "PF_XBTUSD"
