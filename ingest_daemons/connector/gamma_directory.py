"""Polymarket's tradable token ids and their categories, from Gamma's open events (protocols §B3).

What ``ssmd connector --feed polymarket`` subscribes when no ``--markets`` are given. Categories come
from the event's tags through the feed's ``category_tags`` map, exactly as the secmaster sync maps
them (the same row code reads the listing), so a connector started before the first sync routes
every token to the same stream the secmaster will name. Each market's condition id is routed too:
``new_market`` and ``market_resolved`` are published under it.
"""

from __future__ import annotations

from collections.abc import Callable

from ingest_daemons.connector.directory import DiscoveredMarket, MarketCatalog
from ingest_daemons.logs import get_logger
from ingest_daemons.secmaster import polymarket_rows
from ingest_daemons.secmaster.rest import RestClient, RestOptions

log = get_logger("ssmd.directory")

PAGE_LIMIT = 100


async def discover_polymarket_catalog(
    rest_url: str, category_of: Callable[[list[str]], str | None], feed: str = "polymarket",
    options: RestOptions | None = None,
) -> MarketCatalog:
    """Every token of every active market of every open event, in listing order, with the event (series)
    categories and market (condition) → event links the CDC view needs."""
    found: list[DiscoveredMarket] = []
    series_category: dict[str, str | None] = {}
    event_series: dict[str, str] = {}
    async with RestClient(rest_url, options) as client:
        async for page in client.offset_pages("/events", {"closed": "false"}, PAGE_LIMIT):
            for item in page:
                series, events, tokens, _ = polymarket_rows.event_rows(feed, item, category_of)
                category = series["category"] if series is not None else None
                if series is not None:
                    series_category[str(series["ticker"])] = category
                for event in events:
                    event_series[str(event["event_ticker"])] = str(event["series_ticker"])
                for token in tokens:
                    if token["status"] == "active":
                        found.append(DiscoveredMarket(str(token["ticker"]), str(token["event_ticker"]), category))
    log.info("discovered tokens", feed=feed, rest=rest_url, tokens=len(found))
    return MarketCatalog(found, series_category, event_series)


async def discover_polymarket_tokens(
    rest_url: str, category_of: Callable[[list[str]], str | None], feed: str = "polymarket",
    options: RestOptions | None = None,
) -> list[DiscoveredMarket]:
    """Every token of every active market of every open event, in listing order."""
    return (await discover_polymarket_catalog(rest_url, category_of, feed, options)).markets
