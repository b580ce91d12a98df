"""Which tables each feed's archive partitions are converted into (the Parquet assets of a stream
exist exactly for the feeds named here; every stream of such a feed gets them from config)."""

from __future__ import annotations

from ingest_daemons.parquet.kraken import KRAKEN_TABLES
from ingest_daemons.parquet.polymarket import POLYMARKET_TABLES
from ingest_daemons.parquet.tables import KALSHI_TABLES, TableSpec

TABLES_BY_FEED: dict[str, tuple[TableSpec, ...]] = {
    "kalshi": KALSHI_TABLES,
    "polymarket": POLYMARKET_TABLES,
    "kraken": KRAKEN_TABLES,
}


def tables_for(feed: str) -> tuple[TableSpec, ...] | None:
    """The tables of a feed, or None when its messages have no typed schema yet."""
    return TABLES_BY_FEED.get(feed)
