"""The CDC view is the same for every venue; only the statuses differ (pure, no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from ingest_daemons.adapters.venues import KRAKEN_STATES, market_states
from ingest_daemons.config.models import FeedConfig
from ingest_daemons.connector.directory import DiscoveredMarket, MarketCatalog
from ingest_daemons.connector.secmaster_view import KALSHI_STATES, POLYMARKET_STATES, Decision, SecmasterView

TOKEN = "71321045679252212594626385532706912750332728571942532289631379312455583992563"


def change(table: str, op: str = "insert", **row: Any) -> dict[str, Any]:
    return {"table": table, "op": op, "row": {"feed": "polymarket", **row}}


def test_polymarket_tokens_follow_their_event_category_and_status() -> None:
    view = SecmasterView("polymarket", POLYMARKET_STATES)
    view.seed(MarketCatalog([DiscoveredMarket("1", "0xold", "Crypto")], {"ev1": "Crypto"}, {"0xold": "ev1"}))
    assert view.apply(change("events", event_ticker="0xnew", series_ticker="ev1")) == Decision("none")
    assert view.apply(change("markets", ticker=TOKEN, event_ticker="0xnew", status="active")) == Decision(
        "add", TOKEN, "Crypto")
    assert view.apply(change("markets", "update", ticker=TOKEN, event_ticker="0xnew", status="inactive")) == Decision(
        "none"), "a paused token is neither added nor removed"
    assert view.apply(change("markets", "update", ticker=TOKEN, event_ticker="0xnew", status="closed")) == Decision(
        "remove", TOKEN)
    other = {"table": "markets", "op": "insert", "row": {"feed": "kalshi", "ticker": "K", "status": "active"}}
    assert view.apply(other) == Decision("none"), "another feed's change"


def test_each_venue_names_its_statuses() -> None:
    def feed(protocol: str) -> FeedConfig:
        return FeedConfig.model_validate({
            "name": "f", "display_name": "F", "protocol": protocol, "endpoints": {"prod": {"ws": "wss://x"}},
            "auth": {"method": "none"}, "limits": {"markets_per_subscription": 1, "markets_per_connection": 1,
                                                   "connections": 1, "commands_per_second": 1},
            "channels": {"available": ["c"], "default": ["c"]},
            "message_types": {"m": {"channel": "c", "subject_type": "m", "ticker_field": "t"}},
        })

    assert market_states(feed("kalshi_v2")) is KALSHI_STATES
    assert market_states(feed("polymarket_clob")) is POLYMARKET_STATES
    assert market_states(feed("kraken_v2")) is KRAKEN_STATES
    with pytest.raises(ValueError, match="no market statuses"):
        market_states(feed("fix_4_4"))


def kraken(table: str, op: str = "insert", **row: Any) -> dict[str, Any]:
    return {"table": table, "op": op, "row": {"feed": "kraken", **row}}


def test_a_kraken_market_follows_only_its_own_market_types_rows() -> None:
    spot = SecmasterView("kraken", KRAKEN_STATES, market_type="spot")
    futures = SecmasterView("kraken", KRAKEN_STATES, market_type="futures")
    for view in (spot, futures):
        view.apply(kraken("series", ticker="BTC/USD", category="Spot"))
        view.apply(kraken("events", event_ticker="BTC/USD", series_ticker="BTC/USD"))
    pair = kraken("markets", ticker="BTC/USD", event_ticker="BTC/USD", market_type="spot", status="online")
    assert spot.apply(pair) == Decision("add", "BTC/USD", "Spot")
    assert futures.apply(pair) == Decision("none"), "a spot pair is not the futures process's"
    halted = kraken("markets", "update", ticker="BTC/USD", event_ticker="BTC/USD", market_type="spot",
                    status="cancel_only")
    assert spot.apply(halted) == Decision("none"), "cancel-only: neither added nor removed"
    delisted = kraken("markets", "update", ticker="BTC/USD", event_ticker="BTC/USD", market_type="spot",
                      status="delisted")
    assert spot.apply(delisted) == Decision("remove", "BTC/USD")
    assert futures.apply(delisted) == Decision("none")
    assert SecmasterView("kraken", KRAKEN_STATES).apply(pair).action == "add", "no market type: every row"
