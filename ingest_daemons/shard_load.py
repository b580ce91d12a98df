"""Shard load counters put right from the membership keys.

``{feed}.load.{i}`` is a reservation counter, moved by compare-and-set before a claim and after a
release. It leaks when a writer dies between the reservation and the claims, or between deleting a
claim and giving its slot back: the counter then says more markets than the shard owns, and the
headroom sensor opens shards nobody needs. Nothing else corrects it, so the assigner runs this on
start and every ``interval``.

The truth is the shard's membership keys (``{feed}.shard.{i}.*``, counted from one headers-only
listing). A counter legitimately differs from them for a moment while a writer is between its steps
(a reservation whose claims are in flight; a release, redelivered after a crash, that has not yet
given its slot back). So a counter is repaired only when two consecutive passes saw the *same*
counter revision and the *same* membership count with a difference between them: a writer in the
middle of its steps changes one or the other before the next pass. The repair itself is a
compare-and-set on that revision, so a reservation landing at that moment wins and the repair waits
for the next pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ingest_daemons.logs import get_logger
from ingest_daemons.shards import ShardRegistry

log = get_logger("ssmd.shard_load")

DEFAULT_RECONCILE_INTERVAL_S = 120.0


@dataclass(frozen=True)
class LoadObservation:
    """One shard in one pass: its counter (value, revision; None when the key does not exist) and
    how many membership keys it has."""

    load: int
    revision: int | None
    members: int

    @property
    def drift(self) -> int:
        return self.load - self.members


@dataclass(frozen=True)
class LoadRepair:
    shard: int
    was: int
    now: int


def settled_drifts(previous: Mapping[int, LoadObservation], current: Mapping[int, LoadObservation]) -> list[int]:
    """Shards whose counter is off and stayed exactly as it was since the previous pass (pure)."""
    return sorted(shard for shard, seen in current.items() if seen.drift and previous.get(shard) == seen)


class LoadReconciler:
    """Repairs leaked load counters of one feed (see the module docstring); counts what it did."""

    def __init__(self, registry: ShardRegistry) -> None:
        self.registry = registry
        self.repairs = 0  # counters repaired since start (the metric)
        self.passes = 0
        self._previous: dict[int, LoadObservation] = {}

    async def observe(self) -> dict[int, LoadObservation]:
        """Counters read before and after the listing; a shard whose counter moved meanwhile is left
        out of this pass (inconclusive)."""
        layout = await self.registry.layout()
        shards = range(layout.shards)
        before = await asyncio.gather(*(self.registry.load_entry(s) for s in shards))
        members = await self.registry.membership_counts()
        after = await asyncio.gather(*(self.registry.load_entry(s) for s in shards))
        return {
            shard: LoadObservation(first[0], first[1], members.get(shard, 0))
            for shard, first, second in zip(shards, before, after, strict=True)
            if first == second
        }

    async def run_once(self) -> list[LoadRepair]:
        current = await self.observe()
        repairs = []
        for shard in settled_drifts(self._previous, current):
            seen = current[shard]
            if await self.registry.set_load(shard, seen.members, seen.revision):
                repairs.append(LoadRepair(shard, seen.load, seen.members))
                del current[shard]  # changed by us: judge it afresh next pass
        self._previous = current
        self.passes += 1
        if repairs:
            self.repairs += len(repairs)
            await self.registry.record_load_repair(
                [{"shard": r.shard, "was": r.was, "now": r.now} for r in repairs], time.time())
            for repair in repairs:
                log.warning("shard load counter repaired from its membership keys", feed=self.registry.feed,
                            shard=repair.shard, was=repair.was, now=repair.now)
        return repairs
