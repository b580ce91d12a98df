"""Membership changes reach the session in order, additions batched, failures survived."""

from __future__ import annotations

import asyncio
import contextlib

from ingest_daemons.connector.directory import MarketDirectory
from ingest_daemons.connector.shard_membership import ShardMembership
from tests.helpers import wait_until


class RecordingSession:
    def __init__(self, fail_first: bool = False) -> None:
        self.markets: list[str] = []
        self.calls: list[tuple[str, list[str]]] = []
        self.fail_first = fail_first

    async def add_markets(self, tickers: list[str]) -> list[str]:
        self.calls.append(("add", list(tickers)))
        if self.fail_first:
            self.fail_first = False
            raise ConnectionResetError("socket gone")
        new = [t for t in tickers if t not in self.markets]
        self.markets.extend(new)
        return new

    async def remove_markets(self, tickers: list[str]) -> list[str]:
        self.calls.append(("remove", list(tickers)))
        gone = [t for t in tickers if t in self.markets]
        self.markets = [t for t in self.markets if t not in gone]
        return gone


async def test_additions_are_batched_and_order_is_kept() -> None:
    directory = MarketDirectory(stream_categories={"economics"})
    membership = ShardMembership(None, 3, directory)  # type: ignore[arg-type]  # changes fed directly
    session = RecordingSession()
    task = asyncio.create_task(membership.run(session))
    for ticker, member in [("A", True), ("B", True), ("A", False), ("C", True)]:
        await membership._on_change(ticker, member, "economics" if member else None)
    await wait_until(lambda: len(session.calls) == 3, 5, "three updates")
    assert session.calls == [("add", ["A", "B"]), ("remove", ["A"]), ("add", ["C"])]
    assert session.markets == ["B", "C"] and directory.category_of("C") == "economics"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_failed_update_does_not_stop_following() -> None:
    membership = ShardMembership(None, 0, MarketDirectory())  # type: ignore[arg-type]
    session = RecordingSession(fail_first=True)
    task = asyncio.create_task(membership.run(session))
    await membership._on_change("A", True, None)
    await wait_until(lambda: len(session.calls) == 1, 5, "the failing update")
    await membership._on_change("B", True, None)
    await wait_until(lambda: session.markets == ["B"], 5, "the next update to go through")
    assert not task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
