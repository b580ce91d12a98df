"""``ssmd connector``: run one shard of a feed's connector until SIGTERM."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from ingest_daemons.adapters.kalshi_auth import KalshiCredentials, load_credentials
from ingest_daemons.adapters.kraken_book import DEPTHS
from ingest_daemons.adapters.kraken_venue import MARKETS as KRAKEN_MARKETS
from ingest_daemons.adapters.kraken_venue import SPOT
from ingest_daemons.adapters.venues import all_markets_venue_factory, market_states, venue_factory
from ingest_daemons.cli.common import (
    add_command,
    add_env_arg,
    add_exchanges_arg,
    add_metrics_host_arg,
    resolve_or_report,
    run_daemon,
)
from ingest_daemons.config.settings import ResolvedEnvironment, ResolvedFeed
from ingest_daemons.connector.directory import (
    DiscoveredMarket,
    MarketCatalog,
    MarketDirectory,
    build_directory,
    discover_kalshi_catalog,
)
from ingest_daemons.connector.gamma_directory import discover_polymarket_catalog
from ingest_daemons.connector.kraken_directory import discover_kraken_markets
from ingest_daemons.connector.runner import Connector, ConnectorOptions, shard_markets
from ingest_daemons.connector.secmaster_catalog import load_catalog
from ingest_daemons.errors import AuthError
from ingest_daemons.logs import get_logger
from ingest_daemons.publisher import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_BYTES
from ingest_daemons.secmaster.errors import RestError
from ingest_daemons.secmaster.postgres import running_secmaster_url

log = get_logger("ssmd.connector")

DEFAULT_IDLE_TIMEOUT_S = 30.0
# Kraken spot sends a heartbeat every second (§C1) and its app-level pings are answered even when the
# heartbeats stop: a watchdog shorter than the ping interval is what notices missing heartbeats.
KRAKEN_SPOT_IDLE_S = 10.0


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "connector",
        help="run a feed connector shard: exchange WebSocket -> JetStream",
        description=(
            "Connect to the feed's WebSocket with fresh auth headers, subscribe the shard's markets in\n"
            "paced batches and publish every frame byte-for-byte to JetStream on\n"
            "{env}.{feed}.{category}.json.{type}.{ticker}, each with an acknowledgement (retried with the\n"
            "same Nats-Msg-Id, so never duplicated). Sequence gaps, reconnects and terminal errors are\n"
            "published as marker messages; unreadable frames as type `unparsed`. SIGTERM unsubscribes,\n"
            "drains every unacknowledged frame and exits 0.\n\n"
            "Markets: --markets, else every open market from the feed's REST API that passes the\n"
            "environment's category filter, sliced by --shard. Categories come from the REST API\n"
            "(series); a market whose category is unknown goes to the `uncategorized` stream.\n"
            "Credentials: KALSHI_API_KEY and KALSHI_PRIVATE_KEY_PATH (PKCS#1 or PKCS#8 PEM).\n\n"
            "Polymarket: markets are token ids (--markets, else every token of Gamma's open events),\n"
            "categories from the events' tags through the feed's category_tags; no credentials.\n\n"
            "Kraken: one process per market (--market spot|futures, default spot): spot v2 symbols\n"
            "(BTC/USD) from REST AssetPairs, books at the feed's book_depth, checksum-verified on every\n"
            "frame; futures product ids (PF_XBTUSD) from REST instruments. Categories through the feed's\n"
            "category_tags (default: the market type, spot or futures); no credentials. With --follow-cdc\n"
            "each market's process takes that market's symbols from the secmaster instead (kept by\n"
            "`ssmd secmaster sync --feed kraken`): a newly listed symbol is subscribed on the open socket,\n"
            "a delisted one unsubscribed.\n\n"
            "--follow-cdc and --all-markets seed their market categories from the secmaster (--database-url,\n"
            "$SSMD_READONLY_DATABASE_URL, $DATABASE_URL, else a running local one; read-only) and keep them\n"
            "current from its CDC stream."
        ),
        examples=(
            "  ssmd connector --env dev --feed kalshi\n"
            "  ssmd connector --env prod --feed kalshi --shard 2 --metrics-port 9464\n"
            "  ssmd connector --env prod --feed kalshi --lifecycle --metrics-port 9466\n"
            "  ssmd connector --env dev --feed polymarket\n"
            "  ssmd connector --env dev --feed kraken --market futures --metrics-port 9471\n"
            "  ssmd connector --env dev --feed polymarket --shard 1 --follow-cdc\n"
            "  ssmd connector --env dev --feed kraken --market spot --follow-cdc\n"
            "  ssmd connector --env prod --feed kalshi --all-markets --metrics-port 9468\n"
            "  ssmd connector --env dev --feed kalshi --ws-url ws://127.0.0.1:8765/trade-api/ws/v2 \\\n"
            "      --markets KXBTCD-26FEB1217-T72749.99,FED-23DEC-T3.00\n"
        ),
    )
    add_env_arg(parser)
    add_exchanges_arg(parser)
    parser.add_argument("--feed", default="kalshi", choices=["kalshi", "polymarket", "kraken"],
                        help="feed to run (default: kalshi)")
    parser.add_argument("--market", default=None, choices=list(KRAKEN_MARKETS),
                        help="Kraken: which market's socket to run (default: spot)")
    parser.add_argument("--book-depth", type=int, default=None, choices=list(DEPTHS),
                        help="Kraken spot: book depth to subscribe and verify (default: the feed's book_depth, 25)")
    parser.add_argument("--shard", type=int, default=0, help="shard index (default: 0)")
    parser.add_argument("--ws-url", default=None, help="override the feed's WebSocket endpoint")
    parser.add_argument("--rest-url", default=None, help="override the feed's REST endpoint (market discovery)")
    parser.add_argument("--markets", default=None, help="comma-separated market tickers (default: discover via REST)")
    parser.add_argument("--nats-url", default=None, help="override $NATS_URL and the environment's nats_url")
    parser.add_argument("--metrics-port", type=int, default=9464,
                        help="port for /metrics /healthz /readyz, 0 = any free port (default: 9464)")
    add_metrics_host_arg(parser)
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="reconnect when no frame or ping arrives for this many seconds (default: 30; "
                             f"Kraken spot {KRAKEN_SPOT_IDLE_S:g}, its heartbeats come every second)")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT,
                        help=f"frames held unacknowledged before reading pauses (default: {DEFAULT_MAX_IN_FLIGHT})")
    parser.add_argument("--max-in-flight-bytes", type=int, default=DEFAULT_MAX_IN_FLIGHT_BYTES,
                        help="bytes held unacknowledged before reading pauses, whichever bound comes first "
                             f"(default: {DEFAULT_MAX_IN_FLIGHT_BYTES}; at least twice the server's max_payload)")
    parser.add_argument("--follow-cdc", action="store_true",
                        help="take this shard's markets from the NATS KV shard registry and follow the secmaster's "
                             "CDC stream: new open markets that pass the category filter are added live, "
                             "finished ones removed (needs `ssmd cdc` running)")
    parser.add_argument("--lifecycle", action="store_true",
                        help="run the feed's lifecycle channel (all markets, unsharded) into the "
                             "{ENV}_{FEED}_LIFECYCLE stream instead of market data")
    parser.add_argument("--all-markets", action="store_true",
                        help="run the feed's all-market channels (channels.scope `all`: Kalshi ticker, trade) "
                             "once, unsharded, with no market list: every market, new ones included; categories "
                             "from the secmaster's CDC stream (needs `ssmd cdc`), unknown markets to uncategorized")
    parser.add_argument("--lease-ttl", type=float, default=10.0,
                        help="with --all-markets: replicas share a NATS KV lease with this TTL in seconds; the "
                             "holder publishes, the others stand by and take over when it stops (0 = no lease; "
                             "default: 10)")
    parser.add_argument("--database-url", default=None,
                        help="the secmaster, read at start by --follow-cdc and --all-markets to seed market "
                             "categories (default: $SSMD_READONLY_DATABASE_URL, else $DATABASE_URL, else the local "
                             "embedded one if it runs; without "
                             "any, the exchange's REST catalog)")
    parser.add_argument("--no-auth", action="store_true",
                        help="connect without Kalshi auth headers (only for a simulator run with --no-auth)")
    parser.set_defaults(func=run)


async def _markets_and_directory(
    args: argparse.Namespace, feed: ResolvedFeed, rest_url: str | None
) -> tuple[list[str], MarketDirectory, MarketCatalog | None]:
    explicit = [t.strip() for t in (args.markets or "").split(",") if t.strip()]
    catalog = None
    if feed.feed.protocol == "polymarket_clob":
        return await _polymarket_markets(explicit, feed, rest_url)
    if feed.feed.protocol == "kraken_v2":
        return await _kraken_markets(explicit, feed, rest_url, args.market or SPOT)
    if rest_url:
        try:
            catalog = await discover_kalshi_catalog(rest_url)
        except RuntimeError as exc:
            if not explicit:
                raise
            log.warning("market discovery failed; categories unknown, markets go to uncategorized", error=str(exc))
    discovered = catalog.markets if catalog is not None else []
    directory = build_directory(feed.stream_categories(), discovered)
    if explicit:
        return explicit, directory, catalog
    return [m.ticker for m in discovered if feed.settings.category_passes(m.category)], directory, catalog


async def _polymarket_markets(
    explicit: list[str], feed: ResolvedFeed, rest_url: str | None
) -> tuple[list[str], MarketDirectory, MarketCatalog | None]:
    discovered: list[DiscoveredMarket] = []
    catalog = None
    if rest_url:
        try:
            catalog = await discover_polymarket_catalog(rest_url, feed.feed.category_for_tags, feed.name)
            discovered = catalog.markets
        except RestError as exc:
            if not explicit:
                raise RuntimeError(str(exc)) from None
            log.warning("token discovery failed; categories unknown, tokens go to uncategorized", feed=feed.name,
                        error=str(exc))
    directory = build_directory(feed.stream_categories(), discovered)
    if explicit:
        return explicit, directory, catalog
    return [m.ticker for m in discovered if feed.settings.category_passes(m.category)], directory, catalog


async def _kraken_markets(
    explicit: list[str], feed: ResolvedFeed, rest_url: str | None, market: str
) -> tuple[list[str], MarketDirectory, MarketCatalog | None]:
    discovered: list[DiscoveredMarket] = []
    if rest_url:
        try:
            discovered = await discover_kraken_markets(rest_url, market, feed.feed.category_for_tags, feed.name)
        except RestError as exc:
            if not explicit:
                raise RuntimeError(str(exc)) from None
            log.warning("symbol discovery failed; categories unknown, symbols go to uncategorized", feed=feed.name,
                        market=market, error=str(exc))
    directory = build_directory(feed.stream_categories(), discovered)
    if explicit:
        return explicit, directory, None
    return [m.ticker for m in discovered if feed.settings.category_passes(m.category)], directory, None


def market_endpoint(feed: ResolvedFeed, market: str | None) -> tuple[str, str | None]:
    """(ws, rest) of one market of the feed: the endpoint set's own for the main market, else ``markets.NAME``."""
    if market is None or market == SPOT or market not in feed.endpoint.markets:
        if market not in (None, SPOT):
            raise ValueError(f"feed {feed.name} has no endpoint for market {market!r} in this environment")
        return feed.endpoint.ws, feed.endpoint.rest
    other = feed.endpoint.markets[market]
    return other.ws, other.rest


