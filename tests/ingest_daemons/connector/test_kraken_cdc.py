"""Kraken's discovery path is its REST sync: a pair the exchange lists is written to the secmaster by
``ssmd secmaster sync --feed kraken``, CDC carries the row, the market's assigner puts it on a shard and
the connector's open socket subscribes it — no reconnect, no restart. A delisted pair is marked so by the
next sync and unsubscribed the same way. Each market's process takes only its own market type's rows.
Real nats-server, PostgreSQL and the Kraken simulators."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import nats
import pytest

from ingest_daemons.adapters.venues import KRAKEN_STATES
from ingest_daemons.connector.directory import build_directory
from ingest_daemons.connector.secmaster_catalog import load_catalog
from ingest_daemons.connector.session import VenueSession
from ingest_daemons.naming import cdc_stream_name, parse_subject
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher
from ingest_daemons.secmaster.kraken_sync import KrakenSyncOptions, sync_kraken
from ingest_daemons.shards import ShardRegistry
from ingest_daemons.sim.kraken import KrakenSimulator
from tests.fixtures.kalshi import StoredMessage
from tests.fixtures.kraken import KrakenBench, KrakenBenchFactory, KrakenSimFactory
from tests.helpers import wait_until

SPOT_REST = "/0/public"
FUTURES_REST = "/derivatives/api/v3"


def held(sim: KrakenSimulator) -> dict[str, set[str]]:
    """Channel/feed → symbols the simulator's open connections have subscribed."""
    out: dict[str, set[str]] = {}
    for subs in sim.subscriptions().values():
        for channel, symbols in subs.items():
            out.setdefault(channel, set()).update(symbols)
    return out


def held_everywhere(bench: KrakenBench, symbol: str) -> bool:
    """Subscribed on every data channel the connector runs."""
    subs = held(bench.sim)
    return all(symbol in subs.get(channel, set()) for channel in bench.connector.channels)


def held_anywhere(bench: KrakenBench, symbol: str) -> bool:
    return any(symbol in symbols for symbols in held(bench.sim).values())


def frames_of(bench: KrakenBench, symbol: str) -> int:
    return sum(1 for f in bench.sim.sent_frames if f.kind == "data" and f.symbol == symbol)


