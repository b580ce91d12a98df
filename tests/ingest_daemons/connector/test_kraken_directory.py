"""Kraken symbol discovery, pure: REST answers in, subscribable symbols and categories out."""

from __future__ import annotations

from ingest_daemons.config import Settings
from ingest_daemons.config.loader import load_exchanges
from ingest_daemons.connector.kraken_directory import futures_markets, spot_markets, v2_symbol
from ingest_daemons.sim.kraken.universe import asset_pairs_json, futures_instruments, instruments_json, spot_pairs


def category_of():  # type: ignore[no-untyped-def]
    return load_exchanges(Settings.from_env().exchanges_dir).feeds["kraken"].category_for_tags


def test_rest_wsnames_become_the_v2_socket_symbols() -> None:
    assert v2_symbol("XBT/USD") == "BTC/USD" and v2_symbol("XDG/XBT") == "DOGE/BTC"
    assert v2_symbol("ETH/USD") == "ETH/USD"
    body = asset_pairs_json(spot_pairs(6))
    body["result"]["XXBTZUSD.d"] = {"altname": "XBTUSD.d", "status": "online"}  # a dark-pool pair: no wsname
    body["result"]["SOLUSD"]["status"] = "cancel_only"
    found = spot_markets(body, category_of())
    assert [m.ticker for m in found] == ["BTC/USD", "ETH/USD", "XRP/USD", "DOGE/USD", "ETH/BTC"]
    assert {m.category for m in found} == {"Spot"}


def test_futures_products_are_tradeable_and_uppercase() -> None:
    body = instruments_json(futures_instruments(3))
    body["instruments"].append({"symbol": "in_xbtusd", "tradeable": False})
    body["instruments"].append({"symbol": "pf_solusd", "tradeable": True, "base": "SOL"})
    found = futures_markets(body, category_of())
    assert [m.ticker for m in found] == ["PF_XBTUSD", "PF_ETHUSD", "PI_XBTUSD", "PF_SOLUSD"]
    assert {m.category for m in found} == {"Futures"}


def test_a_configured_group_wins_over_the_market_type() -> None:
    groups = {"btc": "Majors", "PF_XBTUSD": "Majors", "spot": "Spot", "futures": "Futures"}

    def of(tags: list[str]) -> str | None:
        folded = {k.casefold(): v for k, v in groups.items()}
        return next((folded[t.casefold()] for t in tags if t.casefold() in folded), None)

    spot = {m.ticker: m.category for m in spot_markets(asset_pairs_json(spot_pairs(3)), of)}
    assert spot == {"BTC/USD": "Majors", "ETH/USD": "Spot", "XRP/USD": "Spot"}
    fut = {m.ticker: m.category for m in futures_markets(instruments_json(futures_instruments(3)), of)}
    assert fut == {"PF_XBTUSD": "Majors", "PF_ETHUSD": "Futures", "PI_XBTUSD": "Futures"}
