"""Secmaster sync from Polymarket's Gamma REST: open events with their markets, then re-checks.

The safety net behind the real-time ``new_market`` / ``market_resolved`` messages. Pass 1 walks
``/events?closed=false`` (offset pagination, rate-limited, 429/5xx retried; see :mod:`rest`) and
upserts each page — events as ``series``, markets as ``events``, tokens as ``markets`` (see
:mod:`polymarket_rows`) — in one short transaction, parents first. Listing every closed event
would mean the venue's whole history on every run, so pass 2 instead re-reads, by id through
``/markets?id=…``, each market the secmaster still holds open that pass 1 no longer listed: that
is how a market that closed since the last run becomes ``closed`` here.

Unchanged rows are not written (no ``updated_at`` move, no CDC). Nothing is deleted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from ingest_daemons.logs import get_logger
from ingest_daemons.secmaster import polymarket_rows
from ingest_daemons.secmaster.kalshi_sync import SyncReport
from ingest_daemons.secmaster.migrate import migrate
from ingest_daemons.secmaster.postgres import safe_url
from ingest_daemons.secmaster.rest import RestClient, RestOptions
from ingest_daemons.secmaster.store import POLYMARKET_SETTLED_STATUSES, POLYMARKET_TABLES, upsert

log = get_logger("ssmd.secmaster.sync")

DEFAULT_FEED = "polymarket"
PAGE_LIMIT = 100  # Gamma's usual page (protocols §B3)
RECHECK_BATCH = 50  # market ids per /markets?id=… request


@dataclass(frozen=True)
class PolymarketSyncOptions:
    feed: str = DEFAULT_FEED
    rest: RestOptions = field(default_factory=RestOptions)
    apply_migrations: bool = True
    page_limit: int = PAGE_LIMIT


async def _write(
    conn: AsyncConnection[Any], report: SyncReport, series: list[dict[str, Any]],
    events: list[dict[str, Any]], tokens: list[dict[str, Any]],
) -> None:
    async with conn.transaction():
        for table, rows in (("series", series), ("events", events), ("markets", tokens)):
            counts = await upsert(conn, table, rows, POLYMARKET_TABLES[table], POLYMARKET_SETTLED_STATUSES)
            report.counts(table).add(counts)


async def _open_in_secmaster(conn: AsyncConnection[Any], feed: str) -> dict[str, tuple[str, str]]:
    """condition id → (Gamma market id, Gamma event id) of every market with a token still open."""
    cursor = await conn.execute(
        """
        SELECT DISTINCT e.event_ticker, e.exchange_id, e.series_ticker
        FROM events e JOIN markets m ON m.feed = e.feed AND m.event_ticker = e.event_ticker
        WHERE e.feed = %s AND m.status <> 'closed' AND e.exchange_id IS NOT NULL
        """,
        (feed,),
    )
    return {str(c): (str(mid), str(eid)) for c, mid, eid in await cursor.fetchall()}


async def sync_polymarket(
    database_url: str,
    rest_url: str,
    category_of: Callable[[list[str]], str | None],
    options: PolymarketSyncOptions | None = None,
) -> SyncReport:
    """Bring the secmaster up to date with Gamma; raises RestError if the API stays unusable.

    ``category_of`` maps an event's tags to a category (the feed config's ``category_for_tags``).
    """
    options = options or PolymarketSyncOptions()
    if options.apply_migrations:
        await asyncio.to_thread(migrate, database_url)
    report = SyncReport(options.feed)
    started = time.monotonic()
    feed = options.feed
    async with RestClient(rest_url, options.rest) as client:
        conn: AsyncConnection[Any] = await AsyncConnection.connect(database_url, autocommit=True,
                                                                      connect_timeout=10)
        try:
            listed: set[str] = set()
            async for page in client.offset_pages("/events", {"closed": "false"}, options.page_limit):
                series, events, tokens = [], [], []
                for item in page:
                    s, e, t, skipped = polymarket_rows.event_rows(feed, item, category_of)
                    report.skipped += skipped + (s is None)
                    if s is None:
                        continue
                    series.append(s)
                    events += e
                    tokens += t
                listed.update(str(e["event_ticker"]) for e in events)
                await _write(conn, report, series, events, tokens)

            stale = {c: ids for c, ids in (await _open_in_secmaster(conn, feed)).items() if c not in listed}
            by_market_id = {mid: eid for mid, eid in stale.values()}
            ids = sorted(by_market_id)
            for i in range(0, len(ids), RECHECK_BATCH):
                batch = ids[i : i + RECHECK_BATCH]
                page = await client.get_json("/markets", [("id", x) for x in batch] + [("limit", str(len(batch)))])
                events, tokens = [], []
                for item in page if isinstance(page, list) else []:
                    if not isinstance(item, dict):
                        continue
                    mapped = polymarket_rows.market_rows(feed, item, by_market_id.get(str(item.get("id"))))
                    if mapped is None:
                        report.skipped += 1
                        continue
                    events.append(mapped[0])
                    tokens += mapped[1]
                await _write(conn, report, [], events, tokens)
            log.info("secmaster rechecked unlisted markets", feed=feed, markets=len(ids))
        finally:
            await conn.close()
        report.requests, report.retries = client.requests, client.retries
    report.seconds = time.monotonic() - started
    log.info("secmaster sync done", feed=feed, rest=rest_url, database=safe_url(database_url),
             inserted=report.inserted, updated=report.updated, unchanged=report.unchanged,
             settled=report.settled, requests=report.requests, retries=report.retries,
             seconds=round(report.seconds, 2))
    return report
