"""The shard registry at scale and after crashes, against a real nats-server: listings of any size,
removed keys that do not pile up, and load counters that leak when a writer dies and get repaired."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time

import nats
import pytest
from nats.aio.client import Client
from nats.js import api as js_api

from ingest_daemons import naming
from ingest_daemons.config.models import EnvironmentFeedConfig
from ingest_daemons.connector.cdc_follower import CdcFollower, SecmasterView
from ingest_daemons.connector.directory import MarketDirectory
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.publisher import JetStreamPublisher, header_block
from ingest_daemons.shards import ShardRegistry, bucket_name, kv_token, membership_value
from tests.helpers import wait_until


async def _put_membership_keys(url: str, bucket: str, shard: int, tickers: list[str]) -> None:
    """Many membership keys quickly: pipelined, acknowledged publishes straight into the bucket's stream."""
    publisher = JetStreamPublisher(url, max_in_flight=5_000)
    await publisher.start()
    try:
        value, headers = membership_value("economics"), header_block({})
        for ticker in tickers:
            await publisher.publish(f"$KV.{bucket}.kalshi.shard.{shard}.{kv_token(ticker)}", value, headers)
        assert await publisher.drain(60), "the keys were not all acknowledged"
    finally:
        await publisher.close()


@pytest.mark.slow  # ~25 s here, most of it writing the keys
async def test_listing_pages_through_120000_keys(nats_server: NatsServer, unique_env: str) -> None:
    """The server answers a subjects listing with at most 100,000 subjects; every key must still be found."""
    nc = await nats.connect(nats_server.url)
    try:
        registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
        await registry.ensure_layout(shards=1, capacity=200_000)
        tickers = [f"KX-{i}" for i in range(120_000)]
        await _put_membership_keys(nats_server.url, bucket_name(unique_env), 0, tickers)
        for gone in ("KX-1", "KX-2"):  # removed keys are not listed
            await registry.kv.delete(f"kalshi.shard.0.{kv_token(gone)}")
        started = time.monotonic()
        members = await registry.members(0)
        listed = time.monotonic() - started
        assert len(members) == 119_998 and "KX-119999" in members and "KX-1" not in members
        assert members["KX-0"] == "economics"
        started = time.monotonic()
        assert await registry.membership_counts() == {0: 119_998}
        print(f"members(): {listed:.1f} s with values; membership_counts(): {time.monotonic() - started:.1f} s "
              "headers only")
    finally:
        await nc.close()


async def test_listing_pages_in_batches(nats_server: NatsServer, unique_env: str) -> None:
    """Several pull batches, values and headers-only alike, and an empty range."""
    from ingest_daemons.kv_scan import scan_last_per_subject

    nc = await nats.connect(nats_server.url)
    try:
        registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
        tickers = [f"KX-{i}" for i in range(2_500)]
        await _put_membership_keys(nats_server.url, bucket_name(unique_env), 3, tickers)
        await registry._join(3, "KX-0", "sports")  # a second revision: only the latest is listed
        stream, prefix = f"KV_{bucket_name(unique_env)}", f"$KV.{bucket_name(unique_env)}.kalshi.shard.3."
        full = await scan_last_per_subject(nc.jetstream(), stream, prefix + ">", batch=300)
        bare = await scan_last_per_subject(nc.jetstream(), stream, prefix + ">", batch=1000, headers_only=True)
        assert sorted(r.subject for r in full) == sorted(r.subject for r in bare) == sorted(prefix + t for t in tickers)
        assert {r.subject: r.value for r in full}[prefix + "KX-0"] == membership_value("sports")
        assert all(r.value == b"" for r in bare)
        assert await scan_last_per_subject(nc.jetstream(), stream, prefix[:-2] + "9.>") == []
    finally:
        await nc.close()


