"""Which venue module speaks a feed's protocol (``protocol:`` in ``exchanges/feeds/{feed}.yaml``).

The one place the connector learns about venues: it asks for a factory here and hands it to the
venue-neutral engine. A new venue adds its branch here (and, to follow the secmaster's CDC stream, its
market statuses in :func:`market_states`) and nothing else in the connector changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ingest_daemons.adapters.kalshi import KalshiAdapter
from ingest_daemons.adapters.kalshi_auth import KalshiCredentials
from ingest_daemons.adapters.kalshi_venue import KalshiVenue
from ingest_daemons.adapters.kraken_book import DEFAULT_DEPTH
from ingest_daemons.adapters.kraken_futures_venue import KrakenFuturesVenue
from ingest_daemons.adapters.kraken_venue import FUTURES, MARKETS, SPOT, KrakenSpotVenue
from ingest_daemons.adapters.polymarket import MAX_ASSETS_PER_CONNECTION
from ingest_daemons.adapters.polymarket_venue import PolymarketVenue
from ingest_daemons.config.models import FeedConfig
from ingest_daemons.connector.secmaster_view import KALSHI_STATES, POLYMARKET_STATES, MarketStates
from ingest_daemons.connector.venue import VenueProtocol
from ingest_daemons.secmaster import kraken_rows

# Kraken pairs and products (secmaster/kraken_rows.py): `online` ones trade, `delisted` ones are gone from REST;
# a pair in `cancel_only` or a halted product is neither added nor removed.
KRAKEN_STATES = MarketStates(open=kraken_rows.OPEN_STATUSES, finished=kraken_rows.FINISHED_STATUSES)

# One venue object per connection, for the channels that connection serves.
VenueFactory = Callable[[Sequence[str]], VenueProtocol]


def venue_factory(feed: FeedConfig, credentials: KalshiCredentials | None = None,
                  market: str | None = None) -> VenueFactory:
    """``market``: which of the feed's markets the connection serves (Kraken: ``spot``, the default, or
    ``futures``); feeds with one market take none."""
    if feed.protocol == "kraken_v2":
        return _kraken(feed, market or SPOT)
    if market is not None:
        raise ValueError(f"feed {feed.name} has one market; --market applies to Kraken ({', '.join(MARKETS)})")
    if feed.protocol == "kalshi_v2":
        adapter = KalshiAdapter(feed.message_types)  # route tables built once, shared by every connection
        size = feed.limits.markets_per_subscription

        def kalshi(channels: Sequence[str]) -> VenueProtocol:
            return KalshiVenue(adapter, channels, credentials, size)

        return kalshi
    if feed.protocol == "polymarket_clob":
        types = feed.message_types
        per_command = feed.limits.markets_per_subscription
        per_socket = min(feed.limits.markets_per_connection, MAX_ASSETS_PER_CONNECTION)

        def polymarket(channels: Sequence[str]) -> VenueProtocol:
            return PolymarketVenue(types, per_command, per_socket, feed.name, feed.lifecycle_types)

        return polymarket
    raise ValueError(f"feed {feed.name}: no venue module speaks protocol {feed.protocol!r}")


def _kraken(feed: FeedConfig, market: str) -> VenueFactory:
    types = feed.message_types
    per_command = feed.limits.markets_per_subscription
    if market == FUTURES:

        def futures(channels: Sequence[str]) -> VenueProtocol:
            return KrakenFuturesVenue(channels, types, per_command, feed.name)

        return futures
    if market != SPOT:
        raise ValueError(f"feed {feed.name} has markets {', '.join(MARKETS)}, not {market!r}")
    depth = feed.book_depth or DEFAULT_DEPTH

    def spot(channels: Sequence[str]) -> VenueProtocol:
        return KrakenSpotVenue(channels, types, depth, per_command, feed.name)

    return spot


def all_markets_venue_factory(feed: FeedConfig, credentials: KalshiCredentials | None = None) -> VenueFactory:
    """Venues that subscribe every channel they are given once, with no market list: the exchange then
    sends every market, new ones included (``ssmd connector --all-markets``)."""
    if feed.protocol == "kalshi_v2":
        adapter = KalshiAdapter(feed.message_types)
        size = feed.limits.markets_per_subscription

        def kalshi(channels: Sequence[str]) -> VenueProtocol:
            return KalshiVenue(adapter, channels, credentials, size, all_markets=True)

        return kalshi
    raise ValueError(f"feed {feed.name}: protocol {feed.protocol!r} has no all-markets subscription")


def market_states(feed: FeedConfig) -> MarketStates:
    """The feed's market statuses in the secmaster: which ones the CDC follower subscribes and unsubscribes."""
    if feed.protocol == "kalshi_v2":
        return KALSHI_STATES
    if feed.protocol == "polymarket_clob":
        return POLYMARKET_STATES
    if feed.protocol == "kraken_v2":
        return KRAKEN_STATES
    raise ValueError(f"feed {feed.name}: no market statuses known for protocol {feed.protocol!r}")
