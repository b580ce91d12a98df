"""Shard assignments in NATS KV against a real server: compare-and-set, capacity, restarts."""

from __future__ import annotations

import asyncio
from collections import Counter

import nats
from hypothesis import given
from hypothesis import strategies as st

from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.shards import ShardRegistry, kv_token, ticker_of
from tests.helpers import wait_until


@given(st.text())
def test_kv_tokens_round_trip(ticker: str) -> None:
    token = kv_token(ticker)
    assert all(c.isalnum() or c in "-_=" for c in token) and token.isascii()
    assert ticker_of(token) == ticker


async def test_new_markets_go_to_the_last_shard_with_room(nats_server: NatsServer, unique_env: str) -> None:
    nc = await nats.connect(nats_server.url)
    registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
    await registry.ensure_layout(shards=2, capacity=3)
    shards = [await registry.assign(f"KX-{i}.5") for i in range(6)]
    assert shards == [1, 1, 1, 0, 0, 0]
    assert await registry.assign("KX-overflow") is None, "no room: the market waits, it is not forced in"
    assert await registry.assign("KX-0.5") == 1, "an assigned market keeps its shard"
    assert await registry.open_headroom_shard(expected_shards=2) == (await registry.layout())
    assert (await registry.layout()).shards == 3
    assert await registry.assign("KX-overflow") == 2
    assert await registry.release("KX-0.5") == 1
    assert await registry.assign("KX-new") == 2, "the last shard with room first"
    states = {s.shard: s.load for s in await registry.states()}
    assert states == {0: 3, 1: 2, 2: 2}
    await nc.close()


async def test_headroom_request_retried_opens_one_shard(nats_server: NatsServer, unique_env: str) -> None:
    nc = await nats.connect(nats_server.url)
    registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
    await registry.ensure_layout(shards=1, capacity=10)
    results = await asyncio.gather(*(registry.open_headroom_shard(expected_shards=1) for _ in range(5)))
    assert {r.shards for r in results} == {2} and (await registry.layout()).shards == 2
    await nc.close()


async def test_racing_writers_never_double_assign(nats_server: NatsServer, unique_env: str) -> None:
    conns = [await nats.connect(nats_server.url) for _ in range(3)]
    registries = [await ShardRegistry.open(c.jetstream(), unique_env, "kalshi") for c in conns]
    await registries[0].ensure_layout(shards=4, capacity=30)
    tickers = [f"KXRACE-{i}" for i in range(110)]
    results = await asyncio.gather(*(r.assign(t) for t in tickers for r in registries))
    by_ticker: dict[str, set[int | None]] = {}
    for (ticker, _), shard in zip(((t, r) for t in tickers for r in registries), results, strict=True):
        by_ticker.setdefault(ticker, set()).add(shard)
    split = {t: s for t, s in by_ticker.items() if len(s) != 1}
    assert not split, f"every writer sees the same shard for a market: {split}"
    final = {t: next(iter(s)) for t, s in by_ticker.items()}
    counts = Counter(v for v in final.values() if v is not None)
    assert all(n <= 30 for n in counts.values())
    assert sum(counts.values()) == 110 and list(final.values()).count(None) == 0
    states = {s.shard: s.load for s in await registries[1].states()}
    assert states == dict(counts), "reservation counters match the assignments"

    restarted = await ShardRegistry.open(conns[2].jetstream(), unique_env, "kalshi")
    for shard in range(4):
        assert sorted(await restarted.members(shard)) == sorted(t for t, s in final.items() if s == shard)
    for c in conns:
        await c.close()


async def test_heartbeats(nats_server: NatsServer, unique_env: str) -> None:
    nc = await nats.connect(nats_server.url)
    registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
    await registry.ensure_layout(shards=1, capacity=5)
    await registry.heartbeat(0, markets=3, msgs_per_s=12.5, last_message_age_s=0.2)
    [state] = await registry.states()
    assert state.heartbeat is not None and state.heartbeat["markets"] == 3
    age = state.heartbeat_age_s()
    assert age is not None and 0 <= age < 5
    await nc.close()


async def test_shards_status_command(nats_server: NatsServer, unique_env: str, write_env, capsys) -> None:  # type: ignore[no-untyped-def]
    from ingest_daemons.cli.shards_cmd import _status, build_args

    nc = await nats.connect(nats_server.url)
    registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
    await registry.ensure_layout(shards=2, capacity=4)
    for i in range(5):
        await registry.assign(f"KXS-{i}")
    await registry.heartbeat(1, markets=4, msgs_per_s=9.5)
    await nc.close()
    root = write_env(unique_env, nats_url=nats_server.url, feeds={"kalshi": {}})
    assert await _status(build_args(env=unique_env, exchanges=str(root))) == 0
    out = capsys.readouterr().out
    assert "2 shard(s)" in out
    assert "4/4" in out and "1/4" in out and "100%" in out and "never" in out