async def _run(args: argparse.Namespace) -> int:
    env = resolve_or_report(args)
    if env is None:
        return 1
    feed = env.feeds.get(args.feed)
    if feed is None:
        print(f"feed {args.feed!r} is not enabled in environment {env.name!r}")
        return 1
    if args.market is not None and feed.feed.protocol != "kraken_v2":
        print(f"--market applies to Kraken, not feed {feed.name!r}")
        return 1
    try:
        ws_url, market_rest = market_endpoint(feed, args.market)
    except ValueError as exc:
        print(f"cannot start: {exc}")
        return 1
    kraken_spot = feed.feed.protocol == "kraken_v2" and (args.market or SPOT) == SPOT
    idle = args.idle_timeout or (KRAKEN_SPOT_IDLE_S if kraken_spot else DEFAULT_IDLE_TIMEOUT_S)
    try:
        market_states(feed.feed)
    except ValueError:
        if args.follow_cdc or args.all_markets:
            print(f"feed {feed.name!r} cannot follow the secmaster's CDC stream: its venue names no market statuses")
            return 1
    try:
        credentials = None if args.no_auth or feed.feed.auth.method == "none" else load_credentials()
    except AuthError as exc:
        print(f"cannot start: {exc}")
        return 1
    if args.lifecycle and args.all_markets:
        print("--lifecycle and --all-markets are separate connectors; pick one")
        return 1
    # A feed run as one process per market (Kraken) follows only its own market's secmaster rows.
    market_type = (args.market or SPOT) if feed.feed.protocol == "kraken_v2" else None
    following = args.follow_cdc and not args.all_markets and not args.lifecycle
    loader = _secmaster_loader(env, feed, args, market_type) if following else None
    options = ConnectorOptions(
        shard=args.shard, ws_url=args.ws_url or ws_url, nats_url=args.nats_url, idle_timeout_s=idle,
        max_in_flight=args.max_in_flight, max_in_flight_bytes=args.max_in_flight_bytes,
        metrics_host=args.metrics_host, metrics_port=args.metrics_port,
        lifecycle=args.lifecycle, use_registry=args.follow_cdc and not args.all_markets,
        follow_cdc=args.follow_cdc or args.all_markets, all_markets=args.all_markets,
        lease_ttl_s=args.lease_ttl if args.all_markets and args.lease_ttl > 0 else None,
        market=market_type,
        # Kraken has no lifecycle channel: its REST sync into the secmaster is the discovery path, so the
        # secmaster's rows, not a REST listing read at start, are the symbols to subscribe.
        markets_from_secmaster=market_type is not None and loader is not None and not args.markets,
    )
    if args.all_markets:
        return await _run_all_markets(env, feed, args, credentials, options)
    feed_config = feed.feed
    if args.book_depth is not None:
        feed_config = feed_config.model_copy(update={"book_depth": args.book_depth})
    venues = venue_factory(feed_config, credentials, args.market)
    if args.lifecycle:
        if feed.feed.lifecycle_channel is None:
            print(f"feed {feed.name!r} has no lifecycle_channel")
            return 1
        return await Connector(env, feed, [], MarketDirectory(), venues, options).run_until_signalled()
    rest_url = args.rest_url or market_rest
    # Health first: REST discovery can take minutes, and the probes should see a live process that
    # reports "discovering markets" rather than a closed port.
    connector = Connector(env, feed, [], MarketDirectory(), venues, options)
    connector.catalog_loader = loader
    if options.markets_from_secmaster:
        # The assigner reads them once its CDC consumer exists; the registry already holds a restart's set.
        connector.use_markets([], build_directory(feed.stream_categories(), []), None)
        log.info("symbols come from the secmaster and its CDC stream", env=env.name, feed=feed.name,
                 market=market_type, shard=args.shard)
        return await connector.run_until_signalled()
    connector.starting = "discovering markets"
    await connector.serve_health()
    try:
        markets, directory, catalog = await _markets_and_directory(args, feed, rest_url)
    except RuntimeError as exc:
        print(f"cannot find markets to subscribe: {exc}")
        if connector.health is not None:
            await connector.health.stop()
        return 1
    # With the registry, every passing market is a candidate and the KV registry decides the shard.
    mine = markets if args.follow_cdc else shard_markets(markets, args.shard, feed.settings.shard_size)
    connector.use_markets(mine, directory, catalog)
    return await connector.run_until_signalled()


