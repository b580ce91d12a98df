"""Assigning a burst of new markets to shards in a few round trips, whatever the burst's size.

The steps and guarantees are those of :class:`~ingest_daemons.shards.ShardRegistry` (reserve a slot
by compare-and-set on ``load.{i}``, claim ``market.{token}`` create-only, then write the membership
key; the loser of a claim gives its slot back). What this module changes is the cost: every step
is done for the whole burst at once (:mod:`ingest_daemons.kv_batch`), so a burst of a thousand
markets costs, without contention:

1. one batched read: the layout, every shard's counter, every market's claim and waiting key;
2. one wave of reservations, one compare-and-set per shard that takes slots (concurrently);
3. one wave of claims, one create-only publish per market, all in flight together;
4. one wave of membership writes (and removals of the waiting keys of markets that waited).

Contention adds waves, not per-market steps: claims lost to another writer are re-read together
(from the stream's leader, so a lagging replica cannot hide the winner), their slots given back one
compare-and-set per shard, and markets whose claim key changed under them (a delete marker that
expired) are tried again in the next round. A reservation that lost its compare-and-set re-reads
that one counter and retries with jitter. Markets left when no shard has room map to ``None``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson
from nats.js.errors import APIError, KeyNotFoundError

from ingest_daemons.kv_batch import KvWrite, WriteOutcome, compare_and_set, last_messages, publish_all
from ingest_daemons.kv_scan import KeyRecord
from ingest_daemons.logs import get_logger
from ingest_daemons.shard_keys import (
    WRONG_LAST_SEQUENCE_CODES,
    ShardLayout,
    assignment_value,
    kv_token,
    membership_value,
    parse_assignment,
)

if TYPE_CHECKING:
    from ingest_daemons.shards import ShardRegistry

log = get_logger("ssmd.shard_assign")

ROUNDS = 4  # claim rounds: a round repeats only for markets whose reservation or claim met a racing writer

Pending = tuple[str, str | None, int]  # ticker, category slug, revision the claim key must still have


def plan_reservations(loads: Mapping[int, int], layout: ShardLayout, wanted: int) -> dict[int, int]:
    """Slots to take per shard for ``wanted`` markets: the last shard with room first, then earlier ones."""
    plan: dict[int, int] = {}
    for shard in range(layout.shards - 1, -1, -1):
        if wanted <= 0:
            break
        take = min(wanted, layout.capacity - loads.get(shard, 0))
        if take > 0:
            plan[shard] = take
            wanted -= take
    return plan


def _conflict(outcome: WriteOutcome) -> bool:
    return outcome.err_code in WRONG_LAST_SEQUENCE_CODES


def _refused(outcome: WriteOutcome, what: str) -> APIError:
    return APIError(description=f"{what}: {outcome.description}", err_code=outcome.err_code)


class BurstAssignment:
    """One call of :meth:`ShardRegistry.assign_many`: markets in, shard (or ``None``) per market out."""

    def __init__(self, registry: ShardRegistry) -> None:
        self.registry = registry
        self.nc = registry.js._nc
        self.stream = f"KV_{registry.bucket}"
        self.prefix = f"$KV.{registry.bucket}.{registry.feed}."

    def _market(self, ticker: str) -> str:
        return f"{self.prefix}market.{kv_token(ticker)}"

    def _waiting(self, ticker: str) -> str:
        return f"{self.prefix}waiting.{kv_token(ticker)}"

    def _load(self, shard: int) -> str:
        return f"{self.prefix}load.{shard}"

    async def run(self, items: list[tuple[str, str | None]]) -> dict[str, int | None]:
        burst = dict(items)  # one entry per market (the first category given wins, as before)
        result: dict[str, int | None] = {}
        joins: list[KvWrite] = []
        pending: list[Pending] = [(t, c, 0) for t, c in burst.items()]
        waited: set[str] = set()
        for round_ in range(ROUNDS):
            # The claims as they stand (and, first, the waiting keys): a market claimed already, or by
            # a racing writer since the last round, takes no slot.
            subjects = [self._market(t) for t, _, _ in pending]
            if not round_:
                subjects += [self._waiting(t) for t, _, _ in pending]
            layout, loads, found = await self._read(subjects)
            if not round_:
                waited = {t for t, _, _ in pending if (w := found.get(self._waiting(t))) is not None and not w.deleted}
            unclaimed: list[Pending] = []
            for ticker, category, _ in pending:
                claim = found.get(self._market(ticker))
                if claim is not None and not claim.deleted and claim.value:
                    shard, claimed_category = parse_assignment(claim.value)
                    result[ticker] = shard
                    if not round_:  # rewriting the membership repairs a writer that died before it
                        joins.append(self._join(shard, ticker, claimed_category))
                else:
                    unclaimed.append((ticker, category, claim.revision if claim is not None else 0))
            pending = unclaimed
            plan = plan_reservations({s: v for s, (v, _) in loads.items()}, layout, len(pending))
            if not plan:
                break
            taken = await asyncio.gather(*(self.registry._reserve(s, n, layout.capacity, loads.get(s, (0, None)))
                                           for s, n in plan.items()))
            placed: list[tuple[str, str | None, int, int]] = []  # ticker, category, revision, shard
            for shard, take in zip(plan, taken, strict=True):
                placed += [(t, c, rev, shard) for t, c, rev in pending[len(placed):len(placed) + take]]
            pending = pending[len(placed):]
            retry, won = await self._claim(placed, result)
            pending = retry + pending
            joins += [self._join(shard, t, c) for t, c, shard in won]
            joins += [KvWrite(self._waiting(t), b"", self.registry.purge_headers()) for t, _, _ in won if t in waited]
            await self._write(joins, "membership")
            joins = []
            if not pending:
                break
        await self._write(joins, "membership")
        if pending:
            # No room, or the rounds ran out while racing writers held slots they gave back later: a
            # market one of them claimed meanwhile is reported with its shard rather than as waiting.
            claims = await asyncio.gather(*(self.registry.leader_claim(t) for t, _, _ in pending))
            for (ticker, _, _), (owner, _) in zip(pending, claims, strict=True):
                result[ticker] = owner
        return result

    async def _read(self, subjects: list[str]) -> tuple[ShardLayout, dict[int, tuple[int, int | None]],
                                                        dict[str, KeyRecord]]:
        """Layout, counters ((value, revision) per shard) and ``subjects`` in one batched read (two
        when the layout has grown past the shards this registry has seen)."""
        known = self.registry.shards_seen
        layout_subject = f"{self.prefix}layout"
        found = await last_messages(self.nc, self.stream, [layout_subject] + [self._load(s) for s in range(known)]
                                    + subjects, direct=self.registry.direct_gets)
        record = found.get(layout_subject)
        if record is None or record.deleted:
            raise KeyNotFoundError
        data = orjson.loads(record.value or b"{}")
        layout = ShardLayout(int(data["shards"]), int(data["capacity"]))
        if layout.shards > known:
            grown = [self._load(s) for s in range(known, layout.shards)]
            found.update(await last_messages(self.nc, self.stream, grown, direct=self.registry.direct_gets))
            self.registry.shards_seen = layout.shards
        loads: dict[int, tuple[int, int | None]] = {}
        for shard in range(layout.shards):
            counter = found.get(self._load(shard))
            live = counter is not None and not counter.deleted
            loads[shard] = (int(counter.value or b"0"), counter.revision) if counter and live else (0, None)
        return layout, loads, found

    async def _claim(self, placed: list[tuple[str, str | None, int, int]],
                     result: dict[str, int | None]) -> tuple[list[Pending], list[tuple[str, str | None, int]]]:
        """Claim every placed market at once; returns (markets to try again, markets won with their shard)."""
        outcomes = await publish_all(self.nc, [compare_and_set(self._market(t), assignment_value(s, c), rev)
                                               for t, c, rev, s in placed])
        won: list[tuple[str, str | None, int]] = []
        conflicted: list[tuple[str, str | None, int]] = []
        for (ticker, category, _, shard), outcome in zip(placed, outcomes, strict=True):
            if outcome.ok:
                result[ticker] = shard
                won.append((ticker, category, shard))
            elif _conflict(outcome):
                conflicted.append((ticker, category, shard))
            else:
                raise _refused(outcome, f"claiming {ticker}")
        retry: list[Pending] = []
        give_back: dict[int, int] = {}
        if conflicted:
            claims = await asyncio.gather(*(self.registry.leader_claim(t) for t, _, _ in conflicted))
            for (ticker, category, shard), (claim, revision) in zip(conflicted, claims, strict=True):
                give_back[shard] = give_back.get(shard, 0) + 1
                if claim is not None:
                    result[ticker] = claim  # somebody else claimed it first
                else:
                    retry.append((ticker, category, revision))  # the key changed under us (a marker expired)
            await asyncio.gather(*(self.registry.give_back(shard, n) for shard, n in give_back.items()))
        return retry, won

    def _join(self, shard: int, ticker: str, category: str | None) -> KvWrite:
        return KvWrite(f"{self.prefix}shard.{shard}.{kv_token(ticker)}", membership_value(category))

    async def _write(self, writes: list[KvWrite], what: str) -> None:
        for write, outcome in zip(writes, await publish_all(self.nc, writes), strict=True):
            if not outcome.ok:
                raise _refused(outcome, f"{what} write {write.subject}")
