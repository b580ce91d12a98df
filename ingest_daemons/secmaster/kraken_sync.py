"""Secmaster sync from Kraken's REST listings: spot ``AssetPairs`` and futures ``instruments``.

The discovery path for Kraken (the exchange has no lifecycle channel): each run reads one market's
whole listing (one request; see :mod:`rest` for rate limits and retries), upserts its symbols (see
:mod:`kraken_rows`) and marks :data:`~kraken_rows.DELISTED` every symbol of that market the
secmaster still holds that the listing no longer has — all in one short transaction, so CDC
carries the listing's changes together and in commit order. Unchanged rows are not written (no
``updated_at`` move, no CDC). Nothing is deleted: a delisted symbol keeps its row, with its status.

An empty listing delists nothing: a REST answer that lists no symbol at all is far likelier a
glitch than the end of the exchange, and delisting the whole market would unsubscribe every book.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import AsyncConnection

from ingest_daemons.config.settings import ResolvedEnvironment
from ingest_daemons.logs import get_logger
from ingest_daemons.secmaster import kraken_rows
from ingest_daemons.secmaster.errors import RestError
from ingest_daemons.secmaster.kalshi_sync import SyncReport
from ingest_daemons.secmaster.migrate import migrate
from ingest_daemons.secmaster.postgres import safe_url
from ingest_daemons.secmaster.rest import RestClient, RestOptions
from ingest_daemons.secmaster.store import GENERIC_TABLES, UpsertCounts, upsert

log = get_logger("ssmd.secmaster.sync")

DEFAULT_FEED: Final = "kraken"
LISTING_PATHS: Final = {kraken_rows.SPOT: "AssetPairs", kraken_rows.FUTURES: "instruments"}

_DELIST_SQL: Final = """
    UPDATE markets SET status = %(delisted)s
    WHERE feed = %(feed)s AND market_type = %(market)s AND status <> %(delisted)s
      AND NOT (ticker = ANY(%(listed)s))
    RETURNING ticker
"""


@dataclass(frozen=True)
class KrakenSyncOptions:
    feed: str = DEFAULT_FEED
    rest: RestOptions = field(default_factory=RestOptions)
    apply_migrations: bool = True


async def _delist(conn: AsyncConnection[Any], feed: str, market: str, listed: set[str]) -> UpsertCounts:
    cursor = await conn.execute(_DELIST_SQL, {"delisted": kraken_rows.DELISTED, "feed": feed, "market": market,
                                              "listed": sorted(listed)})
    tickers = sorted(str(t) for (t,) in await cursor.fetchall())
    return UpsertCounts(updated=len(tickers), settled=len(tickers), settled_tickers=tickers)


async def _write(conn: AsyncConnection[Any], report: SyncReport, feed: str, market: str,
                 rows: kraken_rows.KrakenRows) -> list[str]:
    async with conn.transaction():
        for table, batch in (("series", rows.series), ("events", rows.events), ("markets", rows.markets)):
            counts = await upsert(conn, table, batch, GENERIC_TABLES[table], kraken_rows.FINISHED_STATUSES)
            report.counts(table).add(counts)
        if not rows.markets:
            log.warning("listing has no symbols; nothing delisted", feed=feed, market=market)
            return []
        delisted = await _delist(conn, feed, market, rows.symbols)
        report.counts("markets").add(delisted)
        return delisted.settled_tickers


async def sync_kraken(
    database_url: str,
    rest_urls: dict[str, str],
    category_of: Callable[[list[str]], str | None],
    options: KrakenSyncOptions | None = None,
) -> SyncReport:
    """Bring the secmaster up to date with each market's listing; raises RestError if a listing stays
    unusable (that market is then left as it was; markets synced before it keep their changes).

    ``rest_urls``: market (``spot``, ``futures``) → its REST base (``…/0/public``,
    ``…/derivatives/api/v3``). ``category_of`` is the feed config's ``category_for_tags``.
    """
    options = options or KrakenSyncOptions()
    unknown = sorted(set(rest_urls) - set(LISTING_PATHS))
    if unknown:
        raise ValueError(f"Kraken has markets {', '.join(LISTING_PATHS)}, not {unknown}")
    if options.apply_migrations:
        await asyncio.to_thread(migrate, database_url)
    report = SyncReport(options.feed)
    started = time.monotonic()
    feed = options.feed
    conn: AsyncConnection[Any] = await AsyncConnection.connect(database_url, autocommit=True, connect_timeout=10)
    try:
        for market, rest_url in rest_urls.items():
            path = LISTING_PATHS[market]
            async with RestClient(rest_url, options.rest) as client:
                body = await client.get_json(path)
                report.requests += client.requests
                report.retries += client.retries
            try:
                rows = kraken_rows.listing_rows(feed, market, body, category_of)
            except ValueError as exc:
                raise RestError(f"{rest_url}/{path}", str(exc), 200) from None
            report.skipped += rows.skipped
            delisted = await _write(conn, report, feed, market, rows)
            log.info("secmaster synced a Kraken market", feed=feed, market=market, rest=rest_url,
                     symbols=len(rows.markets), delisted=len(delisted), delisted_symbols=_head(delisted))
    finally:
        await conn.close()
    report.seconds = time.monotonic() - started
    log.info("secmaster sync done", feed=feed, database=safe_url(database_url), inserted=report.inserted,
             updated=report.updated, unchanged=report.unchanged, delisted=report.settled,
             requests=report.requests, retries=report.retries, seconds=round(report.seconds, 2))
    return report


def kraken_rest_urls(env: ResolvedEnvironment, market: str | None, rest_url: str | None) -> dict[str, str]:
    """Market → REST base of the Kraken markets to sync: the endpoint set's ``rest`` is spot's,
    ``markets.futures.rest`` futures'; ``rest_url`` replaces the one market named."""
    if rest_url is not None:
        if market is None:
            raise ValueError("--rest-url for Kraken needs --market spot|futures")
        return {market: rest_url}
    feed = env.feeds.get("kraken")
    if feed is None:
        raise ValueError(f"feed 'kraken' is not enabled in environment {env.name!r}; pass --market and --rest-url")
    urls: dict[str, str] = {}
    if feed.endpoint.rest:
        urls[kraken_rows.SPOT] = feed.endpoint.rest
    futures = feed.endpoint.markets.get(kraken_rows.FUTURES)
    if futures is not None and futures.rest:
        urls[kraken_rows.FUTURES] = futures.rest
    if market is not None:
        urls = {m: u for m, u in urls.items() if m == market}
    if not urls:
        raise ValueError(f"feed 'kraken' has no REST endpoint for {market or 'any market'} in environment "
                         f"{env.name!r}; pass --market and --rest-url")
    return urls


def _head(symbols: Sequence[str], n: int = 20) -> list[str]:
    return list(symbols[:n])
