"""Persistent shard assignments in a NATS KV bucket, one bucket per environment.

Keys (``{feed}`` is the feed name; tickers are escaped into KV-safe tokens, see :func:`kv_token`):

* ``{feed}.layout`` — ``{"shards": N, "capacity": C}``: how many shards exist; grows by one when a
  headroom shard is opened.
* ``{feed}.load.{i}`` — number of markets assigned to shard ``i`` (a reservation counter).
* ``{feed}.market.{token}`` — the claim: the shard a market is assigned to (and its category).
* ``{feed}.shard.{i}.{token}`` — shard ``i``'s membership: one key per market it owns, value the
  category slug. A connector reads and follows only its own ``shard.{i}.>`` keys, so a burst of
  assignments costs each shard its own markets, not every market of the feed.
* ``{feed}.waiting.{token}`` — a market that passed the filter but found no shard with room.
* ``{feed}.heartbeat.{i}`` — the owning connector's state (markets, msgs/s, last message age, time).
* ``{feed}.load_repair`` — the last time the assigner found a load counter off its membership keys
  and repaired it (:mod:`ingest_daemons.shard_load`).

Keys are removed with a purge marker that carries a TTL (``DELETE_MARKER_TTL``): it tells live
followers the key is gone, replaces the key's last value (``history=1``), and then expires, so a
registry that sees hundreds of thousands of markets come and go does not keep one tombstone per
market forever. Listings page through any number of keys (:mod:`ingest_daemons.kv_scan`).

Every write that decides something is a compare-and-set: a slot is first *reserved* by moving
``load.{i}`` from the revision we read to +1, then the market is *claimed* with a create-only put of
``market.{token}``. Two writers racing can therefore never assign one market twice nor push a shard
past its capacity; the loser of a claim gives its reservation back. The membership key is written
after the claim and deleted before it, and both writes are idempotent, so a writer that dies
between them is repaired by the next :meth:`ShardRegistry.assign_many` / :meth:`ShardRegistry.release`
of that market (the CDC follower acks a change only after handling it). A market for which no shard
has room is not dropped: :meth:`ShardRegistry.assign` returns ``None`` and the caller counts it as
waiting until a headroom shard exists. A burst goes through :meth:`ShardRegistry.assign_many`, which
takes the same steps for all its markets at once (:mod:`ingest_daemons.shard_assign`); key names and
values are in :mod:`ingest_daemons.shard_keys`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from ingest_daemons.kv_batch import KvWrite, allow_direct_get, publish_all
from ingest_daemons.kv_scan import is_delete_marker, scan_last_per_subject
from ingest_daemons.logs import get_logger
from ingest_daemons.shard_assign import BurstAssignment
from ingest_daemons.shard_keys import (
    WRONG_LAST_SEQUENCE,
    ShardLayout,
    ShardState,
    assignment_value,
    bucket_name,
    kv_token,
    membership_value,
    parse_assignment,
    registry_feed,
    ticker_of,
)

__all__ = [
    "DELETE_MARKER_TTL_S", "ShardLayout", "ShardRegistry", "ShardState", "assignment_value", "bucket_name",
    "kv_token", "membership_value", "parse_assignment", "registry_feed", "ticker_of",
]

log = get_logger("ssmd.shards")

DEFAULT_CAS_ATTEMPTS = 200
FULL_PASSES = 4  # passes over the shards before a market is reported as waiting


# How long a removed key's purge marker stays: long enough for a follower that lost its connection
# to hear of the removal when it resumes; after that a restarted connector reads members() instead.
DELETE_MARKER_TTL_S = 24 * 3600


def _conflict(exc: Exception) -> bool:
    # nats-py raises KeyWrongLastSequenceError, or (from create's own retry path) a plain
    # BadRequestError carrying JetStream's "wrong last sequence" code.
    return isinstance(exc, KeyWrongLastSequenceError) or (
        isinstance(exc, APIError) and exc.err_code == WRONG_LAST_SEQUENCE
    )


class ShardRegistry:
    """Assignments for one feed of one environment."""

    def __init__(self, js: JetStreamContext, kv: KeyValue, bucket: str, feed: str) -> None:
        self.js = js
        self.kv = kv
        self.bucket = bucket
        self.feed = feed
        self.delete_marker_ttl_s = DELETE_MARKER_TTL_S
        self.shards_seen = 0  # shards whose counters a burst reads in its first request (more: a second read)
        self.direct_gets = True  # the bucket's stream answers batched direct gets (set by open)

    @classmethod
    async def open(cls, js: JetStreamContext, env: str, feed: str, replicas: int = 1, *,
                   switch_on_direct_gets: bool = True) -> ShardRegistry:
        """The registry, creating its bucket when missing.

        ``switch_on_direct_gets`` False for a role without stream administration (the connectors): a
        bucket created before direct gets were asked for is read one key per request from the start,
        rather than after the server has refused the update by letting it time out. A bucket this
        call creates gets them either way (whoever may create it may configure it).
        """
        created = False
        try:
            kv = await js.key_value(bucket_name(env))
        except (BucketNotFoundError, NotFoundError):
            kv = await js.create_key_value(bucket=bucket_name(env), history=1, replicas=replicas,
                                           description=f"ssmd {env}: shard assignments and heartbeats")
            created = True
        await _allow_marker_ttl(js, f"KV_{bucket_name(env)}")
        registry = cls(js, kv, bucket_name(env), feed)
        # batched reads (ingest_daemons.kv_batch)
        registry.direct_gets = await allow_direct_get(js, f"KV_{bucket_name(env)}", switch_on_direct_gets or created)
        return registry

    # ------------------------------------------------------------------ layout

    async def ensure_layout(self, shards: int, capacity: int) -> ShardLayout:
        """Create the layout if missing (first writer wins); returns what is stored."""
        try:
            await self.kv.create(f"{self.feed}.layout", orjson.dumps({"shards": shards, "capacity": capacity}))
        except APIError as exc:
            if not _conflict(exc):
                raise
        return await self.layout()

    async def layout(self) -> ShardLayout:
        entry = await self.kv.get(f"{self.feed}.layout")
        data = orjson.loads(entry.value or b"{}")
        return ShardLayout(int(data["shards"]), int(data["capacity"]))

    async def open_headroom_shard(self, expected_shards: int) -> ShardLayout:
        """Add one shard if the layout still has ``expected_shards`` (so a retried request adds only one)."""
        for _ in range(DEFAULT_CAS_ATTEMPTS):
            entry = await self.kv.get(f"{self.feed}.layout")
            data = orjson.loads(entry.value or b"{}")
            if int(data["shards"]) != expected_shards:
                return ShardLayout(int(data["shards"]), int(data["capacity"]))
            data["shards"] = expected_shards + 1
            try:
                await self.kv.update(f"{self.feed}.layout", orjson.dumps(data), last=entry.revision)
                log.info("headroom shard opened", feed=self.feed, shard=expected_shards, shards=expected_shards + 1)
                return ShardLayout(expected_shards + 1, int(data["capacity"]))
            except APIError as exc:
                if not _conflict(exc):
                    raise
                continue
        raise RuntimeError("could not update the shard layout (too much contention)")

    # ------------------------------------------------------------------ assignment

    async def shard_of(self, ticker: str) -> int | None:
        claim = await self._claim_of(ticker)
        return claim[0] if claim else None

    async def _claim_of(self, ticker: str) -> tuple[int, str | None] | None:
        try:
            entry = await self.kv.get(f"{self.feed}.market.{kv_token(ticker)}")
        except KeyNotFoundError:
            return None
        return parse_assignment(entry.value) if entry.value else None

    async def _load(self, shard: int) -> tuple[int, int | None]:
        """(load, revision); revision None when the counter does not exist yet."""
        try:
            entry = await self.kv.get(f"{self.feed}.load.{shard}")
        except KeyNotFoundError:
            return 0, None
        return int(entry.value or b"0"), entry.revision

    async def load_entry(self, shard: int) -> tuple[int, int | None]:
        """Shard ``shard``'s reservation counter and its revision (None: never written)."""
        return await self._load(shard)

    async def set_load(self, shard: int, value: int, revision: int | None) -> bool:
        """Set the counter if it is still at ``revision``; False when somebody moved it first."""
        key = f"{self.feed}.load.{shard}"
        try:
            if revision is None:
                await self.kv.create(key, str(value).encode())
            else:
                await self.kv.update(key, str(value).encode(), last=revision)
        except APIError as exc:
            if not _conflict(exc):
                raise
            return False
        return True

    async def record_load_repair(self, repairs: list[dict[str, int]], ts: float) -> None:
        """What the last counter repair changed, for the Dagster check (``{feed}.load_repair``)."""
        await self.kv.put(f"{self.feed}.load_repair", orjson.dumps({"ts": ts, "repairs": repairs}))

    async def last_load_repair(self) -> dict[str, Any] | None:
        try:
            entry = await self.kv.get(f"{self.feed}.load_repair")
        except KeyNotFoundError:
            return None
        data = orjson.loads(entry.value or b"null")
        return data if isinstance(data, dict) else None

    async def _adjust_load(self, shard: int, delta: int, limit: int | None) -> bool:
        """CAS ``load += delta``; refuse (False) when it would pass ``limit``."""
        key = f"{self.feed}.load.{shard}"
        for attempt in range(DEFAULT_CAS_ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0, 0.001 * min(attempt, 20)))  # jitter breaks lock-step retries
            load, revision = await self._load(shard)
            if limit is not None and load + delta > limit:
                return False
            try:
                if revision is None:
                    await self.kv.create(key, str(load + delta).encode())
                else:
                    await self.kv.update(key, str(load + delta).encode(), last=revision)
                return True
            except APIError as exc:
                if not _conflict(exc):
                    raise
                continue
        raise RuntimeError(f"could not update {key} (too much contention)")

    async def assign(self, ticker: str, category: str | None = None) -> int | None:
        """The market's shard: existing assignment, else the last shard with room, else ``None`` (waiting)."""
        existing = await self.shard_of(ticker)
        if existing is not None:
            return existing
        for attempt in range(FULL_PASSES):
            if attempt:
                # Reservations of racing writers that lost their claim are given back within moments.
                await asyncio.sleep(0.01 * attempt)
            layout = await self.layout()
            for shard in self._candidates(layout):
                if not await self._adjust_load(shard, +1, layout.capacity):
                    continue
                try:
                    await self.kv.create(f"{self.feed}.market.{kv_token(ticker)}", assignment_value(shard, category))
                    await self._join(shard, ticker, category)
                    await self.clear_waiting(ticker)
                    return shard
                except APIError as exc:
                    if not _conflict(exc):
                        raise
                    await self._adjust_load(shard, -1, None)  # somebody else claimed it first
                    winner = await self.shard_of(ticker)
                    if winner is not None:
                        return winner
            claimed = await self.shard_of(ticker)
            if claimed is not None:
                return claimed
        # Every shard looked full — possibly only while racing writers held reservations they gave back,
        # one of them having claimed this very market: report that claim rather than "waiting".
        return await self.shard_of(ticker)

    async def assign_many(self, items: list[tuple[str, str | None]]) -> dict[str, int | None]:
        """:meth:`assign` for a burst, in a few round trips however many markets
        (:mod:`ingest_daemons.shard_assign`).

        Same guarantees (a market is claimed once, no shard passes its capacity); markets that find
        no room map to ``None``. Markets already claimed get their membership key written again
        (idempotent), which repairs a writer that died between claim and membership.
        """
        if not items:
            return {}
        return await BurstAssignment(self).run(items)

    async def _join(self, shard: int, ticker: str, category: str | None) -> None:
        """Write the market into shard ``shard``'s membership (what that shard's connector follows)."""
        await self.kv.put(f"{self.feed}.shard.{shard}.{kv_token(ticker)}", membership_value(category))

    async def _reserve(self, shard: int, wanted: int, capacity: int,
                       seen: tuple[int, int | None] | None = None) -> int:
        """Reserve up to ``wanted`` slots on ``shard`` in one compare-and-set; returns how many.

        ``seen``: the counter (value, revision) as just read, saving the first read; a racing
        writer costs a re-read and a retry with jitter.
        """
        for attempt in range(DEFAULT_CAS_ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
            load, revision = seen if seen is not None and not attempt else await self._load(shard)
            take = min(wanted, capacity - load)
            if take <= 0:
                return 0
            if await self.set_load(shard, load + take, revision):
                return take
        raise RuntimeError(f"could not update {self.feed}.load.{shard} (too much contention)")

    async def give_back(self, shard: int, slots: int) -> None:
        """Return ``slots`` reservations whose claims were lost to another writer."""
        await self._adjust_load(shard, -slots, None)

    async def leader_claim(self, ticker: str) -> tuple[int | None, int]:
        """(shard, revision) of the market's claim as the stream's leader holds it (never a lagging
        replica): after a claim lost its compare-and-set, this says who won. Shard ``None`` when the key
        is absent or removed; the revision is then the one a new claim must name (0: no message)."""
        try:
            msg = await self.js.get_msg(f"KV_{self.bucket}", subject=f"$KV.{self.bucket}.{self.feed}.market."
                                        f"{kv_token(ticker)}", direct=False)
        except NotFoundError:
            return None, 0
        if is_delete_marker(msg.headers) or not msg.data:
            return None, int(msg.seq or 0)
        return parse_assignment(msg.data)[0], int(msg.seq or 0)

    def purge_headers(self) -> dict[str, str]:
        """Headers of a purge marker that expires (see the module docstring)."""
        return {"KV-Operation": "PURGE", "Nats-Rollup": "sub", "Nats-TTL": f"{self.delete_marker_ttl_s}s"}

    @staticmethod
    def _candidates(layout: ShardLayout) -> list[int]:
        """The last shard first ("new markets go to the last shard with room"), then earlier ones."""
        return list(range(layout.shards - 1, -1, -1))

    async def mark_waiting(self, ticker: str, category: str | None = None) -> None:
        """Record a market that passed the filter but found no shard with room (alerted, retried).

        The category is kept so an assigner that restarts can retry the market without its history.
        """
        await self.kv.put(f"{self.feed}.waiting.{kv_token(ticker)}",
                          orjson.dumps({"ts": time.time(), "category": category}))

    async def mark_waiting_many(self, items: list[tuple[str, str | None]]) -> None:
        """:meth:`mark_waiting` for many markets at once (one wave of writes)."""
        now = time.time()
        writes = [KvWrite(f"$KV.{self.bucket}.{self.feed}.waiting.{kv_token(t)}",
                          orjson.dumps({"ts": now, "category": c})) for t, c in items]
        for write, outcome in zip(writes, await publish_all(self.js._nc, writes), strict=True):
            if not outcome.ok:
                raise APIError(description=f"marking {write.subject} waiting: {outcome.description}",
                               err_code=outcome.err_code)

    async def waiting(self) -> list[str]:
        return sorted(await self.waiting_markets())

    async def waiting_markets(self) -> dict[str, str | None]:
        """ticker → category slug of every waiting market."""
        live = await self._live_keys(f"$KV.{self.bucket}.{self.feed}.waiting.")
        out: dict[str, str | None] = {}
        for ticker, value in live.items():
            try:
                data = orjson.loads(value)
            except orjson.JSONDecodeError:
                data = None
            out[ticker] = data.get("category") if isinstance(data, dict) else None
        return out

    async def clear_waiting(self, ticker: str) -> None:
        with contextlib.suppress(KeyNotFoundError, KeyDeletedError):
            await self.kv.get(f"{self.feed}.waiting.{kv_token(ticker)}")  # only markets that waited get a tombstone
            await self._clear_waiting_key(ticker)

    async def _clear_waiting_key(self, ticker: str) -> None:
        await self._forget(f"{self.feed}.waiting.{kv_token(ticker)}")

    async def _forget(self, key: str, last: int | None = None) -> None:
        """Remove ``key`` with a purge marker that expires (``last``: only if still at that revision;
        a mismatch raises the same conflict as :meth:`KeyValue.update`)."""
        headers = self.purge_headers()
        if last:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(last)
        try:
            await self.js.publish(f"$KV.{self.bucket}.{key}", b"", headers=headers)
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise KeyWrongLastSequenceError(description=exc.description) from None
            raise

    async def _live_keys(self, prefix: str) -> dict[str, bytes]:
        """Tickers (decoded) → value of every non-deleted key under ``prefix`` (a ``$KV.`` subject prefix)."""
        found = await scan_last_per_subject(self.js, f"KV_{self.bucket}", prefix + ">")
        return {ticker_of(r.subject[len(prefix):]): r.value for r in found if not r.deleted and r.value}

    async def membership_counts(self) -> dict[int, int]:
        """shard → number of markets in its membership keys, from one headers-only listing."""
        prefix = f"$KV.{self.bucket}.{self.feed}.shard."
        counts: dict[int, int] = {}
        for record in await scan_last_per_subject(self.js, f"KV_{self.bucket}", prefix + ">", headers_only=True):
            shard = record.subject[len(prefix):].split(".", 1)[0]
            if not record.deleted and shard.isdigit():
                counts[int(shard)] = counts.get(int(shard), 0) + 1
        return counts

    async def release(self, ticker: str) -> int | None:
        """Forget a settled/closed market and give its slot back."""
        key = f"{self.feed}.market.{kv_token(ticker)}"
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        shard = parse_assignment(entry.value)[0]
        await self._forget(f"{self.feed}.shard.{shard}.{kv_token(ticker)}")  # the owner unsubscribes it
        try:
            await self._forget(key, last=entry.revision)
        except APIError as exc:
            if not _conflict(exc):
                raise
            return None
        await self._adjust_load(shard, -1, None)
        return shard

    async def members(self, shard: int) -> dict[str, str | None]:
        """ticker → category slug of shard ``shard``'s markets, from its membership keys only.

        A paged listing (:func:`scan_last_per_subject`) rather than nats-py's ``keys()`` watcher,
        which can report the end of the listing early under load.
        """
        live = await self._live_keys(f"$KV.{self.bucket}.{self.feed}.shard.{shard}.")
        return {ticker: orjson.loads(value).get("category") for ticker, value in live.items()}

    async def follow_shard(self, shard: int,
                           on_change: Callable[[str, bool, str | None], Awaitable[None]]) -> Any:
        """Call ``on_change(ticker, member, category)`` for every change to shard ``shard``'s markets.

        ``member`` is False when the market left the shard (released). An ordered consumer on the
        bucket's own stream filtered to this shard's keys, new messages only: a connector subscribes
        first and then reads :meth:`members`, so nothing falls between the two.
        """
        prefix = f"$KV.{self.bucket}.{self.feed}.shard.{shard}."

        async def handle(msg: Any) -> None:
            ticker = ticker_of(msg.subject[len(prefix):])
            if (msg.headers or {}).get("KV-Operation") in {"DEL", "PURGE"} or not msg.data:
                await on_change(ticker, False, None)
            else:
                await on_change(ticker, True, orjson.loads(msg.data).get("category"))

        return await self.js.subscribe(prefix + ">", cb=handle, ordered_consumer=True,
                                       deliver_policy=DeliverPolicy.NEW)

    # ------------------------------------------------------------------ heartbeats and status

    async def heartbeat(self, shard: int, **state: Any) -> None:
        await self.kv.put(f"{self.feed}.heartbeat.{shard}", orjson.dumps({"ts": time.time(), **state}))

    async def states(self) -> list[ShardState]:
        layout = await self.layout()
        states = []
        for shard in range(layout.shards):
            load, _ = await self._load(shard)
            try:
                entry = await self.kv.get(f"{self.feed}.heartbeat.{shard}")
                heartbeat = orjson.loads(entry.value) if entry.value else None
            except KeyNotFoundError:
                heartbeat = None
            states.append(ShardState(shard, load, layout.capacity, heartbeat))
        return states


async def _allow_marker_ttl(js: JetStreamContext, stream: str) -> None:
    """Per-message TTL (nats-server 2.11+) on a bucket created before it was asked for: the purge
    markers carry one. It can be switched on for an existing stream, never off."""
    info = await js.stream_info(stream)
    if info.config.allow_msg_ttl:
        return
    info.config.allow_msg_ttl = True
    await js.update_stream(info.config)
    log.info("per-message TTL enabled on the shard registry", stream=stream)
