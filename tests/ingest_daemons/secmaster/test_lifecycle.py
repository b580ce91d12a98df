"""The lifecycle consumer: Kalshi lifecycle stream → secmaster, real PostgreSQL, nats-server and simulator.

Frames come from the simulator through the real lifecycle connector (``kalshi_bench(lifecycle=True)``),
or, where a test needs exact bytes (malformed frames, markers, held deliveries), are published
straight into the lifecycle stream the way the connector stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import nats
import orjson
import pytest
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ingest_daemons import wire
from ingest_daemons.naming import LIFECYCLE, SubjectBuilder
from ingest_daemons.secmaster.lifecycle import LifecycleConsumer, LifecycleOptions
from ingest_daemons.secmaster.lifecycle_frames import (
    EventAnnounced,
    MarketChanged,
    MarketCreated,
    NotApplied,
    parse_frame,
)
from ingest_daemons.secmaster.lifecycle_store import load_progress, save_progress, sweep_scheduled_opens
from tests.fixtures.kalshi import BenchFactory, KalshiBench

Row = dict[str, Any]
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture
async def db(secmaster_db: str) -> AsyncIterator[AsyncConnection[Row]]:
    conn = await AsyncConnection.connect(secmaster_db, autocommit=True, row_factory=dict_row)
    yield conn
    await conn.close()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "condition") -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def one(db: AsyncConnection[Row], query: str, *params: Any) -> Row | None:
    return await (await db.execute(query, params)).fetchone()


async def market(db: AsyncConnection[Row], ticker: str) -> Row | None:
    return await one(db, "SELECT * FROM markets WHERE feed = 'kalshi' AND ticker = %s", ticker)


async def wait_market(db: AsyncConnection[Row], ticker: str, what: str, timeout: float = 5.0,  # noqa: ASYNC109
                      **expected: Any) -> Row:
    """Poll the market's row until every ``expected`` column has its value; returns the row."""
    found: list[Row] = []

    async def check() -> bool:
        row = await market(db, ticker)
        found[:] = [row] if row else []
        return row is not None and all(row[k] == v for k, v in expected.items())

    await until(check, timeout, f"{ticker}: {what}")
    return found[0]


async def outbox_count(db: AsyncConnection[Row]) -> int:
    row = await one(db, "SELECT count(*) AS n FROM secmaster_cdc_outbox")
    return int(row["n"]) if row else -1


