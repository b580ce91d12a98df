"""A shard's market set, kept in step with its membership keys in the KV registry.

The connector subscribes to its shard's keys *before* reading the existing ones, and queues what
arrives until its session exists; nothing assigned or released in between is missed, and a restarted
connector resumes exactly the markets KV says it owns. Additions arriving within
``ADD_BATCH_WINDOW_S`` are subscribed together: a burst of new markets costs one
``update_subscription`` per channel, not one per market (the exchange rate-limits commands).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from ingest_daemons.connector.directory import MarketDirectory
from ingest_daemons.logs import get_logger
from ingest_daemons.shards import ShardRegistry

log = get_logger("ssmd.shard_membership")

ADD_BATCH_WINDOW_S = 0.05


class MarketSession(Protocol):
    """What membership changes need of a session."""

    @property
    def markets(self) -> list[str]: ...

    async def add_markets(self, tickers: list[str]) -> list[str]: ...

    async def remove_markets(self, tickers: list[str]) -> list[str]: ...


class ShardMembership:
    def __init__(self, registry: ShardRegistry, shard: int, directory: MarketDirectory) -> None:
        self.registry = registry
        self.shard = shard
        self.directory = directory
        self._changes: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self._subscription: Any = None

    async def follow(self) -> None:
        """Start queueing changes; call before :meth:`current` so none falls between the two."""
        self._subscription = await self.registry.follow_shard(self.shard, self._on_change)

    async def current(self) -> list[str]:
        """The markets the shard owns now (their categories go to the directory)."""
        members = await self.registry.members(self.shard)
        for ticker, slug in members.items():
            self.directory.assign_slug(ticker, slug)
        return sorted(members)

    async def _on_change(self, ticker: str, member: bool, slug: str | None) -> None:
        if member:
            self.directory.assign_slug(ticker, slug)
        self._changes.put_nowait((ticker, member))

    async def run(self, session: MarketSession) -> None:
        """Apply changes in arrival order; consecutive additions are batched.

        A failed update is logged and the loop goes on: the session already holds the market set it
        was given, and its next (re)subscription uses that set.
        """
        while True:
            ticker, member = await self._changes.get()
            adds: list[str] = []
            removes: list[str] = []
            if member:
                adds.append(ticker)
                await asyncio.sleep(ADD_BATCH_WINDOW_S)
                while not self._changes.empty():
                    ticker, member = self._changes.get_nowait()
                    if not member:  # a removal after these additions: apply the additions first, keep the order
                        removes.append(ticker)
                        break
                    adds.append(ticker)
            else:
                removes.append(ticker)
            try:
                if adds:
                    added = await session.add_markets(adds)
                    if added:
                        log.info("markets assigned and subscribed", shard=self.shard, markets=len(added),
                                 first=added[0])
                for ticker in removes:
                    await self._remove(session, ticker)
            except Exception as exc:
                log.error("applying shard membership failed; the next subscription uses the new set",
                          shard=self.shard, adds=len(adds), removes=len(removes), error=repr(exc))

    async def _remove(self, session: MarketSession, ticker: str) -> None:
        if await session.remove_markets([ticker]):
            log.info("released market unsubscribed", shard=self.shard, market=ticker)

    @property
    def pending(self) -> int:
        return self._changes.qsize()

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
