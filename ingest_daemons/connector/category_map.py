"""The all-markets connector's ticker → category map: seeded at start, kept current by the secmaster's CDC.

An all-markets subscription (protocols A3) delivers markets nobody asked for, including ones created a
second ago, so the category of each frame's market cannot come from a subscription list. It comes
from an in-memory map — one dictionary get per frame on the hot path (:class:`MarketDirectory`) — that
this module fills: from the secmaster's rows at start (:mod:`secmaster_catalog`; the exchange's REST
catalog only when the connector has no database), then from every series, event and market change on
``{ENV}_SECMASTER_CDC`` (commit order brings an event's row before its first market's).

A market the map does not know yet goes to ``uncategorized`` and is never dropped; once its secmaster
row arrives, its later frames go to its category. A market whose category the environment excludes
maps to :data:`~ingest_daemons.connector.directory.EXCLUDED`: the engine counts its frames per
category and does not publish them.

Each replica reads the stream through its own ordered (ephemeral) consumer from the moment it
subscribes, which is before the seed is read, so no change falls between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api as js_api

from ingest_daemons.config.models import EnvironmentFeedConfig
from ingest_daemons.connector.directory import MarketCatalog, MarketDirectory
from ingest_daemons.connector.secmaster_view import SecmasterView
from ingest_daemons.logs import get_logger
from ingest_daemons.naming import CDC_FEED, cdc_stream_name

log = get_logger("ssmd.category_map")

RETRY_S = 2.0


class CategoryMap:
    """Keeps a :class:`MarketDirectory` current from the secmaster (see the module docstring)."""

    def __init__(self, directory: MarketDirectory, feed_settings: EnvironmentFeedConfig, view: SecmasterView) -> None:
        self.directory = directory
        self.feed_settings = feed_settings
        self.view = view
        self.applied = 0

    def place(self, ticker: str, category: str | None) -> None:
        """Route ``ticker``: unknown category → fallback, excluded → not published, else its stream."""
        if category is None:
            self.directory.assign(ticker, None)
        elif self.feed_settings.category_passes(category):
            self.directory.assign(ticker, category)
        else:
            self.directory.exclude(ticker, category)

    def seed(self, catalog: MarketCatalog) -> None:
        self.view.seed(catalog)
        for market in catalog.markets:
            self.place(market.ticker, market.category)

    def apply(self, change: dict[str, Any]) -> None:
        """One CDC change: series and events update the view, a market row is (re)placed."""
        self.view.apply(change)
        row = change.get("row") or {}
        if change.get("table") != "markets" or change.get("op") == "delete":
            return
        if row.get("feed") not in (None, self.view.feed):
            return
        ticker = row.get("ticker")
        if isinstance(ticker, str):
            self.place(ticker, self.view.category_of_event(str(row.get("event_ticker"))))
            self.applied += 1

    async def subscribe(self, nc: Client, env: str) -> Any:
        """The ordered consumer, created before the seed is read so no change falls in between."""
        js = nc.jetstream()
        return await js.subscribe(f"{env}.{CDC_FEED}.cdc.>", stream=cdc_stream_name(env), ordered_consumer=True,
                                  deliver_policy=js_api.DeliverPolicy.NEW, idle_heartbeat=5.0)

    async def run(self, subscription: Any, stop: asyncio.Event) -> None:
        """Apply changes until ``stop``; the ordered consumer re-creates itself after a NATS restart."""
        while not stop.is_set():
            try:
                msg: Msg = await subscription.next_msg(timeout=1.0)
            except TimeoutError:
                continue
            except Exception as exc:  # NATS reconnecting: the next read tries again
                log.warning("secmaster change stream read failed", error=type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                continue
            try:
                self.apply(orjson.loads(msg.data))
            except orjson.JSONDecodeError:
                log.warning("unreadable secmaster change skipped", subject=msg.subject)
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
