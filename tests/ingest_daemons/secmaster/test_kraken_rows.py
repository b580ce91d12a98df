"""Kraken REST listings → secmaster rows (pure), from the shapes Kraken answers with."""

from __future__ import annotations

from typing import Any

import pytest

from ingest_daemons.secmaster import kraken_rows as rows
from ingest_daemons.secmaster.store import GENERIC_TABLES

ASSET_PAIRS: dict[str, Any] = {"error": [], "result": {
    "XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD", "status": "online"},
    "XDGUSD": {"altname": "XDGUSD", "wsname": "XDG/USD", "base": "XXDG", "quote": "ZUSD", "status": "cancel_only"},
    "XETHZUSD.d": {"altname": "ETHUSD.d", "base": "XETH", "quote": "ZUSD"},  # dark pool: no wsname
}}  # fmt: skip
INSTRUMENTS: dict[str, Any] = {"result": "success", "instruments": [
    {"symbol": "PF_XBTUSD", "type": "flexible_futures", "base": "XBT", "tradeable": True},
    {"symbol": "pi_ethusd", "type": "futures_inverse", "base": "ETH", "tradeable": False},
    {"type": "spot index"},
]}  # fmt: skip


def groups(tags: list[str]) -> str | None:
    """Like kraken.yaml's category_tags with one configured group: BTC is Majors, else the market type."""
    mapping = {"btc": "Majors", "xbt": "Majors", "spot": "Spot", "futures": "Futures"}
    return next((mapping[t.casefold()] for t in tags if t.casefold() in mapping), None)


def test_spot_pairs_fill_the_three_levels_under_their_v2_names() -> None:
    out = rows.spot_rows("kraken", ASSET_PAIRS, groups)
    assert out.skipped == 1
    assert [(m["ticker"], m["market_type"], m["status"]) for m in out.markets] == [
        ("BTC/USD", "spot", "online"), ("DOGE/USD", "spot", "cancel_only")]
    assert [(s["ticker"], s["category"], s["tags"]) for s in out.series] == [
        ("BTC/USD", "Majors", ["BTC/USD", "BTC", "spot"]), ("DOGE/USD", "Spot", ["DOGE/USD", "DOGE", "spot"])]
    assert [(e["event_ticker"], e["series_ticker"], e["exchange_id"]) for e in out.events] == [
        ("BTC/USD", "BTC/USD", "XXBTZUSD"), ("DOGE/USD", "DOGE/USD", "XDGUSD")]
    assert all(m["event_ticker"] == m["ticker"] for m in out.markets)
    for table, made in (("series", out.series), ("events", out.events), ("markets", out.markets)):
        assert all(set(r) == set(GENERIC_TABLES[table].column_names) for r in made)


def test_futures_products_are_uppercase_and_halted_when_not_tradeable() -> None:
    out = rows.futures_rows("kraken", INSTRUMENTS, groups)
    assert out.skipped == 1
    assert [(m["ticker"], m["market_type"], m["status"]) for m in out.markets] == [
        ("PF_XBTUSD", "futures", "online"), ("PI_ETHUSD", "futures", "halted")]
    assert [s["category"] for s in out.series] == ["Majors", "Futures"]
    assert out.events[1]["exchange_id"] == "pi_ethusd"
    assert out.symbols == {"PF_XBTUSD", "PI_ETHUSD"}


def test_a_body_that_is_not_a_listing_is_refused() -> None:
    with pytest.raises(ValueError, match="AssetPairs"):
        rows.listing_rows("kraken", "spot", {"error": ["EGeneral:Temporary lockout"]}, groups)
    with pytest.raises(ValueError, match="instruments"):
        rows.listing_rows("kraken", "futures", {"result": "error"}, groups)
    with pytest.raises(ValueError, match="options"):
        rows.listing_rows("kraken", "options", {}, groups)
