"""Which markets a connector serves and which category (stream) each one's messages go to.

Until the secmaster exists, categories come from the exchange's REST API (series carry the
category; events link markets to series) or are unknown. An unknown category routes to the
``uncategorized`` stream: a message is never dropped for lack of a category.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ingest_daemons.backoff import Backoff
from ingest_daemons.logs import get_logger
from ingest_daemons.naming import UNCATEGORIZED, slug

log = get_logger("ssmd.directory")

DEFAULT_REST_TIMEOUT_S = 10.0
# The category of a market whose category the environment excludes: its frames are counted, never published.
EXCLUDED = ""
DEFAULT_REST_ATTEMPTS = 6


@dataclass
class MarketDirectory:
    """ticker → category slug, for markets and events; lookups are dictionary gets on the hot path.

    ``stream_categories`` are the slugs that have a stream in this environment; a category without
    one (e.g. a market named explicitly whose category the environment does not capture) routes to
    ``uncategorized`` so its messages still land in a stream.
    """

    categories: dict[str, str] = field(default_factory=dict)
    stream_categories: set[str] | None = None
    fallback: str = UNCATEGORIZED  # where unknown tickers, unparsed frames and connection markers go
    excluded: dict[str, str] = field(default_factory=dict)  # ticker -> category slug, for markets mapped to EXCLUDED

    def category_of(self, ticker: str | None) -> str:
        if ticker is None:
            return self.fallback
        return self.categories.get(ticker, self.fallback)

    def assign(self, ticker: str, category: str | None) -> None:
        self.categories[ticker] = self.slug_for(category)
        self.excluded.pop(ticker, None)

    def exclude(self, ticker: str, category: str) -> None:
        """``ticker``'s category is one the environment does not capture: category_of gives EXCLUDED."""
        self.categories[ticker] = EXCLUDED
        self.excluded[ticker] = slug(category)

    def excluded_category(self, ticker: str | None) -> str:
        return self.excluded.get(ticker or "", self.fallback)

    def slug_for(self, category: str | None) -> str:
        """The stream category token ``category`` routes to here (fallback when it has no stream)."""
        value = slug(category) if category else self.fallback
        if self.stream_categories is not None and value not in self.stream_categories:
            return self.fallback
        return value

    def assign_slug(self, ticker: str, category_slug: str | None) -> None:
        """Route ``ticker`` to an already-slugged category (as stored in the shard registry)."""
        self.categories[ticker] = self.slug_for(category_slug)

    def category_slugs(self, tickers: Iterable[str]) -> set[str]:
        return {self.category_of(t) for t in tickers}


@dataclass(frozen=True)
class DiscoveredMarket:
    ticker: str
    event_ticker: str
    category: str | None


async def _get_json(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> Any:
    """GET with retry on 429/5xx and connection errors (capped, jittered backoff)."""
    backoff = Backoff(initial_s=0.2, max_s=5.0)
    for attempt in range(1, DEFAULT_REST_ATTEMPTS + 1):
        try:
            async with session.get(url, params=params) as resp:
                if resp.status == 200:
                    return await resp.json()
                retryable = resp.status == 429 or resp.status >= 500
                detail = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            retryable, detail = True, type(exc).__name__
        if not retryable or attempt == DEFAULT_REST_ATTEMPTS:
            raise RuntimeError(f"GET {url} failed: {detail}")
        delay = backoff.next_delay()
        log.warning("REST request failed; retrying", url=url, detail=detail, retry_in_s=round(delay, 2))
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def _paged(session: aiohttp.ClientSession, url: str, key: str, params: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await _get_json(session, url, {**params, **({"cursor": cursor} if cursor else {})})
        items.extend(page.get(key) or [])
        cursor = page.get("cursor") or ""
        if not cursor:
            return items


@dataclass(frozen=True)
class MarketCatalog:
    """Open markets with their categories, and the series/event links behind them, on the secmaster's three
    levels (any venue: docs/secmaster.md). From the secmaster itself (:mod:`secmaster_catalog`), else from
    the exchange's REST API (:func:`discover_kalshi_catalog`, Polymarket's Gamma directory)."""

    markets: list[DiscoveredMarket]
    series_category: dict[str, str | None]
    event_series: dict[str, str]


async def discover_kalshi_catalog(rest_url: str, status: str = "open") -> MarketCatalog:
    """Open markets with their series' category, from ``/series``, ``/events`` and ``/markets``."""
    base = rest_url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=DEFAULT_REST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        series = await _paged(session, f"{base}/series", "series", {})
        events = await _paged(session, f"{base}/events", "events", {"limit": "200"})
        markets = await _paged(session, f"{base}/markets", "markets", {"limit": "1000", "status": status})
    category_of_series = {s["ticker"]: s.get("category") for s in series if isinstance(s.get("ticker"), str)}
    series_of_event = {e["event_ticker"]: e.get("series_ticker") or "" for e in events if e.get("event_ticker")}
    found = []
    for market in markets:
        event = market.get("event_ticker") or ""
        found.append(
            DiscoveredMarket(market["ticker"], event, category_of_series.get(series_of_event.get(event) or ""))
        )
    log.info("discovered markets", rest=base, markets=len(found), series=len(series), events=len(events))
    return MarketCatalog(found, category_of_series, series_of_event)


async def discover_kalshi_markets(rest_url: str, status: str = "open") -> list[DiscoveredMarket]:
    return (await discover_kalshi_catalog(rest_url, status)).markets


def build_directory(stream_categories: Iterable[str], discovered: Iterable[DiscoveredMarket]) -> MarketDirectory:
    """A directory for an environment's stream categories, filled from discovered markets and events."""
    directory = MarketDirectory(stream_categories={slug(c) for c in stream_categories})
    for market in discovered:
        directory.assign(market.ticker, market.category)
        if market.event_ticker:
            directory.assign(market.event_ticker, market.category)
    return directory
