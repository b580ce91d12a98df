"""Polymarket's new_market / market_resolved applied to the secmaster in real time: the simulator announces,
the connector stores the announcement in {ENV}_POLYMARKET_LIFECYCLE, the lifecycle consumer (the same one
Kalshi's stream uses, with Polymarket's parser) writes the rows; real nats-server and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ingest_daemons.naming import parse_subject
from ingest_daemons.secmaster.db_roles import ServiceRole
from ingest_daemons.secmaster.lifecycle import LifecycleConsumer, LifecycleOptions
from ingest_daemons.secmaster.lifecycle_frames import APPLIED, UNCHANGED, RowsAnnounced
from ingest_daemons.secmaster.polymarket_lifecycle import parse_polymarket_frame
from ingest_daemons.secmaster.polymarket_sync import PolymarketSyncOptions, sync_polymarket
from tests.fixtures.polymarket import PolymarketBench, PolymarketBenchFactory
from tests.fixtures.postgres import AsService
from tests.helpers import wait_until

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SUBJECT = "dev.polymarket.lifecycle.json.lifecycle.0xabc"


def test_samples_become_rows_on_every_level(samples_dir: Path) -> None:
    [new] = [orjson.loads(line) for line in (samples_dir / "polymarket_new_market.jsonl").read_bytes().splitlines()
             if line.strip()]
    change = parse_polymarket_frame(SUBJECT, None, orjson.dumps(new), NOW)
    assert isinstance(change, RowsAnnounced) and change.market == new["market"]
    series, event, *tokens = change.upserts
    assert (series.table, series.key) == ("series", {"ticker": new["event_message"]["id"]})
    assert (event.table, event.key) == ("events", {"event_ticker": new["market"]})
    assert event.fill["series_ticker"] == new["event_message"]["id"] and event.fill["title"] == new["question"]
    assert [t.key["ticker"] for t in tokens] == new["assets_ids"]
    assert all(t.fill["status"] == "active" and not t.overwrite for t in tokens), "never overwrites a status"
    assert [t.fill["outcome"] for t in tokens] == new["outcomes"]

    [resolved] = [orjson.loads(line) for line in
                  (samples_dir / "polymarket_market_resolved.jsonl").read_bytes().splitlines() if line.strip()]
    change = parse_polymarket_frame(SUBJECT, None, orjson.dumps(resolved), NOW)
    assert isinstance(change, RowsAnnounced)
    results = {t.key["ticker"]: t.overwrite for t in change.upserts if t.table == "markets"}
    winner = resolved["winning_asset_id"]
    assert results == {t: {"status": "closed", "result": "won" if t == winner else "lost"}
                       for t in resolved["assets_ids"]}


def test_markers_and_other_types_are_not_applied() -> None:
    marker = parse_polymarket_frame("dev.polymarket.lifecycle.json.status.c1", {"Ssmd-Marker": "connected"}, b"{}", NOW)
    assert not isinstance(marker, RowsAnnounced) and marker.outcome == "marker"
    book = parse_polymarket_frame(SUBJECT, None, b'{"event_type":"book","asset_id":"1"}', NOW)
    assert not isinstance(book, RowsAnnounced) and book.outcome == "unknown"
    broken = parse_polymarket_frame(SUBJECT, None, b'{"event_type":"new_market","market":"0x1","assets_ids":["1"]}',
                                    NOW)
    assert not isinstance(broken, RowsAnnounced) and broken.outcome == "malformed"


@contextlib.asynccontextmanager
async def consuming(bench: PolymarketBench, database_url: str) -> AsyncIterator[LifecycleConsumer]:
    consumer = LifecycleConsumer(LifecycleOptions(
        env=bench.env.name, database_url=database_url, nats_url=bench.nats_url, feed="polymarket",
        parser=parse_polymarket_frame, fetch_timeout_s=0.2, backoff_initial_s=0.05, backoff_max_s=0.2))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_until(lambda: consumer.consuming or task.done(), 15, "the consumer to bind")
        assert not task.done(), "the consumer stopped"
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def held(bench: PolymarketBench, tokens: tuple[str, ...]) -> None:
    await bench.sim.wait_for(lambda: set(tokens) <= {t for a in bench.sim.subscriptions().values() for t in a}, 10)


async def rows(database_url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    async with await AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        cursor = await conn.execute(query, params)
        return list(await cursor.fetchall())


async def until_rows(database_url: str, query: str, params: tuple[Any, ...], want: int,
                     what: str) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        found = await rows(database_url, query, *params)
        if len(found) >= want:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {found}")
        await asyncio.sleep(0.05)


async def test_new_market_and_its_resolution_reach_the_secmaster_in_real_time(
    polymarket_bench: PolymarketBenchFactory, secmaster_db: str, as_service: AsService
) -> None:
    bench = await polymarket_bench(markets=4)
    feed = bench.env.feeds["polymarket"]
    await sync_polymarket(secmaster_db, bench.sim.rest_url, feed.feed.category_for_tags,
                          PolymarketSyncOptions(apply_migrations=False))
    await bench.connector.wait_subscribed(10)
    # As the lifecycle service's own least-privilege user, as deployed.
    async with consuming(bench, as_service(secmaster_db, ServiceRole.LIFECYCLE)) as consumer:
        existing = bench.sim.markets[0]
        market = await bench.sim.add_market(event_id=existing.event_id)  # an event the secmaster knows
        tokens = await until_rows(secmaster_db, "SELECT * FROM markets WHERE feed = 'polymarket' AND event_ticker = %s "
                                  "ORDER BY outcome_index", (market.condition_id,), 2, "the new market's tokens")
        assert [t["ticker"] for t in tokens] == list(market.token_ids)
        assert {t["status"] for t in tokens} == {"active"} and [t["outcome"] for t in tokens] == list(market.outcomes)
        [event] = await rows(secmaster_db, "SELECT * FROM events WHERE feed = 'polymarket' AND event_ticker = %s",
                             market.condition_id)
        assert event["series_ticker"] == existing.event_id and event["title"] == market.question
        [series] = await rows(secmaster_db, "SELECT category FROM series WHERE feed = 'polymarket' AND ticker = %s",
                              existing.event_id)
        assert series["category"] is not None, "the announcement left the event's category (from the sync) alone"
        assert consumer.outcomes[APPLIED] >= 1

        # market_resolved goes to connections holding the market's tokens (the shards' CDC following does this).
        await bench.connector.pool.add_markets(list(market.token_ids))
        await held(bench, market.token_ids)
        await bench.sim.resolve_market(market.condition_id, market.outcomes[0])
        closed = await until_rows(secmaster_db, "SELECT * FROM markets WHERE feed = 'polymarket' AND event_ticker = %s "
                                  "AND status = 'closed' ORDER BY outcome_index", (market.condition_id,), 2,
                                  "the resolution")
        assert [t["result"] for t in closed] == ["won", "lost"]
        await wait_until(lambda: consumer.backlog == 0 and consumer.last_seq > 0, 10, "the consumer to catch up")

    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    lifecycle = [m for m in stored if m.marker is None and parse_subject(m.subject).message_type == "lifecycle"]
    assert lifecycle and {m.stream for m in lifecycle} == {f"{bench.env.name.upper()}_POLYMARKET_LIFECYCLE"}
    assert {orjson.loads(m.data)["event_type"] for m in lifecycle} == {"new_market", "market_resolved"}


async def test_a_second_copy_and_a_replay_change_nothing(
    polymarket_bench: PolymarketBenchFactory, secmaster_db: str
) -> None:
    """new_market reaches every connection, so the stream holds copies: the second writes nothing, and a
    resolution is not undone by a late copy of the announcement."""
    bench = await polymarket_bench(markets=4)
    await bench.connector.wait_subscribed(10)
    async with consuming(bench, secmaster_db) as consumer:
        market = await bench.sim.add_market()  # a new event: the secmaster knows nothing of it
        await until_rows(secmaster_db, "SELECT 1 FROM markets WHERE feed = 'polymarket' AND event_ticker = %s",
                         (market.condition_id,), 2, "the new market's tokens")
        [series] = await rows(secmaster_db, "SELECT * FROM series WHERE feed = 'polymarket' AND ticker = %s",
                              market.event_id)
        assert series["category"] is None, "no tags on the socket: the sync brings the category"
        await bench.connector.pool.add_markets(list(market.token_ids))
        await held(bench, market.token_ids)
        await bench.sim.resolve_market(market.condition_id, market.outcomes[1])
        await until_rows(secmaster_db, "SELECT 1 FROM markets WHERE feed = 'polymarket' AND event_ticker = %s "
                         "AND status = 'closed'", (market.condition_id,), 2, "the resolution")
        [announcement] = [m for m in await bench.stored()
                          if m.marker is None and orjson.loads(m.data).get("event_type") == "new_market"]
        outbox_before = (await rows(secmaster_db, "SELECT count(*) AS n FROM secmaster_cdc_outbox"))[0]["n"]
        unchanged_before = consumer.outcomes[UNCHANGED]
        # A late copy of the announcement, stored after the resolution (another connection's).
        nc = await nats.connect(bench.nats_url)
        try:
            await nc.jetstream().publish(announcement.subject, announcement.data)
        finally:
            await nc.close()
        await wait_until(lambda: consumer.outcomes[UNCHANGED] > unchanged_before, 10, "the copy to be read")
    tokens = await rows(secmaster_db, "SELECT status, result FROM markets WHERE feed = 'polymarket' "
                        "AND event_ticker = %s ORDER BY outcome_index", market.condition_id)
    assert tokens == [{"status": "closed", "result": "lost"}, {"status": "closed", "result": "won"}]
    assert (await rows(secmaster_db, "SELECT count(*) AS n FROM secmaster_cdc_outbox"))[0]["n"] == outbox_before
    await bench.stop_and_collect()
