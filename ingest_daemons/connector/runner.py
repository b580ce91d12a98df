"""Assembles a connector process for any venue: markets → sessions → publisher, plus metrics, health,
shard membership, CDC following and signals. The venue comes in as a factory
(:func:`ingest_daemons.adapters.venues.venue_factory`); nothing here knows which exchange it serves.

Shutdown (SIGTERM/SIGINT): sessions unsubscribe and read until the exchange confirms, then the
publisher drains every held frame to JetStream; the process exits 0 only when nothing is left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from nats.aio.client import Client

from ingest_daemons.adapters.venues import VenueFactory, market_states
from ingest_daemons.config.settings import ResolvedEnvironment, ResolvedFeed
from ingest_daemons.connector.category_map import CategoryMap
from ingest_daemons.connector.cdc_follower import CdcFollower
from ingest_daemons.connector.directory import MarketCatalog, MarketDirectory
from ingest_daemons.connector.lease import KvLease
from ingest_daemons.connector.metrics import ConnectorMetrics, HealthServer
from ingest_daemons.connector.pool import SessionPool
from ingest_daemons.connector.secmaster_view import SecmasterView
from ingest_daemons.connector.session import DEFAULT_COMMAND_TIMEOUT_S, SessionSettings, VenueSession, ready_reason
from ingest_daemons.connector.shard_membership import ShardMembership
from ingest_daemons.connector.stagger import ConnectStagger
from ingest_daemons.logs import get_logger
from ingest_daemons.naming import LIFECYCLE, SubjectBuilder
from ingest_daemons.nats_client import connect_daemon
from ingest_daemons.publisher import (
    DEFAULT_ACK_TIMEOUT_S,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_BYTES,
    JetStreamPublisher,
)
from ingest_daemons.shards import ShardLayout, ShardRegistry, registry_feed

log = get_logger("ssmd.connector")

DEFAULT_DRAIN_TIMEOUT_S = 60.0
LATENCY_SAMPLE = 8


@dataclass(frozen=True)
class ConnectorOptions:
    shard: int = 0
    ws_url: str | None = None
    nats_url: str | None = None
    idle_timeout_s: float = 30.0
    heartbeat_s: float = 15.0
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES
    ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    # how long the exchange gets to answer a command, not counting time the reader is held by a full
    # publisher (the answer waits behind frames the connector cannot publish yet)
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9464
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    lifecycle: bool = False  # run the feed's unsharded lifecycle channel instead of market data
    # run the feed's all-market channels (scope `all`) unsharded, with no market list, instead of its
    # per-shard channels; categories from the secmaster (seed + CDC)
    all_markets: bool = False
    # all markets: hold a NATS KV lease of this TTL before subscribing, so of several replicas one
    # publishes and the others stand by (None: no lease, this replica always runs)
    lease_ttl_s: float | None = None
    use_registry: bool = False  # shard assignments from the NATS KV registry (else the given market list)
    follow_cdc: bool = False  # subscribe/unsubscribe markets as the secmaster changes (needs use_registry)
    assigner_shard: int = 0  # with follow_cdc: the shard whose connector turns secmaster changes into assignments
    # The venue's market type when a feed runs one process per market (Kraken `spot`, `futures`): the
    # registry keys, the assigner and the secmaster rows it follows are that market's alone.
    market: str | None = None
    # With follow_cdc: the assigner assigns the secmaster's open markets it seeds from (read once its CDC
    # consumer exists), rather than markets listed by the exchange's REST API at start.
    markets_from_secmaster: bool = False
    heartbeat_interval_s: float = 5.0

    @property
    def shard_label(self) -> str:
        """The shard as metrics, logs and the NATS connection name show it: the unsharded connectors
        serve every market of their channels, so they say which they are (``all``, ``lifecycle``)
        rather than pass for shard 0."""
        if self.all_markets:
            return "all"
        if self.lifecycle:
            return "lifecycle"
        return str(self.shard)


def shard_markets(markets: list[str], shard: int, shard_size: int) -> list[str]:
    """Deterministic slice of the sorted market list for shard ``shard``."""
    ordered = sorted(set(markets))
    return ordered[shard * shard_size : (shard + 1) * shard_size]


def beyond_layout_reason(shard: int, layout: ShardLayout) -> str:
    return (
        f"shard {shard} is beyond the layout ({layout.shards} shard(s)): no markets are assigned to it "
        f"until `ssmd shards scale --shards {shard + 1}` (or more) or a headroom run opens it"
    )


class Connector:
    def __init__(
        self,
        env: ResolvedEnvironment,
        feed: ResolvedFeed,
        markets: list[str],
        directory: MarketDirectory,
        venues: VenueFactory,
        options: ConnectorOptions,
    ) -> None:
        self.env = env
        self.feed = feed
        self.options = options
        self.run_id = os.urandom(4).hex()
        self.metrics = ConnectorMetrics(feed.name, options.shard_label)
        self.publisher = JetStreamPublisher(
            env.nats_settings(options.nats_url),
            name=f"ssmd-connector-{env.name}-{feed.name}-{options.shard_label}",
            max_in_flight=options.max_in_flight,
            max_in_flight_bytes=options.max_in_flight_bytes,
            ack_timeout_s=options.ack_timeout_s,
            on_ack=self._on_ack,
            on_ack_every=LATENCY_SAMPLE,
        )
        self.metrics.add_standard_gauges(
            in_flight=lambda: self.publisher.in_flight,
            connected=lambda: 1.0 if self.publisher.connected else 0.0,
            retries=lambda: self.publisher.retried,
        )
        limits = feed.feed.limits
        channels = tuple(feed.channels)
        if options.lifecycle:
            if feed.feed.lifecycle_channel is None:
                raise ValueError(f"feed {feed.name} has no lifecycle_channel")
            channels, markets = (feed.feed.lifecycle_channel,), []
            # Every lifecycle message goes to the lifecycle stream, whatever its market.
            directory = MarketDirectory(stream_categories={LIFECYCLE}, fallback=LIFECYCLE)
        elif options.all_markets:
            channels, markets = tuple(feed.all_market_channels), []
            if not channels:
                raise ValueError(f"feed {feed.name} has no channel with scope `all` in environment {env.name}")
        else:
            channels = tuple(feed.shard_channels)
        self.channels = channels
        settings = SessionSettings(
            url=options.ws_url or feed.endpoint.ws,
            commands_per_second=limits.commands_per_second,
            idle_timeout_s=options.idle_timeout_s,
            heartbeat_s=options.heartbeat_s,
            command_timeout_s=options.command_timeout_s,
            backoff_initial_s=options.backoff_initial_s,
            backoff_max_s=options.backoff_max_s,
        )
        self.settings = settings
        self.stagger = ConnectStagger(limits.connection_stagger.total_seconds())
        self.venues = venues
        self.builder = SubjectBuilder(env.name, feed.name)
        self.directory = directory
        self.candidates = markets
        self.sessions: list[VenueSession] = []
        self.pool = SessionPool(self.sessions, feed.feed.limits.markets_per_connection, self._open_session)
        self.metrics.markets.set_function(self._markets_subscribed)
        self.catalog: MarketCatalog | None = None  # set by the caller to seed CDC following
        # Set by the caller to seed CDC following from the secmaster itself: called once the CDC
        # subscription exists, so no change falls between the snapshot and the stream.
        self.catalog_loader: Callable[[], Awaitable[MarketCatalog]] | None = None
        self.registry: ShardRegistry | None = None
        self.follower: CdcFollower | None = None
        self.category_map: CategoryMap | None = None
        self.lease: KvLease | None = None
        self.membership: ShardMembership | None = None
        self.health: HealthServer | None = None
        # Why /readyz says no before the sessions exist (e.g. "discovering markets"), and the layout
        # when this shard's index is beyond it (no markets are assigned to it until it grows).
        self.starting: str | None = None
        self.beyond_layout: ShardLayout | None = None
        self._nc: Client | None = None
        self._stop = asyncio.Event()
        self._follow_stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _on_ack(self, subject: str, latency_ns: int, wire: bytes) -> None:
        """Called for every LATENCY_SAMPLE-th ack: the latency histogram's distribution is the same, the cost 1/8."""
        self.metrics.latency.observe(latency_ns / 1e9)

    def _markets_subscribed(self) -> float:
        """The shard's markets over all its connections (a shard past ``markets_per_connection`` has several)."""
        return sum(session.markets_subscribed for session in self.sessions)

    def _make_sessions(self, markets: list[str]) -> list[VenueSession]:
        per_socket = self.feed.feed.limits.markets_per_connection
        groups = [markets[i : i + per_socket] for i in range(0, len(markets), per_socket)] or [[]]
        return [self._session(i, group) for i, group in enumerate(groups)]

    def _session(self, index: int, markets: list[str]) -> VenueSession:
        return VenueSession(
            index=index, run_id=self.run_id, shard=self.options.shard, shard_label=self.options.shard_label,
            settings=self.settings, markets=markets,
            venue=self.venues(self.channels), directory=self.directory, builder=self.builder,
            publisher=self.publisher, metrics=self.metrics, stagger=self.stagger,
        )

    def _open_session(self, markets: list[str]) -> VenueSession:
        """One more connection, for live additions that no open connection has room for."""
        session = self._session(len(self.sessions), markets)
        self.sessions.append(session)
        self._tasks.append(asyncio.create_task(session.run(), name=f"session-{session.index}"))
        log.info("connection opened for new markets", feed=self.feed.name, shard=self.options.shard_label,
                 connection=session.index, markets=len(markets))
        return session

    @property
    def is_assigner(self) -> bool:
        return self.options.follow_cdc and self.options.shard == self.options.assigner_shard

    async def _assigned_markets(self) -> list[str]:
        """Markets of this shard from the KV registry, after assigning the candidates nobody holds yet.

        Following CDC, only the assigner assigns (the others would repeat its lookups); otherwise every
        shard offers its candidates and compare-and-set settles who gets each.
        """
        assert self.registry is not None
        if self.candidates and (self.is_assigner or not self.options.follow_cdc):
            await self.registry.assign_many([(t, self.directory.category_of(t)) for t in self.candidates])
        membership = self.membership or ShardMembership(self.registry, self.options.shard, self.directory)
        return await membership.current()

    def ready(self) -> tuple[bool, str]:
        if self.starting is not None:
            return False, self.starting
        if self.beyond_layout is not None:
            return False, beyond_layout_reason(self.options.shard, self.beyond_layout)
        return ready_reason(self.sessions, lambda: self.publisher.connected)

    # ------------------------------------------------------------------ health first, layout check

    async def serve_health(self) -> None:
        """Start /healthz /readyz /metrics (once): before market discovery, so the startup probe
        sees a live process and /readyz says what it waits for."""
        if self.options.metrics_port is not None and self.health is None:
            self.health = HealthServer(self.metrics, self.ready, self.options.metrics_host, self.options.metrics_port)
            await self.health.start()

    def use_markets(self, markets: list[str], directory: MarketDirectory, catalog: MarketCatalog | None) -> None:
        """The discovered candidates; ends the "discovering markets" phase."""
        self.candidates, self.directory, self.catalog = markets, directory, catalog
        self.starting = None

    async def _check_layout(self) -> None:
        """Note (and log, on change) whether this shard's index is beyond the registry's layout."""
        assert self.registry is not None
        layout = await self.registry.layout()
        beyond = layout if self.options.shard >= layout.shards else None
        if beyond is not None and self.beyond_layout is None:
            log.warning("shard is beyond the layout: " + beyond_layout_reason(self.options.shard, beyond),
                        env=self.env.name, feed=self.feed.name, shard=self.options.shard, shards=beyond.shards)
        elif beyond is None and self.beyond_layout is not None:
            log.info("shard is inside the layout now", env=self.env.name, feed=self.feed.name,
                     shard=self.options.shard, shards=layout.shards)
        self.beyond_layout = beyond

    def request_stop(self) -> None:
        self._stop.set()

    async def start(self) -> None:
        await self.serve_health()
        await self.publisher.start(wait_connected_s=None)
        markets = self.candidates
        if self.options.all_markets and self.options.lease_ttl_s is not None and not await self._take_lease():
            return  # stopped while standing by
        if self.options.all_markets:
            await self._map_categories()
        if self.options.use_registry and not self.options.lifecycle and not self.options.all_markets:
            self._nc = await connect_daemon(self.env.nats_settings(self.options.nats_url),
                                            name=f"ssmd-connector-{self.env.name}-{self.feed.name}-{self.options.shard}-kv")
            js = self._nc.jetstream()
            # A connector's role may not configure the bucket: provisioning switches direct gets on.
            self.registry = await ShardRegistry.open(js, self.env.name,
                                                     registry_feed(self.feed.name, self.options.market),
                                                     replicas=self.env.config.streams.replicas,
                                                     switch_on_direct_gets=False)
            await self.registry.ensure_layout(shards=1, capacity=self.feed.settings.shard_size)
            await self._check_layout()
            if self.options.follow_cdc:  # follow new assignments before reading the existing ones
                self.membership = ShardMembership(self.registry, self.options.shard, self.directory)
                await self.membership.follow()
            markets = await self._assigned_markets()
        self.sessions = self._make_sessions(markets)
        self.pool = SessionPool(self.sessions, self.feed.feed.limits.markets_per_connection, self._open_session)
        self._tasks += [asyncio.create_task(s.run(), name=f"session-{s.index}") for s in self.sessions]
        if self.registry is not None and self._nc is not None:
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeat"))
            if self.membership is not None:
                membership = self.membership
                self.metrics.gauge_fn("ssmd_shard_membership_pending", "Assignment changes not yet applied to the "
                                      "exchange subscription", lambda: membership.pending)
                self._tasks.append(asyncio.create_task(self.membership.run(self.pool), name="membership"))
            if self.is_assigner:
                view = SecmasterView(self.feed.name, market_states(self.feed.feed), self.options.market)
                if self.catalog is not None:
                    view.seed(self.catalog)
                self.follower = follower = CdcFollower(self._nc, self.env.name, self.feed.settings, view,
                                                       self.registry, self.directory,
                                                       assign_seeded=self.options.markets_from_secmaster)
                self.metrics.gauge_fn("ssmd_assigner_changes_handled", "Secmaster changes the assigner handled "
                                      "(cumulative)", lambda: follower.applied)
                self.metrics.gauge_fn("ssmd_markets_waiting", "Markets that passed the filter and wait for a shard "
                                      "with room", lambda: len(follower.waiting))
                self.metrics.gauge_fn("ssmd_shard_load_repairs", "Shard load counters the assigner found off their "
                                      "membership keys and repaired (cumulative)", lambda: follower.reconciler.repairs)
                self._tasks.append(asyncio.create_task(self.follower.run(self._follow_stop, self._load_catalog),
                                                       name="cdc-follower"))
        log.info("connector started", env=self.env.name, feed=self.feed.name, market=self.options.market,
                 shard=self.options.shard_label, run=self.run_id, connections=len(self.sessions),
                 markets=len(markets),
                 registry=self.registry is not None, follow_cdc=self.membership is not None,
                 assigner=self.follower is not None, category_map=self.category_map is not None)

    async def _connect_nc(self, purpose: str) -> Client:
        if self._nc is None:
            self._nc = await connect_daemon(self.env.nats_settings(self.options.nats_url),
                                            name=f"ssmd-connector-{self.env.name}-{self.feed.name}-{purpose}")
        return self._nc

    async def _take_lease(self) -> bool:
        """Stand by until this replica holds the all-markets lease; then keep it, and stop when it is lost."""
        assert self.options.lease_ttl_s is not None
        nc = await self._connect_nc("all")
        self.lease = lease = KvLease(nc, self.env.name, f"{self.feed.name}.all-markets", self.run_id,
                                     self.options.lease_ttl_s)
        self.starting = "standing by: another replica holds the all-markets lease"
        if not await lease.acquire(self._stop, replicas=self.env.config.streams.replicas):
            return False
        self.starting = None
        lost = asyncio.Event()

        async def stop_when_lost() -> None:
            await lost.wait()
            self.request_stop()

        self._tasks.append(asyncio.create_task(lease.keep(lost), name="lease"))
        self._tasks.append(asyncio.create_task(stop_when_lost(), name="lease-lost"))
        return True

    async def _map_categories(self) -> None:
        """All markets: categories from the secmaster's rows (``catalog_loader``; else the REST ``catalog``) and,
        following CDC, from every secmaster change after them (one dictionary get per frame, never a query)."""
        self.category_map = categories = CategoryMap(self.directory, self.feed.settings,
                                                        SecmasterView(self.feed.name, market_states(self.feed.feed)))
        subscription = None
        if self.options.follow_cdc:
            # Subscribed before the seed is read: no change falls in between.
            subscription = await categories.subscribe(await self._connect_nc("all"), self.env.name)
        if self.catalog is not None:
            categories.seed(self.catalog)
        if subscription is not None:
            secmaster = await self._load_catalog()
            if secmaster is not None:
                categories.seed(secmaster)
            self.metrics.gauge_fn("ssmd_category_changes_applied", "Secmaster market changes applied to the "
                                  "category map (cumulative)", lambda: categories.applied)
            self._tasks.append(asyncio.create_task(categories.run(subscription, self._follow_stop), name="categories"))

    async def _load_catalog(self) -> MarketCatalog | None:
        """The secmaster's rows via ``catalog_loader`` (None without one, or when the database cannot be read:
        the CDC changes then fill the view, and unknown markets go to uncategorized meanwhile)."""
        if self.catalog_loader is None:
            return None
        try:
            return await self.catalog_loader()
        except (psycopg.Error, OSError) as exc:
            log.warning("secmaster not readable; categories from the catalog and CDC changes only", env=self.env.name,
                        feed=self.feed.name, error=type(exc).__name__)
            return None

    async def _heartbeat_loop(self) -> None:
        """The shard's state into KV every few seconds, for ``ssmd shards status`` and the headroom sensor."""
        assert self.registry is not None
        last_count, last_time = 0, time.monotonic()
        while True:
            now = time.monotonic()
            count = sum(self.metrics.by_type.values())
            try:
                await self.registry.heartbeat(
                    self.options.shard,
                    markets=sum(len(s.markets) for s in self.sessions),
                    msgs_per_s=round((count - last_count) / max(now - last_time, 1e-6), 1),
                    last_message_age_s=round(now - self.metrics.last_message_monotonic, 1),
                    run=self.run_id,
                )
                await self._check_layout()
            except Exception as exc:  # NATS down: the next beat tries again
                log.warning("heartbeat failed", shard=self.options.shard, error=type(exc).__name__)
            last_count, last_time = count, now
            await asyncio.sleep(self.options.heartbeat_interval_s)

    async def wait_subscribed(self, timeout_s: float) -> None:
        await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in self.sessions)), timeout_s)

    async def shutdown(self) -> bool:
        """Unsubscribe, read what the exchange already sent, drain JetStream acks. True = nothing lost: every
        frame the exchange sent before confirming was read, and every frame read was acknowledged."""
        log.info("draining", feed=self.feed.name, shard=self.options.shard_label, in_flight=self.publisher.in_flight)
        self._follow_stop.set()
        stopped = await asyncio.gather(*(s.stop(self.options.drain_timeout_s) for s in self.sessions),
                                       return_exceptions=True)
        read_all = all(result is True for result in stopped)
        if self.membership is not None:
            await self.membership.close()
        for task in self._tasks:
            if task.get_name() in ("heartbeat", "membership", "lease", "lease-lost"):
                task.cancel()
                continue
            try:
                await asyncio.wait_for(task, 10.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        drained = await self.publisher.drain(self.options.drain_timeout_s)
        if self.lease is not None:
            await self.lease.release()  # after the drain: the stand-by's frames come after ours
        if self._nc is not None:
            await self._nc.close()
        held = self.publisher.in_flight
        await self.publisher.close()
        if self.health is not None:
            await self.health.stop()
        if drained and read_all:
            log.info("stopped; every frame acknowledged", feed=self.feed.name, shard=self.options.shard_label,
                     acked=self.publisher.acked)
        elif not drained:
            log.error("stopped with frames not acknowledged", feed=self.feed.name, shard=self.options.shard_label,
                      held=held)
        else:
            log.error("stopped with frames left unread on an exchange socket", feed=self.feed.name,
                      shard=self.options.shard_label)
        return drained and read_all

    async def run_until_signalled(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        await self._stop.wait()
        return 0 if await self.shutdown() else 1
