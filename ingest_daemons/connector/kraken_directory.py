"""Kraken's tradable symbols and their categories, from REST (protocols §C1, §C2, §D8).

What ``ssmd connector --feed kraken`` subscribes when no ``--markets`` are given: spot pairs from
``AssetPairs`` (``online`` only), futures products from ``instruments`` (``tradeable`` only).

Spot REST keeps Kraken's legacy asset names (``wsname`` ``XBT/USD``) while the v2 socket says
``BTC/USD``, so each side of ``wsname`` is renamed to its v2 name before it is subscribed. A symbol's
category is the first of its tags — the symbol, its base asset, its market (``spot`` or
``futures``) — that the feed's ``category_tags`` maps, so the default config files every symbol under
its market type and a configured group (``BTC: Majors``) wins over it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ingest_daemons.connector.directory import DiscoveredMarket
from ingest_daemons.logs import get_logger
from ingest_daemons.secmaster.errors import RestError
from ingest_daemons.secmaster.rest import RestClient, RestOptions

log = get_logger("ssmd.directory")

# Legacy REST asset names whose v2 socket name differs (§D8).
V2_ASSET_NAMES: Final = {"XBT": "BTC", "XDG": "DOGE"}
SPOT_PATH: Final = "AssetPairs"
FUTURES_PATH: Final = "instruments"

CategoryOf = Callable[[list[str]], str | None]


def v2_symbol(wsname: str) -> str:
    """``XBT/USD`` → ``BTC/USD``: the v2 socket's name for a REST ``wsname``."""
    return "/".join(V2_ASSET_NAMES.get(part, part) for part in wsname.split("/"))


def spot_markets(body: Any, category_of: CategoryOf) -> list[DiscoveredMarket]:
    """The online pairs of an ``AssetPairs`` answer, in listing order."""
    if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
        raise ValueError("AssetPairs: no `result` object")
    found = []
    for pair in body["result"].values():
        if not isinstance(pair, dict) or not isinstance(pair.get("wsname"), str):
            continue  # dark-pool pairs (".d") have no wsname: not on the socket
        if pair.get("status", "online") != "online":
            continue
        symbol = v2_symbol(pair["wsname"])
        found.append(DiscoveredMarket(symbol, "", category_of([symbol, symbol.split("/")[0], "spot"])))
    return found


def futures_markets(body: Any, category_of: CategoryOf) -> list[DiscoveredMarket]:
    """The tradeable products of an ``instruments`` answer, in listing order."""
    if not isinstance(body, dict) or not isinstance(body.get("instruments"), list):
        raise ValueError("instruments: no `instruments` list")
    found = []
    for item in body["instruments"]:
        if not isinstance(item, dict) or not isinstance(item.get("symbol"), str) or item.get("tradeable") is False:
            continue
        symbol = item["symbol"].upper()  # the socket echoes product ids uppercase (§C2)
        base = item.get("base") if isinstance(item.get("base"), str) else ""
        found.append(DiscoveredMarket(symbol, "", category_of([symbol, str(base), "futures"])))
    return found


async def discover_kraken_markets(
    rest_url: str, market: str, category_of: CategoryOf, feed: str = "kraken", options: RestOptions | None = None,
) -> list[DiscoveredMarket]:
    """Every tradable symbol of one Kraken market (``spot`` or ``futures``) from its REST endpoint."""
    path = FUTURES_PATH if market == "futures" else SPOT_PATH
    async with RestClient(rest_url, options) as client:
        body = await client.get_json(path)
    try:
        found = futures_markets(body, category_of) if market == "futures" else spot_markets(body, category_of)
    except ValueError as exc:
        raise RestError(f"{rest_url}/{path}", str(exc), 200) from None
    log.info("discovered symbols", feed=feed, market=market, rest=rest_url, symbols=len(found))
    return found
