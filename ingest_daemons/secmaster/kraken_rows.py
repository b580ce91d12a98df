"""Kraken REST listings (spot ``AssetPairs``, futures ``instruments``) → secmaster rows. Pure: no I/O.

Kraken's universe is flat — a symbol is all there is — but categories are chosen per symbol (the
feed's ``category_tags`` may name the symbol itself, its base asset or its market type, see
:mod:`ingest_daemons.connector.kraken_directory`), and the category lives on the ``series`` level
(docs/secmaster.md). So each symbol fills all three generic levels under its own key: a ``series``
row (with the category, and the tags it was chosen from), an ``events`` row linking to it, and a
``markets`` row, the unit a connector subscribes. The key is the socket's name for the symbol
(spot v2 ``BTC/USD``, futures ``PF_XBTUSD``), so CDC changes name exactly what a connector subscribes;
Kraken's REST key (``XXBTZUSD``) is kept in ``events.exchange_id``.

``markets.market_type`` is the Kraken market (``spot`` or ``futures``): a sync of one market touches
only its own rows. ``markets.status`` is the spot pair's REST ``status`` (``online``, ``cancel_only``,
``post_only``, ``limit_only``, ``reduce_only``, ``delisted``); a futures product is ``online`` while
``tradeable``, else ``halted``; a symbol its REST listing no longer has becomes :data:`DELISTED`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ingest_daemons.connector.kraken_directory import v2_symbol
from ingest_daemons.logs import get_logger

log = get_logger("ssmd.secmaster.kraken")

Row = dict[str, Any]
CategoryOf = Callable[[list[str]], str | None]

SPOT: Final = "spot"
FUTURES: Final = "futures"
ONLINE: Final = "online"
HALTED: Final = "halted"
DELISTED: Final = "delisted"
# What the CDC follower subscribes (online) and unsubscribes for good (delisted).
OPEN_STATUSES: Final = frozenset({ONLINE})
FINISHED_STATUSES: Final = frozenset({DELISTED})


@dataclass
class KrakenRows:
    """The rows of one listing, parents first; ``skipped`` counts entries no socket serves."""

    series: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    markets: list[Row] = field(default_factory=list)
    skipped: int = 0

    @property
    def symbols(self) -> set[str]:
        return {str(m["ticker"]) for m in self.markets}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _symbol_rows(
    out: KrakenRows, feed: str, market: str, symbol: str, base: str, status: str, title: str,
    exchange_id: str | None, category_of: CategoryOf,
) -> None:
    tags = [symbol, base, market] if base else [symbol, market]
    out.series.append({
        "feed": feed, "ticker": symbol, "title": title, "category": category_of(tags), "tags": tags,
        "frequency": None, "fee_type": None, "fee_multiplier": None, "settlement_sources": [],
        "contract_url": None, "slug": None,
    })  # fmt: skip
    out.events.append({
        "feed": feed, "event_ticker": symbol, "series_ticker": symbol, "title": title, "sub_title": None,
        "category": None, "collateral_return_type": None, "mutually_exclusive": None, "strike_date": None,
        "strike_period": None, "slug": None, "exchange_id": exchange_id, "neg_risk": None,
    })  # fmt: skip
    out.markets.append({
        "feed": feed, "ticker": symbol, "event_ticker": symbol, "market_type": market, "title": title,
        "status": status, "result": None, "close_time": None, "exchange_created_time": None,
        "outcome": None, "outcome_index": None,
    })  # fmt: skip


def spot_rows(feed: str, body: Any, category_of: CategoryOf) -> KrakenRows:
    """Rows of every pair of an ``AssetPairs`` answer that the v2 socket serves (it has a ``wsname``).

    Raises ValueError when the answer is not an ``AssetPairs`` listing at all.
    """
    if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
        raise ValueError("AssetPairs: no `result` object")
    out = KrakenRows()
    for key, pair in body["result"].items():
        wsname = _text(pair.get("wsname")) if isinstance(pair, dict) else None
        if wsname is None or "/" not in wsname:
            out.skipped += 1  # dark-pool pairs (".d") have no wsname: not on the socket
            continue
        symbol = v2_symbol(wsname)
        status = _text(pair.get("status")) or ONLINE
        _symbol_rows(out, feed, SPOT, symbol, symbol.split("/")[0], status, f"{symbol} spot", str(key), category_of)
    return out


def futures_rows(feed: str, body: Any, category_of: CategoryOf) -> KrakenRows:
    """Rows of every product of an ``instruments`` answer, keyed by the uppercase id the socket echoes.

    Raises ValueError when the answer is not an ``instruments`` listing at all.
    """
    if not isinstance(body, dict) or not isinstance(body.get("instruments"), list):
        raise ValueError("instruments: no `instruments` list")
    out = KrakenRows()
    for item in body["instruments"]:
        raw = _text(item.get("symbol")) if isinstance(item, dict) else None
        if raw is None:
            out.skipped += 1
            continue
        symbol = raw.upper()
        status = HALTED if item.get("tradeable") is False else ONLINE
        base = _text(item.get("base")) or ""
        kind = _text(item.get("type")) or FUTURES
        _symbol_rows(out, feed, FUTURES, symbol, base, status, f"{symbol} {kind}", raw, category_of)
    return out


def listing_rows(feed: str, market: str, body: Any, category_of: CategoryOf) -> KrakenRows:
    """Rows of one market's REST listing (``spot``: AssetPairs, ``futures``: instruments)."""
    if market == FUTURES:
        return futures_rows(feed, body, category_of)
    if market != SPOT:
        raise ValueError(f"Kraken has markets spot and futures, not {market!r}")
    return spot_rows(feed, body, category_of)
