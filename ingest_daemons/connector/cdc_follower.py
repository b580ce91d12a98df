"""Follow ``{ENV}_SECMASTER_CDC`` so new markets are subscribed and finished ones dropped, with no restart.

Each shard's connector has its own durable consumer, so a restarted connector resumes after the
last change it handled (acks follow the handling). Every shard sees every change, but only the
*assigner* (shard 0) asks the registry for a shard: one compare-and-set per new market, not one per
shard. Every shard follows the registry's assignments (a KV subscription) and subscribes the markets
assigned to it, with the category stored in the assignment.

A market's category is its series' category. Market rows do not carry it, so the follower keeps a
small view — event → series and series → category — seeded from the exchange REST API at start and
kept current from the series and events changes in the same stream (commit order guarantees the
event's row arrives before its first market's).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from nats.aio.client import Client
from nats.js import api as js_api
from nats.js.errors import FetchTimeoutError

from ingest_daemons.config.models import EnvironmentFeedConfig
from ingest_daemons.connector.directory import KalshiCatalog, MarketDirectory
from ingest_daemons.connector.kalshi_session import KalshiSession
from ingest_daemons.logs import get_logger
from ingest_daemons.naming import CDC_FEED, cdc_stream_name
from ingest_daemons.shards import ShardRegistry

log = get_logger("ssmd.cdc_follower")

# Kalshi REST response statuses (protocols A7): trading now, and finished for good.
OPEN_STATUSES = frozenset({"active", "open"})
FINISHED_STATUSES = frozenset({"closed", "determined", "disputed", "amended", "finalized", "settled"})
DEFAULT_FETCH_BATCH = 256
WAITING_RETRY_S = 10.0
ADD_BATCH_WINDOW_S = 0.05

Action = Literal["add", "remove", "none"]


@dataclass(frozen=True)
class Decision:
    action: Action
    ticker: str = ""
    category: str | None = None


@dataclass
class SecmasterView:
    """Just enough of the secmaster to categorise a market and to know whether it trades."""

    feed: str
    series_category: dict[str, str | None] = field(default_factory=dict)
    event_series: dict[str, str] = field(default_factory=dict)

    def seed(self, catalog: KalshiCatalog) -> None:
        """Start from what the REST API says now; CDC changes then keep it current."""
        self.series_category.update(catalog.series_category)
        self.event_series.update(catalog.event_series)

    def category_of_event(self, event_ticker: str) -> str | None:
        return self.series_category.get(self.event_series.get(event_ticker, ""))

    def apply(self, change: dict[str, Any]) -> Decision:
        """Update the view from one CDC change and say what it means for subscriptions."""
        row = change.get("row") or {}
        if row.get("feed") not in (None, self.feed):
            return Decision("none")
        table, op = change.get("table"), change.get("op")
        if table == "series" and op != "delete":
            self.series_category[str(row.get("ticker"))] = row.get("category")
        elif table == "events" and op != "delete":
            self.event_series[str(row.get("event_ticker"))] = str(row.get("series_ticker"))
        elif table == "markets":
            ticker = str(row.get("ticker"))
            if op == "delete" or row.get("status") in FINISHED_STATUSES:
                return Decision("remove", ticker)
            if row.get("status") in OPEN_STATUSES:
                return Decision("add", ticker, self.category_of_event(str(row.get("event_ticker"))))
        return Decision("none")


class CdcFollower:
    """Applies secmaster changes to one shard's session; see the module docstring."""

    def __init__(
        self,
        nc: Client,
        env: str,
        shard: int,
        feed_settings: EnvironmentFeedConfig,
        view: SecmasterView,
        registry: ShardRegistry,
        directory: MarketDirectory,
        session: KalshiSession,
        assigner: bool | None = None,
    ) -> None:
        self.nc = nc
        self.env = env
        self.shard = shard
        self.feed_settings = feed_settings
        self.view = view
        self.registry = registry
        self.directory = directory
        self.session = session
        self.assigner = shard == 0 if assigner is None else assigner
        self.durable = f"ssmd_{view.feed}_shard{shard}"
        self.applied = 0
        self.waiting: dict[str, str | None] = {}  # ticker -> category, markets with no shard yet
        self._to_add: list[str] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        js = self.nc.jetstream()
        subscription = await js.pull_subscribe(
            f"{self.env}.{CDC_FEED}.cdc.>",
            durable=self.durable,
            stream=cdc_stream_name(self.env),
            # AckPolicy.ALL: acking the last message of a batch acknowledges the batch (50 shards each
            # reading every change would otherwise send one ack per change per shard).
            config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.ALL, max_ack_pending=10_000,
                                         ack_wait=30, deliver_policy=js_api.DeliverPolicy.NEW),
        )
        log.info("following secmaster changes", env=self.env, shard=self.shard, durable=self.durable)
        next_retry = time.monotonic() + WAITING_RETRY_S
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

    async def retry_waiting(self) -> None:
        """Markets that found no room get another try (a headroom shard may have opened since)."""
        retry = [Decision("add", ticker, category) for ticker, category in self.waiting.items()]
        self.waiting.clear()
        await self._add_all(retry)

    async def handle_many(self, changes: list[dict[str, Any]]) -> None:
        """A fetched batch in order; consecutive additions are assigned together (bursts of new markets)."""
        adds: list[Decision] = []
        for change in changes:
            decision = self.view.apply(change)
            if decision.action == "add":
                adds.append(decision)
            elif decision.action == "remove":
                await self._add_all(adds)
                adds = []
                await self._remove(decision.ticker)
        await self._add_all(adds)

    async def _add_all(self, decisions: list[Decision]) -> None:
        if not self.assigner:
            return
        wanted = [d for d in decisions if self.feed_settings.category_passes(d.category)]
        if not wanted:
            return
        shards = await self.registry.assign_many([(d.ticker, self.directory.slug_for(d.category)) for d in wanted])
        for decision in wanted:
            if shards.get(decision.ticker) is None:
                self.waiting[decision.ticker] = decision.category
                await self.registry.mark_waiting(decision.ticker)
                log.warning("no shard has room; market waits for headroom", market=decision.ticker,
                            shard=self.shard, waiting=len(self.waiting))

    async def handle(self, change: dict[str, Any]) -> None:
        await self.handle_many([change])

    async def on_assignment(self, ticker: str, shard: int, category: str | None) -> None:
        """A market was assigned (by the assigner, possibly another process): subscribe it if it is ours.

        Assignments arriving within ADD_BATCH_WINDOW_S are subscribed together: a burst of new markets
        costs one update per channel, not one per market (commands are rate-limited by the exchange).
        """
        if shard != self.shard:
            return
        self.directory.assign_slug(ticker, category)
        self._to_add.append(ticker)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_adds())

    async def _flush_adds(self) -> None:
        await asyncio.sleep(ADD_BATCH_WINDOW_S)
        while self._to_add:
            batch, self._to_add = self._to_add, []
            added = await self.session.add_markets(batch)
            if added:
                log.info("markets discovered and subscribed", markets=len(added), first=added[0], shard=self.shard)

    async def drain_adds(self) -> None:
        """Wait for batched additions in progress (tests, shutdown)."""
        if self._flusher is not None:
            await self._flusher

    async def _remove(self, ticker: str) -> None:
        if ticker in self.session.markets:
            await self.session.remove_markets([ticker])
            log.info("finished market unsubscribed", market=ticker, shard=self.shard)
        if self.assigner:
            await self.registry.release(ticker)
        self.waiting.pop(ticker, None)
