"""Golden replay: every Kalshi sample line classifies to the expected type and ticker."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from ingest_daemons.adapters.kalshi import FrameKind, KalshiAdapter
from ingest_daemons.config import load_exchanges
from tests.fixtures.config import REPO_EXCHANGES

# file -> (kind, expected subject type, JSON key holding the ticker inside "msg")
EXPECTED = {
    "kalshi_ticker.jsonl": (FrameKind.DATA, "ticker", "market_ticker"),
    "kalshi_trade.jsonl": (FrameKind.DATA, "trade", "market_ticker"),
    "kalshi_orderbook.jsonl": (FrameKind.DATA, "orderbook", "market_ticker"),
    "kalshi_market_lifecycle_v2.jsonl": (FrameKind.DATA, "lifecycle", "market_ticker"),
    "kalshi_event_lifecycle.jsonl": (FrameKind.DATA, "event_lifecycle", "event_ticker"),
    "kalshi_event_fee_update.jsonl": (FrameKind.DATA, "event_lifecycle", "event_ticker"),
    "kalshi_ticker_v2.jsonl": (FrameKind.DATA, "ticker_v2", "market_ticker"),
    "kalshi_fill.jsonl": (FrameKind.DATA, "fill", "market_ticker"),
    "kalshi_control.jsonl": (FrameKind.CONTROL, None, None),
}


@pytest.fixture(scope="module")
def adapter() -> KalshiAdapter:
    return KalshiAdapter(load_exchanges(REPO_EXCHANGES).feeds["kalshi"].message_types)


def sample_lines(samples_dir: Path, name: str) -> list[bytes]:
    return [line for line in (samples_dir / name).read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_samples(adapter: KalshiAdapter, samples_dir: Path, name: str) -> None:
    kind, subject_type, ticker_key = EXPECTED[name]
    lines = sample_lines(samples_dir, name)
    assert lines
    for line in lines:
        raw = json.loads(line)  # an independent parser for the expectation
        got = adapter.classify(line)
        assert got.kind is kind, line
        if kind is FrameKind.CONTROL:
            assert got.type == raw["type"]
            continue
        assert got.subject_type == subject_type, line
        assert got.ticker == raw["msg"][ticker_key], line
        assert got.sid == raw.get("sid") and got.seq == raw.get("seq"), line


def test_every_kalshi_sample_file_is_covered(samples_dir: Path) -> None:
    frames = {p.name for p in samples_dir.glob("kalshi_*.jsonl")} - {"kalshi_commands.jsonl"}
    assert frames == set(EXPECTED)


def test_both_payload_eras_classify_alike(adapter: KalshiAdapter, samples_dir: Path) -> None:
    lines = sample_lines(samples_dir, "kalshi_trade.jsonl")
    legacy = next(line for line in lines if b'"yes_price":' in line)
    current = next(line for line in lines if b'"count_fp"' in line and b'"yes_price":' not in line)
    assert adapter.classify(legacy).subject_type == adapter.classify(current).subject_type == "trade"


def test_dotted_ticker_is_kept_raw(adapter: KalshiAdapter) -> None:
    got = adapter.classify(b'{"type":"trade","sid":2,"seq":9,"msg":{"market_ticker":"KXBTCD-26FEB1217-T72749.99"}}')
    assert got.ticker == "KXBTCD-26FEB1217-T72749.99" and got.seq == 9 and got.sid == 2


@pytest.mark.parametrize("frame", [b"", b"{", b"[1,2]", b'{"sid":1}', b'"x"', b"\xff\xfe", b'{"type":"!!!"}'])
def test_malformed_frames_are_unparsed_never_raise(adapter: KalshiAdapter, frame: bytes) -> None:
    assert adapter.classify(frame).kind is FrameKind.UNPARSED


def test_terminal_error_reply(adapter: KalshiAdapter) -> None:
    got = adapter.classify(b'{"type":"error","sid":3,"msg":{"code":25,"msg":"Subscription buffer overflow"}}')
    assert got.kind is FrameKind.CONTROL and got.error_code == 25 and got.sid == 3 and got.command_id is None


def test_commands(adapter: KalshiAdapter, samples_dir: Path) -> None:
    command_id, frame = adapter.subscribe(["ticker", "trade"], ["FED-23DEC-T3.00"])
    assert orjson.loads(frame) == {"id": command_id, "cmd": "subscribe",
                                   "params": {"channels": ["ticker", "trade"], "market_tickers": ["FED-23DEC-T3.00"]}}
    _, update = adapter.update_subscription(7, "add_markets", ["A.B"])
    assert orjson.loads(update)["params"] == {"sids": [7], "market_tickers": ["A.B"], "action": "add_markets"}
    next_id, _ = adapter.unsubscribe([1, 2])
    assert next_id == command_id + 2
    # our command shapes appear among the exchange's documented examples
    documented = [json.loads(line) for line in sample_lines(samples_dir, "kalshi_commands.jsonl")]
    assert any(d["cmd"] == "update_subscription" and "sids" in d["params"] for d in documented)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_route_agrees_with_classify(adapter: KalshiAdapter, samples_dir: Path, name: str) -> None:
    """The hot path's ``route`` takes exactly the known data frames, with classify's routing fields."""
    for line in sample_lines(samples_dir, name):
        full = adapter.classify(line)
        routed = adapter.route(line)
        if full.kind is FrameKind.DATA and full.type in adapter.channel_of_type:
            assert routed == (full.subject_type, full.ticker, full.sid, full.seq), line
        else:
            assert routed is None, line


@pytest.mark.parametrize(
    "frame",
    [b"", b"{", b"[1,2]", b'{"sid":1}', b'"x"', b"\xff\xfe", b'{"type":"!!!"}', b'{"type":["trade"]}', b"[]",
     b'{"type":"trade","msg":{"market_ticker":"K"}} trailing', b'{"type":"trade","msg":"K","sid":"1","seq":1.5}'],
)
def test_route_never_raises(adapter: KalshiAdapter, frame: bytes) -> None:
    routed = adapter.route(frame)
    assert routed is None or routed == ("trade", None, None, None)
