"""Follow ``{ENV}_SECMASTER_CDC`` so new markets are subscribed and finished ones dropped, with no restart.

Only the *assigner* — shard 0's connector — reads the changes, through a durable consumer, so a
restarted assigner resumes after the last change it handled (acks follow the handling). It turns an
open market that passes the environment's category filter into a shard assignment in the KV
registry, and a finished one into a release. Every shard's connector follows only its own membership
keys in that registry (:mod:`ingest_daemons.connector.shard_membership`) and subscribes or
unsubscribes accordingly. Each change therefore costs one assignment plus one KV message to the
owning shard, however many shards there are — rather than every shard reading every change.

A market's category is its series' category. Market rows do not carry it, so the follower keeps a
small view (:class:`~ingest_daemons.connector.secmaster_view.SecmasterView`: event → series and series →
category, and the venue's open/finished statuses) seeded from the secmaster at start and kept current
from the series and events changes in the same stream (commit order guarantees the event's row arrives
before its first market's). Nothing here is venue-specific.

The assigner also keeps the shards' load counters honest (:mod:`ingest_daemons.shard_load`): on start
and every ``reconcile_interval_s`` it compares them with the membership keys, beside the change loop
so a listing of a large registry never holds up assignments.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import api as js_api
from nats.js.errors import FetchTimeoutError

from ingest_daemons.config.models import EnvironmentFeedConfig
from ingest_daemons.connector.directory import MarketCatalog, MarketDirectory
from ingest_daemons.connector.secmaster_view import SecmasterView
from ingest_daemons.logs import get_logger
from ingest_daemons.naming import CDC_FEED, cdc_stream_name
from ingest_daemons.shard_load import DEFAULT_RECONCILE_INTERVAL_S, LoadReconciler
from ingest_daemons.shards import ShardRegistry

log = get_logger("ssmd.cdc_follower")

# The server answers a pull with what is there (it waits only for the first change), so this caps a
# batch: a burst of up to this many new markets is assigned together (ingest_daemons.shard_assign).
DEFAULT_FETCH_BATCH = 1024
WAITING_RETRY_S = 10.0


class CdcFollower:
    """Turns secmaster changes into shard assignments (the assigner); see the module docstring."""

    def __init__(
        self,
        nc: Client,
        env: str,
        feed_settings: EnvironmentFeedConfig,
        view: SecmasterView,
        registry: ShardRegistry,
        directory: MarketDirectory,
        assign_seeded: bool = False,
    ) -> None:
        self.nc = nc
        self.env = env
        self.feed_settings = feed_settings
        self.view = view
        self.registry = registry
        self.directory = directory
        # One assigner per registry name: a feed run as one process per market (Kraken) has one per market.
        self.durable = f"ssmd_{registry.feed.replace('.', '_')}_assigner"
        # The seed's open markets are the candidates (no REST listing at start): assigned once the consumer exists.
        self.assign_seeded = assign_seeded
        self.applied = 0
        self.waiting: dict[str, str | None] = {}  # ticker -> category slug, markets with no shard yet
        self.reconciler = LoadReconciler(registry)
        self.reconcile_interval_s = DEFAULT_RECONCILE_INTERVAL_S

    async def run(self, stop: asyncio.Event,
                  seed: Callable[[], Awaitable[MarketCatalog | None]] | None = None) -> None:
        """Follow until ``stop``. ``seed`` (the secmaster's rows) is read once the durable consumer exists, so
        a change committed after the snapshot is delivered, never missed."""
        js = self.nc.jetstream()
        subscription = await js.pull_subscribe(
            f"{self.env}.{CDC_FEED}.cdc.>",
            durable=self.durable,
            stream=cdc_stream_name(self.env),
            # AckPolicy.ALL: acking the last message of a batch acknowledges the batch.
            config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.ALL, max_ack_pending=10_000,
                                         ack_wait=30, deliver_policy=js_api.DeliverPolicy.NEW),
        )
        catalog = await seed() if seed is not None else None
        if catalog is not None:
            self.view.seed(catalog)
            if self.assign_seeded:
                await self._assign([(m.ticker, self.directory.slug_for(m.category)) for m in catalog.markets
                                    if self.feed_settings.category_passes(m.category)])
        # Markets that waited before a restart are still waiting: pick them up from KV.
        self.waiting.update(await self.registry.waiting_markets())
        log.info("assigning markets from secmaster changes", env=self.env, durable=self.durable,
                 waiting=len(self.waiting))
        next_retry = time.monotonic() + WAITING_RETRY_S
        reconciling = asyncio.create_task(self._reconcile_loop(stop), name="shard-load-reconcile")
        try:
            await self._follow(subscription, stop, next_retry)
        finally:
            reconciling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciling

    async def _follow(self, subscription: Any, stop: asyncio.Event, next_retry: float) -> None:
        while not stop.is_set():
            if self.waiting and time.monotonic() >= next_retry:
                await self.retry_waiting()
                next_retry = time.monotonic() + WAITING_RETRY_S
            try:
                messages = await subscription.fetch(DEFAULT_FETCH_BATCH, timeout=1.0)
            except (FetchTimeoutError, TimeoutError):
                continue
            await self.handle_many([orjson.loads(m.data) for m in messages])
            if messages:
                await messages[-1].ack()
            self.applied += len(messages)
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()

    async def _reconcile_loop(self, stop: asyncio.Event) -> None:
        """Load counters against membership keys, now and every ``reconcile_interval_s``."""
        while not stop.is_set():
            try:
                await self.reconciler.run_once()
            except (NatsError, TimeoutError, OSError) as exc:  # NATS away: the next pass tries again
                log.warning("shard load reconcile failed; retrying next pass", feed=self.view.feed,
                            error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.reconcile_interval_s)

    async def retry_waiting(self) -> None:
        """Markets that found no room get another try (a headroom shard may have opened since)."""
        retry = list(self.waiting.items())
        self.waiting.clear()
        await self._assign(retry)

    async def handle_many(self, changes: list[dict[str, Any]]) -> None:
        """A fetched batch in order; consecutive additions are assigned together (bursts of new markets)."""
        adds: list[tuple[str, str | None]] = []
        for change in changes:
            decision = self.view.apply(change)
            if decision.action == "add" and self.feed_settings.category_passes(decision.category):
                adds.append((decision.ticker, self.directory.slug_for(decision.category)))
            elif decision.action == "remove":
                await self._assign(adds)
                adds = []
                await self._remove(decision.ticker)
        await self._assign(adds)

    async def handle(self, change: dict[str, Any]) -> None:
        await self.handle_many([change])

    async def _assign(self, items: list[tuple[str, str | None]]) -> None:
        if not items:
            return
        shards = await self.registry.assign_many(items)
        unplaced = [(ticker, slug) for ticker, slug in items if shards.get(ticker) is None]
        for ticker, slug in unplaced:
            self.waiting[ticker] = slug
            log.warning("no shard has room; market waits for headroom", market=ticker, waiting=len(self.waiting))
        if unplaced:
            await self.registry.mark_waiting_many(unplaced)

    async def _remove(self, ticker: str) -> None:
        """Give the slot back; the owning shard sees its membership key go and unsubscribes."""
        shard = await self.registry.release(ticker)
        if shard is not None:
            log.info("finished market released", market=ticker, shard=shard)
        if ticker in self.waiting:  # loaded from KV at start, so this also covers markets that waited before
            del self.waiting[ticker]
            await self.registry.clear_waiting(ticker)