async def _subjects(nc: Client, bucket: str, prefix: str) -> list[str]:
    info = await nc.jetstream().stream_info(f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.{prefix}>")
    return sorted((info.state.subjects or {}).keys())


async def test_removed_keys_leave_markers_that_expire(nats_server: NatsServer, unique_env: str) -> None:
    """A released market's claim and membership, and a waiting market's key once assigned, are gone for good
    after the marker TTL: a registry that sees markets come and go keeps no tombstone per market."""
    nc = await nats.connect(nats_server.url)
    try:
        registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
        registry.delete_marker_ttl_s = 1
        await registry.ensure_layout(shards=1, capacity=5)
        bucket = bucket_name(unique_env)
        seen: list[tuple[str, bool]] = []

        async def record(ticker: str, member: bool, category: str | None) -> None:
            seen.append((ticker, member))

        await registry.follow_shard(0, record)
        await registry.mark_waiting("KX-W", "economics")
        assert await registry.assign_many([("KX-W", "economics"), ("KX-A", None)]) == {"KX-W": 0, "KX-A": 0}
        assert await registry.release("KX-A") == 0
        assert await registry.waiting() == [] and await registry.shard_of("KX-A") is None
        await wait_until(lambda: ("KX-A", False) in seen, 5, "the owner to hear of the release")
        gone = [f"$KV.{bucket}.kalshi.market.KX-A", f"$KV.{bucket}.kalshi.shard.0.KX-A",
                f"$KV.{bucket}.kalshi.waiting.KX-W"]
        deadline = time.monotonic() + 15
        left = gone
        while time.monotonic() < deadline:
            left = [s for s in gone if s in await _subjects(nc, bucket, "kalshi.")]
            if not left:
                break
            await asyncio.sleep(0.1)
        assert not left, f"removal markers never expired: {left}"
        assert await registry.assign("KX-A") == 0, "a released market can come back"
        assert {s.shard: s.load for s in await registry.states()} == {0: 2}
    finally:
        await nc.close()


async def test_a_bucket_created_without_message_ttl_gets_it(nats_server: NatsServer, unique_env: str) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        bucket = bucket_name(unique_env)
        await js.add_stream(js_api.StreamConfig(
            name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"], max_msgs_per_subject=1, allow_rollup_hdrs=True,
            deny_delete=True, discard=js_api.DiscardPolicy.NEW, allow_direct=True))
        registry = await ShardRegistry.open(js, unique_env, "kalshi")
        assert (await js.stream_info(f"KV_{bucket}")).config.allow_msg_ttl
        await registry.ensure_layout(shards=1, capacity=5)
        await registry.assign("KX-T")
        assert await registry.release("KX-T") == 0
    finally:
        await nc.close()


# A writer that stops for good at one step of its work: the test kills it there.
_HALF_WAY = textwrap.dedent("""
    import asyncio, sys
    import nats
    from ingest_daemons.shards import ShardRegistry

    async def main(url, env, step):
        nc = await nats.connect(url)
        registry = await ShardRegistry.open(nc.jetstream(), env, "kalshi")

        def stop_after(method, when):
            async def wrapped(*args):
                if step == "release" and when(*args):
                    print("half-way", flush=True)  # the claim is deleted; the slot is not given back yet
                    await asyncio.sleep(3600)
                result = await method(*args)
                if step == "assign" and when(*args):
                    print("half-way", flush=True)  # slots reserved; no market claimed yet
                    await asyncio.sleep(3600)
                return result
            return wrapped

        if step == "assign":
            registry._reserve = stop_after(registry._reserve, lambda *a: True)
            await registry.assign_many([("KX-N1", None), ("KX-N2", None), ("KX-N3", None)])
        else:
            registry._adjust_load = stop_after(registry._adjust_load, lambda shard, delta, limit: delta < 0)
            await registry.release("KX-OLD")

    asyncio.run(main(*sys.argv[1:]))
""")


async def _kill_half_way(url: str, env: str, step: str) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _HALF_WAY, url, env, step,
                                                stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"half-way", line
    finally:
        proc.kill()
        await proc.wait()


@pytest.mark.parametrize("step", ["assign", "release"])
async def test_a_writer_killed_half_way_leaks_load_that_the_assigner_repairs(
    nats_server: NatsServer, unique_env: str, step: str
) -> None:
    """SIGKILL after reserving slots (before any claim), or after deleting a claim (before giving the slot
    back): the counter says more than the shard owns. The assigner puts it right from the membership keys."""
    nc = await nats.connect(nats_server.url)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        js = nc.jetstream()
        await js.add_stream(js_api.StreamConfig(name=naming.cdc_stream_name(unique_env),
                                                subjects=[f"{unique_env}.{naming.CDC_FEED}.cdc.>"]))
        registry = await ShardRegistry.open(js, unique_env, "kalshi")
        await registry.ensure_layout(shards=2, capacity=10)
        assert await registry.assign_many([("KX-A", None), ("KX-B", None), ("KX-OLD", None)]) == \
            {"KX-A": 1, "KX-B": 1, "KX-OLD": 1}

        await _kill_half_way(nats_server.url, unique_env, step)
        loads = {s.shard: s.load for s in await registry.states()}
        expected_leak = {"assign": {0: 0, 1: 6}, "release": {0: 0, 1: 3}}[step]
        assert loads == expected_leak, "the kill left the counter above the shard's membership"
        truth = {1: 3 if step == "assign" else 2}
        assert len(await registry.members(1)) == truth[1]

        assigner = CdcFollower(nc, unique_env, EnvironmentFeedConfig(), SecmasterView("kalshi"), registry,
                               MarketDirectory())
        assigner.reconcile_interval_s = 0.2
        task = asyncio.create_task(assigner.run(stop))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if {s.shard: s.load for s in await registry.states()} == {0: 0, **truth}:
                break
            await asyncio.sleep(0.05)
        assert {s.shard: s.load for s in await registry.states()} == {0: 0, **truth}, "the counter was not repaired"
        assert assigner.reconciler.repairs == 1
        record = await registry.last_load_repair()
        assert record is not None and record["repairs"] == [{"shard": 1, "was": loads[1], "now": truth[1]}]
        # Once repaired, the slots are usable again and nothing else changes.
        passes = assigner.reconciler.passes
        await wait_until(lambda: assigner.reconciler.passes >= passes + 2, 10, "two more passes")
        assert assigner.reconciler.repairs == 1, "a healthy counter is left alone"
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 10)
        await nc.close()


async def test_a_reservation_in_progress_is_not_mistaken_for_a_leak(nats_server: NatsServer, unique_env: str) -> None:
    """A counter ahead of the membership keys for less than a pass (a writer between reserving and
    claiming) is not touched: the repair needs the same drift at the same revision twice."""
    from ingest_daemons.shard_load import LoadReconciler

    nc = await nats.connect(nats_server.url)
    try:
        registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
        await registry.ensure_layout(shards=1, capacity=10)
        reconciler = LoadReconciler(registry)
        assert await registry._reserve(0, 2, 10) == 2  # a writer reserved two slots ...
        assert await reconciler.run_once() == []  # ... and is seen half-way once
        for ticker in ("KX-1", "KX-2"):  # ... then finishes its claims
            await registry.kv.create(f"kalshi.market.{ticker}", b'{"shard": 0, "category": null}')
            await registry._join(0, ticker, None)
        assert await reconciler.run_once() == [] and await reconciler.run_once() == []
        assert {s.shard: s.load for s in await registry.states()} == {0: 2}
    finally:
        await nc.close()
