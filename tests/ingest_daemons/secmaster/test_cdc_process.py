"""``ssmd cdc`` as a real process: SIGKILL at any point and NATS outages lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import random
import re
import signal
from collections.abc import Callable
from pathlib import Path

import nats
from psycopg import AsyncConnection

from ingest_daemons import naming
from ingest_daemons.nats_runner import NatsServer
from tests.ingest_daemons.secmaster.conftest import (
    CdcProcess,
    Change,
    EnvFactory,
    apply_changes,
    assert_exactly_once_in_order,
    cdc_messages,
    change_script,
    stream_count,
    wait_for_count,
    wait_for_log,
)

ProcessFactory = Callable[..., CdcProcess]


async def test_killed_between_commit_and_publish(
    secmaster_db: str, nats_server: NatsServer, cdc_env: EnvFactory, cdc_process: ProcessFactory
) -> None:
    env = await cdc_env(nats_server.url)
    script = change_script(30)
    first, second, third = script[:10], script[10:30], script[30:]
    cdc = cdc_process(env, secmaster_db).start()
    await cdc.wait_status("/readyz", 200)
    await apply_changes(secmaster_db, first)
    await wait_for_count(nats_server.url, env.name, len(first))

    cdc.signal(signal.SIGSTOP)  # frozen: these commits cannot be published
    await apply_changes(secmaster_db, second)
    cdc.kill()
    await apply_changes(secmaster_db, third)  # committed while no publisher runs at all

    cdc.start()
    await wait_for_count(nats_server.url, env.name, len(script))
    await apply_changes(secmaster_db, [("insert", "LAST")])
    await wait_for_count(nats_server.url, env.name, len(script) + 1)
    assert cdc.terminate() == 0
    assert_exactly_once_in_order(await cdc_messages(nats_server.url, env.name), [*script, ("insert", "LAST")],
                                 env.name)


async def test_killed_at_random_points_while_changes_flow(
    secmaster_db: str, nats_server: NatsServer, cdc_env: EnvFactory, cdc_process: ProcessFactory
) -> None:
    """Kills land before publishing, between publish and ack, and between ack and the outbox delete."""
    env = await cdc_env(nats_server.url)
    script = change_script(120)
    rng = random.Random(20261125)
    cdc = cdc_process(env, secmaster_db).start()
    await cdc.wait_status("/readyz", 200)
    writer = asyncio.create_task(apply_changes(secmaster_db, script, pace_s=0.004))
    for _ in range(2):
        await asyncio.sleep(rng.uniform(0.2, 0.5))  # a random moment in the flow, not a wait for a state
        cdc.kill()
        cdc.start()
        await cdc.wait_status("/readyz", 200)
    await writer
    await wait_for_count(nats_server.url, env.name, len(script))

    # A backlog of 3000 rows is published in batches of 500 and deleted after each batch: a kill
    # during the catch-up leaves acknowledged rows in the outbox, which the restart must not re-send.
    cdc.signal(signal.SIGSTOP)
    backlog = await insert_many(secmaster_db, 3000)
    cdc.signal(signal.SIGCONT)
    await wait_until_mid_batch(nats_server.url, env.name, base=len(script), batch=500)
    cdc.kill()
    cdc.start()
    await wait_for_count(nats_server.url, env.name, len(script) + len(backlog))
    assert cdc.terminate() == 0
    resumed = (cdc.log_dir / f"cdc-{cdc.starts}.log").read_text()
    assert re.search(r"already_in_stream=[1-9]", resumed), "the kill did not land between ack and delete"
    assert_exactly_once_in_order(await cdc_messages(nats_server.url, env.name), [*script, *backlog], env.name)


async def wait_until_mid_batch(nats_url: str, env: str, base: int, batch: int) -> None:
    """Return while the publisher is well inside a batch: some of it acknowledged, none deleted yet."""
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        done = await stream_count(nats_url, env) - base
        if batch // 20 <= done % batch <= batch * 4 // 5:
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the publisher never got inside a batch")


async def insert_many(url: str, n: int) -> list[Change]:
    """``n`` inserts in one transaction (rows get ids in ``i`` order)."""
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status) SELECT 'kalshi', 'B' || i, "
                           "'EV', 'active' FROM generate_series(0, %s - 1) AS i ORDER BY i", (n,))
    return [("insert", f"B{i}") for i in range(n)]


async def test_nats_outage_while_changes_are_committed(
    secmaster_db: str, private_nats_server: NatsServer, cdc_env: EnvFactory, cdc_process: ProcessFactory,
    tmp_path: Path,
) -> None:
    nats_url = private_nats_server.url
    env = await cdc_env(nats_url)
    script = change_script(40)
    before, during, after = script[:15], script[15:45], script[45:]
    cdc = cdc_process(env, secmaster_db).start()
    await cdc.wait_status("/readyz", 200)
    await apply_changes(secmaster_db, before)
    await wait_for_count(nats_url, env.name, len(before))

    private_nats_server.stop()
    await cdc.wait_status("/readyz", 503)
    outage = asyncio.get_running_loop().time()
    await apply_changes(secmaster_db, during, pace_s=0.05)  # ~1.5 s of commits with NATS away
    await asyncio.sleep(max(0.0, 3.0 - (asyncio.get_running_loop().time() - outage)))  # the outage lasts >= 3 s
    private_nats_server.start()

    await apply_changes(secmaster_db, after)
    await wait_for_count(nats_url, env.name, len(script), timeout=30)
    await cdc.wait_status("/readyz", 200)
    assert cdc.terminate() == 0
    assert_exactly_once_in_order(await cdc_messages(nats_url, env.name), script, env.name)


async def test_a_refused_change_holds_back_every_later_one_through_a_kill(
    secmaster_db: str, nats_server: NatsServer, cdc_env: EnvFactory, cdc_process: ProcessFactory
) -> None:
    """Window 64, and JetStream refuses one change of it (larger than the stream's ``max_msg_size``).

    The changes after it in the same window must not be stored ahead of it (the server enforces the
    order), and after a SIGKILL the restart must not forget it: once the stream takes it, every
    committed change is there once, in commit order.
    """
    env = await cdc_env(nats_server.url)
    stream = naming.cdc_stream_name(env.name)
    await set_max_msg_size(nats_server.url, stream, 4096)
    before, after = change_script(10, "A"), change_script(30, "C")
    cdc = cdc_process(env, secmaster_db, "--window", "64").start()
    await cdc.wait_status("/readyz", 200)
    cdc.signal(signal.SIGSTOP)  # one backlog, so the refused change sits inside a window of 64
    await apply_changes(secmaster_db, before)
    async with await AsyncConnection.connect(secmaster_db, autocommit=True) as conn:
        await conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status, title) "
                           "VALUES ('kalshi', 'BIG', 'EV', 'active', %s)", ("x" * 10_000,))
    await apply_changes(secmaster_db, after)
    cdc.signal(signal.SIGCONT)

    await wait_for_log(cdc.log_dir / f"cdc-{cdc.starts}.log", "publish rejected")
    await wait_for_count(nats_server.url, env.name, len(before))
    held = await cdc_messages(nats_server.url, env.name)
    assert [m.op_ticker for m in held] == before, "changes after the refused one were stored ahead of it"
    await cdc.wait_status("/readyz", 503)
    cdc.kill()

    await set_max_msg_size(nats_server.url, stream, -1)
    cdc.start()
    script = [*before, ("insert", "BIG"), *after]
    await wait_for_count(nats_server.url, env.name, len(script))
    assert cdc.terminate() == 0
    assert_exactly_once_in_order(await cdc_messages(nats_server.url, env.name), script, env.name)


async def set_max_msg_size(nats_url: str, stream: str, size: int) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        config = (await js.stream_info(stream)).config
        config.max_msg_size = size
        await js.update_stream(config)
    finally:
        await nc.close()
