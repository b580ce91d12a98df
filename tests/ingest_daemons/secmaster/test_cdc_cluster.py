"""``ssmd cdc`` publishing into an R3 CDC stream of a 3-node cluster while the stream's leader — the
node the publisher is connected to — is killed and restarted: every change exactly once, in commit order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from ingest_daemons import naming
from tests.fixtures.nats import NatsCluster
from tests.ingest_daemons.secmaster.conftest import (
    CdcProcess,
    EnvFactory,
    apply_changes,
    assert_exactly_once_in_order,
    cdc_messages,
    change_script,
    wait_for_count,
)

ProcessFactory = Callable[..., CdcProcess]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("window", ["1", "64"])
async def test_the_cdc_stream_leader_killed_while_changes_flow(
    secmaster_db: str, nats_cluster: NatsCluster, cdc_env: EnvFactory, cdc_process: ProcessFactory, window: str
) -> None:
    started = time.monotonic()
    env = await cdc_env(nats_cluster.url, {"replicas": 3})
    stream = naming.cdc_stream_name(env.name)
    # n0 is the first server the publisher tries: it leads the stream and carries the publisher's connection
    await nats_cluster.move_leader(stream, "n0")
    victim = nats_cluster.node("n0")
    script = change_script(400)
    cdc = cdc_process(env, secmaster_db, "--window", window).start()
    await cdc.wait_status("/readyz", 200)
    writer = asyncio.create_task(apply_changes(secmaster_db, script, pace_s=0.005))
    await wait_for_count(nats_cluster.url, env.name, 150)
    assert not writer.done(), "the changes were all written before the leader was killed"
    victim.kill()
    assert await nats_cluster.leader_of(stream) != "n0"
    await writer
    await wait_for_count(nats_cluster.url, env.name, len(script), timeout=60)
    victim.start()
    await apply_changes(secmaster_db, [("insert", "LAST")])
    await wait_for_count(nats_cluster.url, env.name, len(script) + 1)
    assert cdc.terminate() == 0
    log = (cdc.log_dir / "cdc-1.log").read_text(errors="replace")
    assert "publisher disconnected" in log, "the publisher's connection did not go with the killed node"
    assert_exactly_once_in_order(await cdc_messages(nats_cluster.url, env.name), [*script, ("insert", "LAST")],
                                 env.name)
    print(f"cdc window={window}: {len(script) + 1} changes, took={time.monotonic() - started:.1f}s")