def _secmaster_loader(env: ResolvedEnvironment, feed: ResolvedFeed, args: argparse.Namespace,
                      market_type: str | None = None) -> Callable[[], Awaitable[MarketCatalog]] | None:
    """Reads the secmaster's rows (of ``market_type`` only, when given) for the CDC view, when a secmaster
    database is reachable."""
    url = running_secmaster_url(env.settings, args.database_url)
    if url is None:
        log.warning("no secmaster database (--database-url, $SSMD_READONLY_DATABASE_URL, $DATABASE_URL or a running "
                    "local one); the CDC view starts from the REST catalog", env=env.name, feed=feed.name,
                    market=market_type)
        return None
    states = market_states(feed.feed)
    return lambda: load_catalog(url, feed.name, states, market_type)


async def _run_all_markets(env: ResolvedEnvironment, feed: ResolvedFeed, args: argparse.Namespace,
                           credentials: KalshiCredentials | None, options: ConnectorOptions) -> int:
    if not feed.all_market_channels:
        print(f"feed {feed.name!r} runs no channel with scope `all` in environment {env.name!r}")
        return 1
    connector = Connector(env, feed, [], build_directory(feed.stream_categories(), []),
                          all_markets_venue_factory(feed.feed, credentials), options)
    connector.catalog_loader = _secmaster_loader(env, feed, args)
    rest_url = args.rest_url or feed.endpoint.rest
    if rest_url and connector.catalog_loader is None:
        try:
            connector.catalog = await discover_kalshi_catalog(rest_url)
        except RuntimeError as exc:  # the CDC stream fills the map; until then markets go to uncategorized
            log.warning("catalog discovery failed; categories come from secmaster changes only",
                        feed=feed.name, error=str(exc))
    return await connector.run_until_signalled()


def run(args: argparse.Namespace) -> int:
    return run_daemon(_run(args))