@contextlib.asynccontextmanager
async def running(options: LifecycleOptions) -> AsyncIterator[LifecycleConsumer]:
    consumer = LifecycleConsumer(options)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until(lambda: _bound(consumer, task), 15, "the consumer to bind")
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _bound(consumer: LifecycleConsumer, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # raises what killed it
        raise AssertionError("consumer stopped")
    return consumer.consuming


def options(bench: KalshiBench, database_url: str, **extra: Any) -> LifecycleOptions:
    return LifecycleOptions(env=bench.env.name, database_url=database_url, nats_url=bench.nats_url,
                            fetch_timeout_s=0.2, backoff_initial_s=0.05, backoff_max_s=0.2, **extra)


async def stream_last_seq(bench: KalshiBench) -> int:
    nc = await nats.connect(bench.nats_url)
    try:
        info = await nc.jetstream().stream_info(f"{bench.env.name.upper()}_KALSHI_LIFECYCLE")
        return int(info.state.last_seq)
    finally:
        await nc.close()


def frame(event_type: str, ticker: str, **msg: Any) -> bytes:
    return orjson.dumps({"type": "market_lifecycle_v2", "sid": 1, "msg": {"market_ticker": ticker,
                                                                         "event_type": event_type, **msg}})


def created(ticker: str, event_ticker: str, open_at: datetime, **meta: Any) -> bytes:
    return frame("created", ticker, open_ts=int(open_at.timestamp()), close_ts=int(open_at.timestamp()) + 86400,
                 additional_metadata={"title": f"title of {ticker}", "event_ticker": event_ticker, **meta})


async def publish(bench: KalshiBench, frames: list[tuple[str, str, bytes]],
                  headers: dict[str, str] | None = None) -> None:
    """Store (message type, ticker, payload) frames in the lifecycle stream as the connector would."""
    builder = SubjectBuilder(bench.env.name, "kalshi")
    nc = await nats.connect(bench.nats_url)
    try:
        js = nc.jetstream()
        for message_type, ticker, data in frames:
            await js.publish(builder.subject(LIFECYCLE, message_type, ticker), data, headers=headers)
    finally:
        await nc.close()


# ------------------------------------------------------------------------------------------ frames (pure)


def test_every_sample_frame_means_something(samples_dir: Path) -> None:
    subject = "dev.kalshi.lifecycle.json.lifecycle.X"
    for name in ("kalshi_market_lifecycle_v2", "kalshi_event_lifecycle", "kalshi_event_fee_update"):
        for line in (samples_dir / f"{name}.jsonl").read_text().splitlines():
            change = parse_frame(subject, None, line.encode(), NOW)
            assert not isinstance(change, NotApplied) or change.outcome == "ignored", (line, change)


def test_frame_rules() -> None:
    subject = "dev.kalshi.lifecycle.json.lifecycle.X"
    later = parse_frame(subject, None, created("M", "E", NOW + timedelta(hours=1), floor_strike=4487), NOW)
    assert isinstance(later, MarketCreated)
    assert later.row["status"] == "initialized" and later.row["floor_strike"] == "4487"
    assert later.row["open_time"] == NOW + timedelta(hours=1)
    now_open = parse_frame(subject, None, created("M", "E", NOW), NOW)
    assert isinstance(now_open, MarketCreated) and now_open.row["status"] == "active"
    determined = parse_frame(subject, None, frame("determined", "M", result="yes", settlement_value="1.0000"), NOW)
    assert determined == MarketChanged("determined", "M", {"result": "yes", "settlement_value_dollars": "1.0000"},
                                       status="determined", unless_status=frozenset({"finalized"}))
    event = parse_frame("dev.kalshi.lifecycle.json.event_lifecycle.E", None, orjson.dumps(
        {"type": "event_lifecycle", "msg": {"event_ticker": "E", "series_ticker": "S", "title": "T", "subtitle": "",
                                            "collateral_return_type": "MECNET"}}), NOW)
    assert event == EventAnnounced("E", {"series_ticker": "S", "title": "T", "sub_title": None,
                                         "collateral_return_type": "MECNET"})
    marker = parse_frame("dev.kalshi.lifecycle.json.status.c1", {wire.HDR_MARKER: "connected"}, b"{}", NOW)
    assert marker == NotApplied("marker", "status")
    assert parse_frame(subject, None, b"{not json", NOW).outcome == "malformed"  # type: ignore[union-attr]
    assert parse_frame(subject, None, frame("brand_new", "M"), NOW).outcome == "unknown"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------ real time


async def test_new_market_and_its_event_arrive_in_real_time(
    kalshi_bench: BenchFactory, secmaster_db: str, db: AsyncConnection[Row]
) -> None:
    bench = await kalshi_bench(markets=4, rate=20, lifecycle=True)
    await bench.connector.wait_subscribed(10)
    async with running(options(bench, secmaster_db, metrics_port=0)) as consumer:
        started = time.monotonic()
        added = await bench.sim.add_market(ticker="KXNEW-26NOV25-T1.5")
        row = await wait_market(db, added.ticker, "inserted by created")
        elapsed = time.monotonic() - started
        assert row["event_ticker"] == added.event_ticker and row["status"] == "active"
        assert row["open_time"] == added.open_time.replace(microsecond=0)
        assert row["close_time"] == added.close_time.replace(microsecond=0)
        assert row["strike_type"] == "greater" and row["floor_strike"] == Decimal("50") and row["title"] == added.title
        event = await one(db, "SELECT * FROM events WHERE feed = 'kalshi' AND event_ticker = %s", added.event_ticker)
        assert event is not None and event["series_ticker"] == bench.sim.events[added.event_ticker].series_ticker
        later = await bench.sim.add_market(event_ticker=added.event_ticker, status="initialized")
        await wait_market(db, later.ticker, "created before its open time", status="initialized")
        assert consumer.outcomes["applied"] >= 3
    print(f"created -> secmaster row in {elapsed:.3f}s")
    assert elapsed < 3.0


async def test_status_transitions_and_close_time(
    kalshi_bench: BenchFactory, secmaster_db: str, db: AsyncConnection[Row]
) -> None:
    bench = await kalshi_bench(markets=4, rate=20, lifecycle=True)
    await bench.connector.wait_subscribed(10)
    async with running(options(bench, secmaster_db)):
        ticker = (await bench.sim.add_market(ticker="KXMOVE-26NOV25-T2.5")).ticker
        await wait_market(db, ticker, "created", status="active")
        assert bench.sim.set_market_status(ticker, "inactive") == ["deactivated"]
        await wait_market(db, ticker, "deactivated", status="inactive")
        assert bench.sim.set_market_status(ticker, "active") == ["activated"]
        await wait_market(db, ticker, "activated", status="active")
        assert bench.sim.set_market_status(ticker, "closed") == ["close_date_updated"]
        await wait_market(db, ticker, "close_date_updated", close_time=bench.sim.market(ticker).close_time)
        assert bench.sim.set_market_status(ticker, "determined", result="no") == ["determined"]
        await wait_market(db, ticker, "determined", status="determined", result="no",
                          settlement_value_dollars=Decimal("0"))
        assert bench.sim.set_market_status(ticker, "finalized") == ["settled"]
        row = await wait_market(db, ticker, "settled", status="finalized")
        assert row["settlement_ts"] == bench.sim.market(ticker).settlement_time


# ------------------------------------------------------------------------------------------ exactly once


async def test_restart_and_full_redelivery_apply_nothing_twice(
    kalshi_bench: BenchFactory, secmaster_db: str, db: AsyncConnection[Row]
) -> None:
    bench = await kalshi_bench(markets=4, rate=20, lifecycle=True)
    await bench.connector.wait_subscribed(10)
    bench.sim.pause()  # only the changes below from here on
    opts = options(bench, secmaster_db)
    async with running(opts) as first:
        a = (await bench.sim.add_market(ticker="KXA-26NOV25-T1.5")).ticker
        bench.sim.set_market_status(a, "finalized")
        await wait_market(db, a, "settled", status="finalized")
    # Messages stored while no consumer runs are applied by the next one with the same durable.
    b = (await bench.sim.add_market(ticker="KXB-26NOV25-T1.5")).ticker
    last = 0
    async with running(opts) as second:
        await wait_market(db, b, "created while the consumer was down")
        last = await stream_last_seq(bench)
        await until(lambda: _at(second, last), 5, "the second consumer to reach the stream's end")
    assert second.outcomes["duplicate"] == 0
    rows = await (await db.execute("SELECT * FROM markets ORDER BY ticker")).fetchall()
    events = await (await db.execute("SELECT * FROM events ORDER BY event_ticker")).fetchall()
    changes = await outbox_count(db)
    assert await one(db, "SELECT last_seq FROM secmaster_lifecycle_progress") == {"last_seq": last}

    # Replay everything: a new durable of the same name delivers the whole stream again.
    nc = await nats.connect(bench.nats_url)
    await nc.jetstream().delete_consumer(opts.stream, opts.durable)
    await nc.close()
    async with running(opts) as third:
        await until(lambda: _seen(third, last), 5, "the replay")
        assert third.outcomes["duplicate"] == last and third.outcomes["applied"] == 0
        assert await (await db.execute("SELECT * FROM markets ORDER BY ticker")).fetchall() == rows
        assert await (await db.execute("SELECT * FROM events ORDER BY event_ticker")).fetchall() == events
        assert await outbox_count(db) == changes, "a replayed message produced a CDC change"
        bench.sim.set_market_status(b, "inactive")
        await wait_market(db, b, "deactivated after the replay", status="inactive")
    assert await outbox_count(db) == changes + 1
    progress = await one(db, "SELECT last_seq FROM secmaster_lifecycle_progress")
    assert progress is not None and progress["last_seq"] == last + 1
    assert first.outcomes["applied"] >= 3


async def _at(consumer: LifecycleConsumer, seq: int) -> bool:
    return consumer.last_seq >= seq


async def _seen(consumer: LifecycleConsumer, n: int) -> bool:
    return sum(consumer.outcomes.values()) >= n


async def test_messages_a_dead_consumer_held_are_applied_at_once_and_in_order(
    kalshi_bench: BenchFactory, secmaster_db: str, db: AsyncConnection[Row]
) -> None:
    """A consumer that fetched and died before committing leaves messages JetStream redelivers only after
    ack_wait (30 s), behind newer ones; the next consumer reads them from the stream first."""
    bench = await kalshi_bench(markets=1, rate=0, lifecycle=True, start_connector=False)
    opts = options(bench, secmaster_db)
    async with running(opts):
        pass  # creates the durable consumer
    open_at = datetime.now(UTC) - timedelta(minutes=1)
    await publish(bench, [("lifecycle", "X", created("X", "E", open_at)),
                          ("lifecycle", "Y", created("Y", "E", open_at)),
                          ("lifecycle", "X", frame("deactivated", "X", is_deactivated=True))])
    nc = await nats.connect(bench.nats_url)
    held = await nc.jetstream().pull_subscribe_bind(durable=opts.durable, stream=opts.stream)
    assert len(await held.fetch(3, timeout=2)) == 3  # ... and never acknowledged
    await nc.close()
    await publish(bench, [("lifecycle", "Z", created("Z", "E", open_at))])
    async with running(opts) as consumer:
        await wait_market(db, "Z", "the newer market")
        assert (await wait_market(db, "X", "held, then deactivated", status="inactive"))["event_ticker"] == "E"
        assert await market(db, "Y") is not None
        assert consumer.outcomes["applied"] == 4
    info = await nats.connect(bench.nats_url)
    consumer_info = await info.jetstream().consumer_info(opts.stream, opts.durable)
    await info.close()
    assert consumer_info.num_pending == 0


# ------------------------------------------------------------------------------------------ odd frames


async def test_markers_unknown_and_malformed_frames_are_counted_and_skipped(
    kalshi_bench: BenchFactory, secmaster_db: str, db: AsyncConnection[Row]
) -> None:
    bench = await kalshi_bench(markets=1, rate=0, lifecycle=True, start_connector=False)
    await db.execute("INSERT INTO markets (feed, ticker, event_ticker, status, result) "
                     "VALUES ('kalshi', 'DONE', 'E', 'finalized', 'yes')")
    await db.execute("INSERT INTO events (feed, event_ticker, series_ticker, title, category) "
                     "VALUES ('kalshi', 'EV', 'S', 'old', 'Crypto')")
    past = datetime.now(UTC) - timedelta(hours=1)
    await publish(bench, [("status", "conn1", wire.marker_payload("connected"))], {wire.HDR_MARKER: "connected"})
    await publish(bench, [
        ("lifecycle", "BAD", b"{not json"),
        ("lifecycle", "M1", frame("brand_new_event", "M1")),
        ("mystery", "M1", orjson.dumps({"type": "mystery", "msg": {}})),
        ("event_lifecycle", "%", orjson.dumps({"type": "event_lifecycle", "sid": 1, "msg": {}})),
        ("lifecycle", "NUL", created("NUL", "E", past, rules_primary="nul \u0000 inside")),  # PostgreSQL refuses it
        ("lifecycle", "DONE", frame("deactivated", "DONE")),  # a late pause must not reopen a settled market
        ("lifecycle", "DONE", created("DONE", "E", past, yes_sub_title="filled")),  # fills, keeps finalized
        ("lifecycle", "GONE", frame("settled", "GONE", settled_ts=1)),  # market the secmaster does not know
        ("lifecycle", "OK", created("OK", "E", past)),
        ("event_lifecycle", "EV", orjson.dumps({"type": "event_lifecycle", "msg": {"event_ticker": "EV",
                                                                                  "title": "new"}})),
    ])
    async with running(options(bench, secmaster_db, metrics_port=0)) as consumer:
        await until(lambda: _at(consumer, 11), 5, "every frame")
        assert consumer.outcomes == {"marker": 1, "malformed": 3, "unknown": 2, "unchanged": 1, "applied": 3,
                                     "no_market": 1}
        assert await market(db, "OK") is not None and await market(db, "NUL") is None
        assert await one(db, "SELECT series_ticker, title, category FROM events WHERE event_ticker = 'EV'") == {
            "series_ticker": "S", "title": "new", "category": "Crypto"}  # what the frame lacks is kept
        done = await market(db, "DONE")
        assert done is not None and done["status"] == "finalized" and done["yes_sub_title"] == "filled"
        assert consumer.health is not None
        base = f"http://127.0.0.1:{consumer.health.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            async with http.get(f"{base}/readyz") as ready:
                assert ready.status == 200
        labels = f'env="{bench.env.name}",feed="kalshi"'
        assert f'ssmd_lifecycle_messages_total{{{labels},outcome="malformed"}} 3.0' in text
        assert f'ssmd_lifecycle_messages_total{{{labels},outcome="unknown"}} 2.0' in text
        assert f"ssmd_lifecycle_last_applied_seq{{{labels}}} 11.0" in text


# ------------------------------------------------------------------------------------------ scheduled opens


async def test_sweep_activates_markets_whose_open_time_passed(
    kalshi_bench: BenchFactory, secmaster_db: str, db: AsyncConnection[Row]
) -> None:
    now = datetime.now(UTC)
    insert = "INSERT INTO markets (feed, ticker, event_ticker, status, open_time) VALUES ('kalshi', %s, 'E', %s, %s)"
    for ticker, status, open_time in [("PAST", "initialized", now - timedelta(minutes=1)),
                                      ("FUTURE", "initialized", now + timedelta(hours=1)),
                                      ("PAUSED", "inactive", now - timedelta(hours=1))]:
        await db.execute(insert, (ticker, status, open_time))
    before = await outbox_count(db)
    assert await sweep_scheduled_opens(db, "kalshi") == ["PAST"]
    assert await sweep_scheduled_opens(db, "kalshi") == []
    assert await outbox_count(db) == before + 1
    assert [(r["ticker"], r["status"]) for r in await (await db.execute(
        "SELECT ticker, status FROM markets ORDER BY ticker")).fetchall()] == [
        ("FUTURE", "initialized"), ("PAST", "active"), ("PAUSED", "inactive")]
    assert await sweep_scheduled_opens(db, "kalshi", now + timedelta(hours=2)) == ["FUTURE"]

    bench = await kalshi_bench(markets=1, rate=0, lifecycle=True, start_connector=False)
    async with running(options(bench, secmaster_db, sweep_interval_s=0.2)):
        await db.execute(insert, ("LATER", "initialized", datetime.now(UTC) + timedelta(seconds=0.5)))
        await wait_market(db, "LATER", "opened by the consumer's sweep", status="active")


async def test_progress_restarts_when_the_stream_is_created_again(db: AsyncConnection[Row]) -> None:
    created_at = datetime(2026, 1, 1, tzinfo=UTC)
    assert await load_progress(db, "DEV_KALSHI_LIFECYCLE", created_at) == 0
    await save_progress(db, "DEV_KALSHI_LIFECYCLE", 42)
    await save_progress(db, "DEV_KALSHI_LIFECYCLE", 7)  # never backwards
    assert await load_progress(db, "DEV_KALSHI_LIFECYCLE", created_at) == 42
    assert await load_progress(db, "DEV_KALSHI_LIFECYCLE", created_at + timedelta(days=1)) == 0
