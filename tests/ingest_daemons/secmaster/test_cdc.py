"""CDC publisher in-process: message shape, commit order across writers, resume, standby, health."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import psycopg
import pytest

from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher
from ingest_daemons.secmaster.cdc_outbox import HDR_EXPECT_LAST_MSG_ID, HDR_EXPECT_LAST_SEQ, Outbox, message_id
from tests.helpers import wait_until
from tests.ingest_daemons.secmaster.conftest import (
    EnvFactory,
    apply_changes,
    assert_exactly_once_in_order,
    cdc_messages,
    change_script,
    wait_for_count,
)

INSERT = "INSERT INTO markets (feed, ticker, event_ticker, status) VALUES ('kalshi', %s, 'E', 'active')"


@contextlib.asynccontextmanager
async def running(options: CdcOptions) -> AsyncIterator[CdcPublisher]:
    publisher = CdcPublisher(options)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        yield publisher
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def _options(env: str, database_url: str, nats_url: str, **extra: Any) -> CdcOptions:
    return CdcOptions(env=env, database_url=database_url, nats_url=nats_url, poll_interval_s=0.1,
                      ack_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2, **extra)


def _outbox_size(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM secmaster_cdc_outbox").fetchone()
    return int(row[0]) if row else -1


async def test_changes_reach_the_stream_in_commit_order(
    secmaster_db: str, nats_server: NatsServer, cdc_env: EnvFactory
) -> None:
    env = await cdc_env(nats_server.url)
    script = change_script(12)
    async with running(_options(env.name, secmaster_db, nats_server.url, metrics_port=0)) as publisher:
        await apply_changes(secmaster_db, script)
        await wait_for_count(nats_server.url, env.name, len(script))
        await wait_until(lambda: _outbox_size(secmaster_db) == 0, what="outbox emptied after the acks")
        assert publisher.health is not None
        base = f"http://127.0.0.1:{publisher.health.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
        assert f'ssmd_cdc_changes_published_total{{env="{env.name}",operation="insert",table="markets"}} 12.0' in text
        assert f'ssmd_cdc_last_published_id{{env="{env.name}"}} {float(len(script))}' in text
    messages = await cdc_messages(nats_server.url, env.name)
    assert_exactly_once_in_order(messages, script, env.name)

    first_update = next(m for m in messages if m.body["op"] == "update")
    assert first_update.body["changed"] == ["status"]
    assert first_update.body["row"]["status"] == "closed"
    assert first_update.body["old_key"] == {"feed": "kalshi", "ticker": first_update.body["row"]["ticker"]}
    delete = next(m for m in messages if m.body["op"] == "delete")
    assert delete.body["old_key"] == {"feed": "kalshi", "ticker": "M4"}
    assert delete.body["row"]["ticker"] == "M4"  # the row as it was
    insert = messages[0].body
    assert insert["old_key"] is None and insert["changed"] is None
    assert insert["committed_at"].endswith("Z") and insert["row"]["updated_at"].endswith("+00:00")
    assert messages[0].headers["Nats-Msg-Id"] == f"secmaster-{insert['epoch']}-1"


async def test_overlapping_writers_commit_and_publish_in_order(
    secmaster_db: str, nats_server: NatsServer, cdc_env: EnvFactory
) -> None:
    """T1 changes first but commits last would invert id order; the commit-order lock makes T2 wait."""
    env = await cdc_env(nats_server.url)
    t1 = psycopg.connect(secmaster_db)
    t1.execute(INSERT, ("T1",))
    second_done = threading.Event()

    def second_writer() -> None:
        with psycopg.connect(secmaster_db) as t2:
            t2.execute(INSERT, ("T2",))
            t2.commit()
        second_done.set()

    thread = threading.Thread(target=second_writer)
    thread.start()
    try:
        with psycopg.connect(secmaster_db) as observer:
            await wait_until(lambda: observer.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone() == (1,),
                what="the second writer waiting for the commit-order lock")
        assert not second_done.is_set()
        t1.execute(INSERT, ("T1b",))
        t1.commit()
    finally:
        t1.close()
        thread.join(10)
    async with running(_options(env.name, secmaster_db, nats_server.url)):
        await wait_for_count(nats_server.url, env.name, 3)
    messages = await cdc_messages(nats_server.url, env.name)
    assert [m.body["row"]["ticker"] for m in messages] == ["T1", "T1b", "T2"]
    assert messages[0].body["txid"] == messages[1].body["txid"] < messages[2].body["txid"]


async def test_restart_does_not_republish_what_the_stream_already_has(
    secmaster_db: str, nats_server: NatsServer, cdc_env: EnvFactory
) -> None:
    """A predecessor published and was acked, then died before deleting: resume drops those rows."""
    env = await cdc_env(nats_server.url)
    script = change_script(6)
    await apply_changes(secmaster_db, script[:5])
    outbox = await Outbox.connect(secmaster_db)
    try:
        epoch = await outbox.epoch()
        already = await outbox.fetch(0, 3)
    finally:
        await outbox.close()
    nc = await nats.connect(nats_server.url)
    try:
        expect = (HDR_EXPECT_LAST_SEQ, "0")
        for change in already:
            block = change.headers(epoch, expect).decode()
            headers = dict(line.split(": ", 1) for line in block.splitlines()[1:] if line)
            await nc.jetstream().publish(change.subject(env.name), change.payload(epoch), headers=headers)
            expect = (HDR_EXPECT_LAST_MSG_ID, message_id(epoch, change.id))
    finally:
        await nc.close()

    async with running(_options(env.name, secmaster_db, nats_server.url)) as publisher:
        await apply_changes(secmaster_db, script[5:])
        await wait_for_count(nats_server.url, env.name, len(script))
        await wait_until(lambda: publisher.last_id == len(script), what="publisher caught up")
        skipped = publisher.metrics.skipped._value.get()
    assert skipped == 3
    assert_exactly_once_in_order(await cdc_messages(nats_server.url, env.name), script, env.name)


async def test_second_publisher_waits_as_standby_and_takes_over(
    secmaster_db: str, nats_server: NatsServer, cdc_env: EnvFactory
) -> None:
    env = await cdc_env(nats_server.url)
    script = change_script(8)
    options = _options(env.name, secmaster_db, nats_server.url)
    first, first_stop = CdcPublisher(options), asyncio.Event()
    first_task = asyncio.create_task(first.run(first_stop))
    try:
        await wait_until(lambda: first.leader, what="first publisher leading")
        async with running(options) as second:
            await apply_changes(secmaster_db, script[:6])
            await wait_for_count(nats_server.url, env.name, 6)
            # The second publisher may still be connecting to the database: wait for it to find the lock held.
            await wait_until(lambda: "standby" in second.state, timeout=10, what="second publisher in standby")
            assert not second.leader and not second.ready()[0]
            first_stop.set()
            await asyncio.wait_for(first_task, 15)
            await wait_until(lambda: second.leader, timeout=10, what="standby taking over")
            await apply_changes(secmaster_db, script[6:])
            await wait_for_count(nats_server.url, env.name, len(script))
    finally:
        first_stop.set()
        await asyncio.wait_for(first_task, 15)
    assert_exactly_once_in_order(await cdc_messages(nats_server.url, env.name), script, env.name)


@pytest.mark.parametrize("window", [1, 64])
async def test_window_sizes_keep_order_on_a_healthy_server(
    secmaster_db: str, nats_server: NatsServer, cdc_env: EnvFactory, window: int
) -> None:
    env = await cdc_env(nats_server.url)
    script = change_script(150)
    await apply_changes(secmaster_db, script)
    async with running(_options(env.name, secmaster_db, nats_server.url, window=window, batch_size=100)):
        await wait_for_count(nats_server.url, env.name, len(script))
    assert_exactly_once_in_order(await cdc_messages(nats_server.url, env.name), script, env.name)


async def test_a_change_above_max_payload_is_held_not_chunked(
    secmaster_db: str, small_payload_nats_server: NatsServer, cdc_env: EnvFactory
) -> None:
    """Chunks would break the order fence (and a half-stored change would look stored on restart): a change
    the server cannot take whole holds back every later one, visibly, and nothing of it is stored."""
    url = small_payload_nats_server.url
    env = await cdc_env(url)
    async with await psycopg.AsyncConnection.connect(secmaster_db, autocommit=True) as conn:
        await conn.execute(INSERT, ("FIRST",))
        await conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status, title) "
                           "VALUES ('kalshi', 'HUGE', 'E', 'active', %s)", ("x" * 100_000,))
        await conn.execute(INSERT, ("AFTER",))
    async with running(_options(env.name, secmaster_db, url, window=4)) as publisher:
        await wait_for_count(url, env.name, 1)
        await wait_until(lambda: publisher.metrics.rejections._value.get() >= 2, 10, "the change refused twice")
        ready, reason = publisher.ready()
        assert not ready and "max_payload" in reason, reason
        messages = await cdc_messages(url, env.name)
    assert [m.body["row"]["ticker"] for m in messages] == ["FIRST"]
    assert not any("Ssmd-Chunk" in m.headers for m in messages)
