"""The secmaster's own rows as a :class:`~ingest_daemons.connector.directory.MarketCatalog`, for any venue.

What a connector that follows CDC starts from: the assigner's view and the all-markets category map are
seeded here and then kept current by ``{ENV}_SECMASTER_CDC``. Reading PostgreSQL rather than the
exchange's REST listing means the map knows every market the secmaster knows — also one the exchange's
listing does not show (yet) — and that the seed and the changes after it describe the same rows.

The caller subscribes to the CDC stream *before* calling :func:`load_catalog`: a change committed after
the snapshot is then delivered, and one committed before it is in the snapshot (or delivered too, and
applying it again leaves the same state, since changes arrive in commit order).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, IsolationLevel

from ingest_daemons.connector.directory import DiscoveredMarket, MarketCatalog
from ingest_daemons.connector.secmaster_view import MarketStates
from ingest_daemons.logs import get_logger
from ingest_daemons.secmaster.postgres import safe_url

log = get_logger("ssmd.secmaster_catalog")

DEFAULT_CONNECT_TIMEOUT_S = 10


async def load_catalog(database_url: str, feed: str, states: MarketStates,
                       market_type: str | None = None) -> MarketCatalog:
    """Series categories, event → series links and the open markets of ``feed``, read in one snapshot.

    ``market_type`` keeps only the markets of that type (Kraken: ``spot`` or ``futures``, one process each);
    series and events are read whole, they only name categories.
    """
    conn: AsyncConnection[Any] = await AsyncConnection.connect(database_url, connect_timeout=DEFAULT_CONNECT_TIMEOUT_S,
                                                               application_name="ssmd-connector-catalog")
    try:
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)  # the three reads see one snapshot
        async with conn.transaction():
            series = await (await conn.execute("SELECT ticker, category FROM series WHERE feed = %s",
                                               (feed,))).fetchall()
            events = await (await conn.execute("SELECT event_ticker, series_ticker FROM events WHERE feed = %s",
                                               (feed,))).fetchall()
            markets = await (await conn.execute(
                "SELECT ticker, event_ticker FROM markets WHERE feed = %s AND status = ANY(%s)"
                " AND (%s::text IS NULL OR market_type = %s) ORDER BY ticker",
                (feed, sorted(states.open), market_type, market_type))).fetchall()
    finally:
        await conn.close()
    series_category: dict[str, str | None] = {str(t): c for t, c in series}
    event_series = {str(e): str(s) for e, s in events}
    found = [DiscoveredMarket(str(t), str(e), series_category.get(event_series.get(str(e), ""))) for t, e in markets]
    log.info("catalog read from the secmaster", feed=feed, market_type=market_type, database=safe_url(database_url),
             markets=len(found), series=len(series_category), events=len(event_series))
    return MarketCatalog(found, series_category, event_series)
