"""REST object → row mapping, from the recorded REST sample and hand-made edge cases (no servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ingest_daemons.secmaster.kalshi_rows import event_row, market_row, series_row
from ingest_daemons.secmaster.store import EVENTS, MARKETS, SERIES


def _sample(samples_dir: Path) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((samples_dir / "kalshi_rest_markets.json").read_text())
    return sample


def test_recorded_market_maps_to_reference_fields_only(samples_dir: Path) -> None:
    item = _sample(samples_dir)["get_markets_markets_item"]
    row = market_row("kalshi", item)
    assert row is not None
    assert set(row) == set(MARKETS.column_names)  # exactly the columns the upsert writes
    assert row["ticker"] == row["event_ticker"] == "KXBALANCE-29"  # a market ticker may equal its event's
    assert row["status"] == "active"
    assert row["result"] is None  # "" = no result yet
    assert row["subtitle"] is None and row["rules_secondary"] is None
    assert row["settlement_timer_seconds"] == 1800  # a digit string in this response
    assert row["notional_value_dollars"] == "1.0000"  # decimal text, parsed exactly by PostgreSQL
    assert row["close_time"] == "2029-07-01T14:00:00Z"
    assert "yes_bid_dollars" not in row and "volume_fp" not in row  # prices live in the streams


def test_recorded_market_with_strike(samples_dir: Path) -> None:
    row = market_row("kalshi", _sample(samples_dir)["get_market_response"]["market"])
    assert row is not None
    assert (row["strike_type"], row["floor_strike"], row["cap_strike"]) == ("greater_or_equal", "13.1", None)


def test_numbers_times_and_garbage_normalise() -> None:
    row = market_row("kalshi", {"ticker": "KXBTCD-26FEB1217-T72749.99", "floor_strike": 72749.99, "cap_strike": True,
                                "open_time": "not a time", "close_time": "", "settlement_timer_seconds": "x",
                                "custom_strike": {"Associated Market": "X"}, "status": ""})
    assert row is not None
    assert row["floor_strike"] == "72749.99" and row["cap_strike"] is None
    assert row["open_time"] is None and row["close_time"] is None
    assert row["settlement_timer_seconds"] is None
    assert row["custom_strike"] == {"Associated Market": "X"}
    assert row["status"] == "unknown" and row["event_ticker"] == ""


def test_objects_without_key_are_skipped() -> None:
    assert market_row("kalshi", {"event_ticker": "E"}) is None
    assert event_row("kalshi", {"ticker": "wrong-field"}) is None
    assert series_row("kalshi", {"ticker": ""}) is None


def test_series_and_event_rows_match_their_tables() -> None:
    series = series_row("kalshi", {"ticker": "KXHIGHNY", "title": "Highest temperature in NYC",
                                   "category": "Climate and Weather", "tags": ["Daily temperature", 3],
                                   "settlement_sources": [{"name": "NWS"}], "fee_multiplier": 1})
    assert series is not None and set(series) == set(SERIES.column_names)
    assert series["tags"] == ["Daily temperature"] and series["fee_multiplier"] == "1"
    event = event_row("kalshi", {"event_ticker": "KXHIGHNY-24JAN01", "series_ticker": "KXHIGHNY",
                                 "mutually_exclusive": "yes", "strike_date": "2024-01-01T05:00:00Z"})
    assert event is not None and set(event) == set(EVENTS.column_names)
    assert event["mutually_exclusive"] is None and event["strike_date"] == "2024-01-01T05:00:00Z"
