"""Secmaster sync from Kalshi's public REST API: ``/series`` → ``/events`` → ``/markets``.

The periodic safety net behind the real-time lifecycle consumer (design.md, Secmaster and CDC):
it walks every page (cursor pagination, rate-limited, 429/5xx retried; see :mod:`rest`) and
upserts each page in its own short transaction. Unchanged rows are not written, so a sync that
finds nothing new leaves ``updated_at`` alone and emits no change data capture; the report counts
inserted, updated, unchanged and settled (status became ``finalized``) rows per table.

Nothing is deleted: a market missing from the listing is not gone (long-settled markets move to
``/historical/markets``, protocols.md A7).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from ingest_daemons.logs import get_logger
from ingest_daemons.secmaster import kalshi_rows
from ingest_daemons.secmaster.migrate import migrate
from ingest_daemons.secmaster.postgres import safe_url
from ingest_daemons.secmaster.rest import RestClient, RestOptions
from ingest_daemons.secmaster.store import UpsertCounts, upsert

log = get_logger("ssmd.secmaster.sync")

DEFAULT_FEED = "kalshi"
EVENTS_PAGE_LIMIT = 200  # the API's maximum for /events
MARKETS_PAGE_LIMIT = 1000  # the API's maximum for /markets


@dataclass(frozen=True)
class SyncOptions:
    feed: str = DEFAULT_FEED
    rest: RestOptions = field(default_factory=RestOptions)
    market_status: str | None = None  # a REST filter word (open, closed, settled, …); None = all listed
    apply_migrations: bool = True


@dataclass
class SyncReport:
    """Per-table counts of one sync, plus what it cost in requests."""

    feed: str
    tables: dict[str, UpsertCounts] = field(default_factory=dict)
    skipped: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0

    def counts(self, table: str) -> UpsertCounts:
        return self.tables.setdefault(table, UpsertCounts())

    @property
    def inserted(self) -> int:
        return sum(c.inserted for c in self.tables.values())

    @property
    def updated(self) -> int:
        return sum(c.updated for c in self.tables.values())

    @property
    def unchanged(self) -> int:
        return sum(c.unchanged for c in self.tables.values())

    @property
    def settled(self) -> int:
        return sum(c.settled for c in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "settled": self.settled,
            "skipped": self.skipped,
            "requests": self.requests,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "tables": {
                name: {"inserted": c.inserted, "updated": c.updated, "unchanged": c.unchanged, "settled": c.settled}
                for name, c in self.tables.items()
            },
        }


Mapper = Callable[[str, dict[str, Any]], dict[str, Any] | None]


def _plan(options: SyncOptions) -> list[tuple[str, str, str, dict[str, str], Mapper]]:
    """(table, path, response key, query, row mapper), parents first so a reader sees them first."""
    markets_query = {"limit": str(MARKETS_PAGE_LIMIT)}
    if options.market_status:
        markets_query["status"] = options.market_status
    return [
        ("series", "/series", "series", {}, kalshi_rows.series_row),
        ("events", "/events", "events", {"limit": str(EVENTS_PAGE_LIMIT)}, kalshi_rows.event_row),
        ("markets", "/markets", "markets", markets_query, kalshi_rows.market_row),
    ]


async def sync_kalshi(database_url: str, rest_url: str, options: SyncOptions | None = None) -> SyncReport:
    """Bring the secmaster up to date with the REST API; raises RestError if the API stays unusable.

    Pages written before a failure stay written (each page is its own transaction), so a re-run
    resumes cheaply: those rows count as unchanged.
    """
    options = options or SyncOptions()
    if options.apply_migrations:
        await asyncio.to_thread(migrate, database_url)
    report = SyncReport(options.feed)
    started = time.monotonic()
    async with RestClient(rest_url, options.rest) as client:
        conn = await AsyncConnection.connect(database_url, autocommit=True, connect_timeout=10)
        try:
            for table, path, key, query, mapper in _plan(options):
                async for page in client.pages(path, key, query):
                    rows = [row for row in (mapper(options.feed, item) for item in page) if row is not None]
                    report.skipped += len(page) - len(rows)
                    async with conn.transaction():
                        counts = await upsert(conn, table, rows)
                    report.counts(table).add(counts)
                total = report.counts(table)
                log.info("secmaster table synced", feed=options.feed, table=table, inserted=total.inserted,
                         updated=total.updated, unchanged=total.unchanged, settled=total.settled)
        finally:
            await conn.close()
        report.requests, report.retries = client.requests, client.retries
    report.seconds = time.monotonic() - started
    log.info("secmaster sync done", feed=options.feed, rest=rest_url, database=safe_url(database_url),
             inserted=report.inserted, updated=report.updated, unchanged=report.unchanged,
             settled=report.settled, requests=report.requests, retries=report.retries,
             seconds=round(report.seconds, 2))
    return report