async def test_waiting_markets_are_assigned_once_headroom_exists(nats_server: NatsServer, unique_env: str) -> None:
    from ingest_daemons.config.models import EnvironmentFeedConfig
    from ingest_daemons.connector.cdc_follower import CdcFollower, SecmasterView
    from ingest_daemons.connector.directory import MarketDirectory

    nc = await nats.connect(nats_server.url)
    registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
    await registry.ensure_layout(shards=1, capacity=1)
    await registry.assign("KX-FULL")
    seen: list[tuple[int, str, bool, str | None]] = []

    def recorder(shard: int):  # type: ignore[no-untyped-def]
        async def record(ticker: str, member: bool, category: str | None) -> None:
            seen.append((shard, ticker, member, category))
        return record

    for shard in (0, 1):
        await registry.follow_shard(shard, recorder(shard))
    assigner = CdcFollower(nc, unique_env, EnvironmentFeedConfig(), SecmasterView("kalshi"), registry,
                           MarketDirectory())
    change = {"table": "markets", "op": "insert", "row": {"feed": "kalshi", "ticker": "KX-WAIT", "status": "active",
                                                          "event_ticker": "KX"}}
    await assigner.handle(change)
    assert assigner.waiting == {"KX-WAIT": "uncategorized"} and await registry.waiting() == ["KX-WAIT"]
    gone = {"table": "markets", "op": "insert", "row": {"feed": "kalshi", "ticker": "KX-GONE", "status": "active",
                                                        "event_ticker": "KX"}}
    await assigner.handle(gone)
    assert await registry.waiting() == ["KX-GONE", "KX-WAIT"]
    await assigner.handle({**gone, "op": "update", "row": {**gone["row"], "status": "settled"}})  # type: ignore[dict-item]
    assert "KX-GONE" not in assigner.waiting
    assert await registry.waiting() == ["KX-WAIT"], "a settled market stops waiting"
    restarted = CdcFollower(nc, unique_env, EnvironmentFeedConfig(), SecmasterView("kalshi"), registry,
                            MarketDirectory())
    assert await registry.waiting_markets() == {"KX-WAIT": "uncategorized"}, "a restarted assigner finds it in KV"
    await registry.open_headroom_shard(expected_shards=1)
    restarted.waiting.update(await registry.waiting_markets())
    await restarted.retry_waiting()
    assert not restarted.waiting and await registry.waiting() == []
    assert await registry.shard_of("KX-WAIT") == 1
    await wait_until(lambda: (1, "KX-WAIT", True, "uncategorized") in seen, 5, "the owner to hear of it")
    assert [s for s in seen if s[1] == "KX-WAIT"] == [(1, "KX-WAIT", True, "uncategorized")], "only the owner"
    assert await registry.members(1) == {"KX-WAIT": "uncategorized"} and list(await registry.members(0)) == ["KX-FULL"]

    finished = {"table": "markets", "op": "update", "row": {"feed": "kalshi", "ticker": "KX-WAIT",
                                                            "status": "settled", "event_ticker": "KX"}}
    await restarted.handle(finished)
    await wait_until(lambda: (1, "KX-WAIT", False, None) in seen, 5, "the owner to hear of the release")
    assert await registry.members(1) == {} and await registry.shard_of("KX-WAIT") is None
    assert {s.shard: s.load for s in await registry.states()} == {0: 1, 1: 0}
    await nc.close()


async def test_membership_repaired_after_a_writer_died_between_claim_and_membership(
    nats_server: NatsServer, unique_env: str
) -> None:
    nc = await nats.connect(nats_server.url)
    registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
    await registry.ensure_layout(shards=2, capacity=5)
    assert await registry.assign("KX-HALF", "economics") == 1
    await registry.kv.delete("kalshi.shard.1.KX-HALF")  # as if the writer died after the claim
    assert await registry.members(1) == {}
    assert await registry.assign_many([("KX-HALF", "economics")]) == {"KX-HALF": 1}, "the claim stands"
    assert await registry.members(1) == {"KX-HALF": "economics"}, "the retried change rewrote the membership"
    assert {s.shard: s.load for s in await registry.states()} == {0: 0, 1: 1}, "no second reservation"
    await nc.close()


async def test_assign_many_respects_capacity_and_existing_claims(nats_server: NatsServer, unique_env: str) -> None:
    nc = await nats.connect(nats_server.url)
    registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
    await registry.ensure_layout(shards=3, capacity=4)
    assert await registry.assign("KXM-1") == 2
    result = await registry.assign_many([(f"KXM-{i}", "economics") for i in range(13)])
    assert result["KXM-1"] == 2, "an existing assignment is kept"
    counts = Counter(v for v in result.values())
    assert counts == {2: 4, 1: 4, 0: 4, None: 1}, counts  # 12 slots in all: one market waits
    assert {s.shard: s.load for s in await registry.states()} == {0: 4, 1: 4, 2: 4}
    assert (await registry.members(result["KXM-5"]))["KXM-5"] == "economics"  # type: ignore[index]
    await nc.close()