@contextlib.asynccontextmanager
async def cdc_publisher(bench: KrakenBench, database_url: str) -> AsyncIterator[None]:
    """``ssmd cdc`` in-process: every committed secmaster change into the environment's CDC stream."""
    stop = asyncio.Event()
    cdc = CdcPublisher(CdcOptions(env=bench.env.name, database_url=database_url, nats_url=bench.nats_url,
                                  poll_interval_s=0.05))
    task = asyncio.create_task(cdc.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def following_bench(kraken_bench: KrakenBenchFactory, market: str, database_url: str) -> KrakenBench:
    """A connector for ``market`` that takes its symbols from the secmaster and its CDC stream (what
    ``ssmd connector --feed kraken --market M --follow-cdc`` builds), not started."""
    bench = await kraken_bench(market, start_connector=False, use_registry=True, follow_cdc=True,
                               markets_from_secmaster=True)
    connector = bench.connector
    connector.candidates = []  # no REST listing at start: the secmaster is the list
    connector.directory = build_directory(bench.env.feeds["kraken"].stream_categories(), [])
    connector.catalog_loader = lambda: load_catalog(database_url, "kraken", KRAKEN_STATES, market)
    return bench


async def sync(bench: KrakenBench, database_url: str, rest: dict[str, str]) -> int:
    """``ssmd secmaster sync --feed kraken``; returns how many rows it changed (one CDC message each)."""
    report = await sync_kraken(database_url, rest, bench.env.feeds["kraken"].feed.category_for_tags,
                               KrakenSyncOptions(apply_migrations=False))
    return report.inserted + report.updated


async def wait_published(bench: KrakenBench, changes: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Until the CDC stream holds ``changes`` messages: rows synced before the connector starts are then
    behind its new consumer, so only its seed from the secmaster can bring them."""
    nc = await nats.connect(bench.nats_url)
    try:
        deadline = time.monotonic() + timeout
        while (await nc.jetstream().stream_info(cdc_stream_name(bench.env.name))).state.messages < changes:
            assert time.monotonic() < deadline, f"the CDC stream did not reach {changes} changes"
            await asyncio.sleep(0.02)
    finally:
        await nc.close()


def after_unsubscribe(stored: list[StoredMessage], symbol: str, unsubscribed_at: int) -> list[StoredMessage]:
    """The symbol's data messages stored beyond the first ``unsubscribed_at`` of them."""
    mine = [m for m in stored if m.marker is None and parse_subject(m.subject).ticker == symbol]
    return mine[unsubscribed_at:]


@contextlib.asynccontextmanager
async def started_following(bench: KrakenBench, database_url: str, changes: int) -> AsyncIterator[
        tuple[ShardRegistry, VenueSession]]:
    """CDC publishing, the initial ``changes`` behind it, then the connector started and holding every
    listed symbol: yields its registry and its one session."""
    first = bench.sim.symbols
    async with cdc_publisher(bench, database_url):
        await wait_published(bench, changes)
        await bench.connector.start()
        await bench.sim.wait_for(lambda: all(held_everywhere(bench, s) for s in first), 10)
        registry = bench.connector.registry
        assert registry is not None and registry.feed == f"kraken.{bench.connector.options.market}"
        yield registry, bench.connector.sessions[0]


async def test_a_listed_pair_is_subscribed_live_and_a_delisted_one_unsubscribed(
    kraken_bench: KrakenBenchFactory, secmaster_db: str
) -> None:
    bench = await following_bench(kraken_bench, "spot", secmaster_db)
    rest = {"spot": bench.sim.rest_url + SPOT_REST}
    initial = await sync(bench, secmaster_db, rest)
    first = bench.sim.symbols
    async with started_following(bench, secmaster_db, initial) as (registry, session):

        new = bench.sim.list_symbol()  # the exchange lists a pair: REST has it, the socket accepts it
        assert "/" in new
        await sync(bench, secmaster_db, rest)
        await bench.sim.wait_for(lambda: held_everywhere(bench, new), 10)
        assert await registry.shard_of(new) == 0
        await wait_until(lambda: frames_of(bench, new) >= 5, 10, "the new pair's first frames")

        bench.sim.delist(new)
        await sync(bench, secmaster_db, rest)
        await bench.sim.wait_for(lambda: not held_anywhere(bench, new), 10)
        sent_until_unsubscribed = frames_of(bench, new)
        assert await registry.shard_of(new) is None, "the slot is given back"
        others = sum(frames_of(bench, s) for s in first)
        await wait_until(lambda: sum(frames_of(bench, s) for s in first) >= others + 50, 10,
                         "more frames of the other pairs")
        assert frames_of(bench, new) == sent_until_unsubscribed, "the exchange sends the delisted pair no more"
        assert session.sockets_opened == 1 and len(bench.connector.sessions) == 1, "no reconnect, no new socket"
        stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    new_frames = [m for m in data if parse_subject(m.subject).ticker == new]
    assert len(new_frames) == sent_until_unsubscribed >= 5, "every frame of the new pair stored, once"
    assert {parse_subject(m.subject).category for m in new_frames} == {"spot"}
    assert {m.subject.split(".")[-1] for m in new_frames} == {new.replace("/", "%2F")}
    assert after_unsubscribe(data, new, sent_until_unsubscribed) == []


async def test_futures_takes_only_futures_rows_and_follows_listing_and_delisting(
    kraken_bench: KrakenBenchFactory, kraken_sim: KrakenSimFactory, secmaster_db: str
) -> None:
    bench = await following_bench(kraken_bench, "futures", secmaster_db)
    spot = await kraken_sim("spot", pairs=3, rate=1.0)  # only its REST listing is read
    rest = {"spot": spot.rest_url + SPOT_REST, "futures": bench.sim.rest_url + FUTURES_REST}
    initial = await sync(bench, secmaster_db, rest)  # both markets' rows in one secmaster
    first = bench.sim.symbols
    async with started_following(bench, secmaster_db, initial) as (registry, session):

        new_pair, new_product = spot.list_symbol(), bench.sim.list_symbol()
        await sync(bench, secmaster_db, rest)
        await bench.sim.wait_for(lambda: held_everywhere(bench, new_product), 10)
        await wait_until(lambda: frames_of(bench, new_product) >= 5, 10, "the new product's first frames")

        bench.sim.delist(new_product)
        await sync(bench, secmaster_db, rest)
        await bench.sim.wait_for(lambda: not held_anywhere(bench, new_product), 10)
        sent_until_unsubscribed = frames_of(bench, new_product)
        others = sum(frames_of(bench, s) for s in first)
        await wait_until(lambda: sum(frames_of(bench, s) for s in first) >= others + 50, 10,
                         "more frames of the other products")
        assert frames_of(bench, new_product) == sent_until_unsubscribed
        assert session.sockets_opened == 1 and len(bench.connector.sessions) == 1, "no reconnect, no new socket"
        spot_symbols = set(spot.symbols) | {new_pair}
        assert [await registry.shard_of(s) for s in sorted(spot_symbols)] == [None] * len(spot_symbols), \
            "no spot pair assigned"
        named = {str(p) for _, c in bench.sim.commands for p in c.get("product_ids", [])}
        assert not named & spot_symbols, "the futures socket was never asked for a spot pair"
        stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    new_frames = [m for m in data if parse_subject(m.subject).ticker == new_product]
    assert len(new_frames) == sent_until_unsubscribed >= 5
    assert {parse_subject(m.subject).category for m in new_frames} == {"futures"}


@pytest.mark.timeout(180)
async def test_cli_follow_cdc_takes_the_secmaster_symbols_and_subscribes_a_listed_pair_live(
    kraken_bench: KrakenBenchFactory, secmaster_db: str
) -> None:
    """``ssmd connector --feed kraken --market spot --follow-cdc``: no REST listing at start, the secmaster's
    pairs subscribed, a pair synced later added on the open socket; SIGTERM drains."""
    bench = await kraken_bench("spot", start_connector=False)
    rest = {"spot": bench.sim.rest_url + SPOT_REST}
    initial = await sync(bench, secmaster_db, rest)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "SSMD_", "DATABASE_URL", "NATS_"))}
    env.update(SSMD_EXCHANGES_DIR=str(bench.env.settings.exchanges_dir), SSMD_DATA_DIR=str(bench.env.data_dir))
    async with cdc_publisher(bench, secmaster_db):
        await wait_published(bench, initial)
        listings_read = len(bench.sim.rest_requests)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingest_daemons.cli", "connector", "--env", bench.env.name, "--feed", "kraken",
            "--market", "spot", "--follow-cdc", "--database-url", secmaster_db, "--metrics-port", "0",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            # An interpreter starts on a loaded machine: that takes a while.
            await bench.sim.wait_for(lambda: all(held_everywhere(bench, s) for s in bench.sim.symbols), 90)
            new = bench.sim.list_symbol()
            await sync(bench, secmaster_db, rest)
            await bench.sim.wait_for(lambda: held_everywhere(bench, new), 20)
            assert bench.sim.connection_count == 1, "added on the open socket"
            proc.send_signal(signal.SIGTERM)
            output = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, output[-3000:]
    assert "every frame acknowledged" in output
    assert len(bench.sim.rest_requests) == listings_read + 1, "the connector read no REST listing (the sync did)"
    assert "symbols come from the secmaster" in output and "market=spot" in output
    assert secmaster_db.split("@")[0].split(":")[-1] not in output, "no database password in the log"
